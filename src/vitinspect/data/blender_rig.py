"""The Blender rig's geometry in numbers (``data.renderer: blender``), in plain numpy: the grid of posts and
where each camera of ``data.views`` sits and looks. :mod:`vitinspect.data.blender_scene` builds the scene from it,
and ``validate`` checks with it that every camera sees every post, without importing ``bpy``.

Lengths in millimetres; world z up, image x = world x, image y = world -y (row 0 of the grid at the top of
the centre view, as in :mod:`vitinspect.data.render2d`). The numbers are explained in docs/blender.md.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np

PITCH = 2.54  # mm between neighbouring posts (a 0.1 in header)
POST = 0.4 * PITCH  # mm, side of a post's square section
HEIGHT = 1.2 * PITCH  # mm a good post stands above the housing
SUNK = 0.8 * PITCH  # mm of post inside the housing (a retracted post slides down into it)
MARGIN = 0.6 * PITCH  # mm of housing beyond the outer posts' centres (render.Geometry.housing_box)
THICK = 1.0 * PITCH  # mm, the housing's thickness
DISTANCE = 4.0  # camera distance to its aim point, in frame widths
POST_INDEX = 1  # object pass index of post k is POST_INDEX + k; the housing's is 0
INSTALL = ("data.renderer blender needs Blender as a Python module (bpy): pip install .[blender] "
           "(or make setup BLENDER=1, which keeps the pinned numpy)")


def bpy_available() -> bool:
    return importlib.util.find_spec("bpy") is not None


@dataclass(frozen=True)
class Rig:
    """The grid and cameras of one params set, in mm, world z up, image x = world x, image y = world -y."""

    rows: int
    cols: int
    views: tuple
    angle: float  # degrees a side camera leans from vertical
    aim: tuple  # (x, y) pitches: where the side cameras aim, from the grid centre (image axes)

    @property
    def frame(self) -> float:
        """Width (mm) the centre camera sees at the housing top: the 2-D renderer's 1.25 x max(rows, cols, 3) pitches."""
        return 1.25 * max(self.rows, self.cols, 3) * PITCH

    @property
    def fov(self) -> float:
        """Every camera's horizontal (= vertical) field of view, radians."""
        return 2 * math.atan(0.5 / DISTANCE)

    def bases(self) -> np.ndarray:
        """(rows*cols, 3) post base points on the housing top (z = 0), row-major like render.Geometry.bases."""
        xs = (np.arange(self.cols) - (self.cols - 1) / 2) * PITCH
        ys = -(np.arange(self.rows) - (self.rows - 1) / 2) * PITCH
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)


SIDE = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "top": (0.0, 1.0), "bottom": (0.0, -1.0)}  # world x, y


def camera_frames(rig: Rig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{view: (location (3,), rotation (3, 3) whose columns are the camera's x, y and z axes)}: the camera
    looks along -z, image up is +y. The centre camera hangs over the grid centre; a side camera sits
    ``rig.angle`` off vertical on its side, aimed at ``rig.aim``."""
    out = {}
    a = math.radians(rig.angle)
    dist = DISTANCE * rig.frame
    for view in rig.views:
        if view == "center":
            target, direction = np.zeros(3), np.array([0.0, 0.0, 1.0])
        else:
            sx, sy = SIDE[view]
            target = np.array([rig.aim[0] * PITCH, -rig.aim[1] * PITCH, 0.0])
            direction = np.array([sx * math.sin(a), sy * math.sin(a), math.cos(a)])
        loc = target + dist * direction
        back = direction / np.linalg.norm(direction)  # camera z: from the target to the camera
        right = np.cross([0.0, 1.0, 0.0], back)
        if np.linalg.norm(right) < 1e-9:  # pragma: no cover (a camera on the y axis horizon)
            right = np.array([1.0, 0.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        out[view] = (loc, np.stack([right, up, back], axis=1))
    return out


def project(rig: Rig, view: str, points: np.ndarray, size: int) -> np.ndarray:
    """(K, 2) pixel coordinates (x right, y down, pixel centres at i + 0.5) of world points in one view;
    NaN for points behind the camera."""
    loc, rot = camera_frames(rig)[view]
    cam = (np.asarray(points, dtype=float) - loc) @ rot  # camera coordinates
    depth = -cam[:, 2]
    scale = 0.5 / math.tan(rig.fov / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(depth > 0, cam[:, 0] / depth * scale, np.nan)
        v = np.where(depth > 0, cam[:, 1] / depth * scale, np.nan)
    return np.stack([(u + 0.5) * size, (0.5 - v) * size], axis=1)


def posts_in_view(rig: Rig, view: str) -> int:
    """How many good posts' tips (top centres) lie inside the view's frame."""
    tips = rig.bases() + [0.0, 0.0, HEIGHT]
    uv = project(rig, view, tips, 1)
    return int(np.sum(np.all((uv > 0) & (uv < 1), axis=1)))


def rig_of(data) -> Rig:
    b = data.blender
    return Rig(data.grid.rows, data.grid.cols, tuple(data.views), float(b.angle), tuple(float(x) for x in b.aim))


def check_cameras(data) -> str | None:
    """An error fragment when a camera of ``data.views`` misses a post (every view must show the whole grid)."""
    rig = rig_of(data)
    n = rig.rows * rig.cols
    for view in rig.views:
        seen = posts_in_view(rig, view)
        if seen < n:
            return (f"camera {view!r} sees {seen} of the {n} posts (data.blender.angle {rig.angle:g} deg, "
                    f"aim {list(rig.aim)} pitches off the grid centre); aim the side cameras nearer [0, 0] or lower the angle")
    return None
