"""Synthetic multi-camera images of a male connector face, seen from above.

The part is a housing with a ``rows x cols`` grid of square terminal posts. A
post stands on its base point and ends in a tip at height ``h`` (1 for a good
post). Each camera sits off the centre by a unit offset; a point at height
``z`` appears shifted by ``offset * parallax * z`` pixels in that view. So the
centre camera sees every tip at its own x, y whatever its height, while a side
camera sees a retracted (shorter) post's tip shifted less than its neighbours':
the parallax that multi-camera inspection rigs rely on.

Everything is in pixels of the output image, and every random draw comes from a
generator seeded by ``(seed, part index)``, so the data is byte-identical for a
given seed whatever the order of generation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vitinspect.data.geometry import Geometry, Part, render_batch

CAMERA_OFFSETS = {
    "center": (0.0, 0.0),
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "top": (0.0, -1.0),
    "bottom": (0.0, 1.0),
}

BACKGROUND = 0.08  # outside the housing
HOUSING = 0.32
BODY = 0.55  # the post's side, seen by an off-centre camera
TIP_LOW, TIP_HIGH = 0.62, 0.92  # tip brightness at height 0 and 1 (closer to the light)
STEPS = 9  # samples along a post, base to tip


def _coverage(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """(K, n) share of each pixel [i, i+1) covered by the intervals [lo_k, hi_k]."""
    px = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(px + 1, hi[:, None]) - np.maximum(px, lo[:, None]), 0.0, 1.0)


def _lift(centres: np.ndarray, lifts: np.ndarray, half: float, n: int) -> np.ndarray:
    """(n, n) brightest anti-aliased square stamp at each pixel (0 where none).

    centres: (K, 2) stamp centres (x, y) px; lifts: (K,) brightness above the housing.
    Each stamp touches only a small patch, so only that patch is computed.
    """
    w = int(np.ceil(2 * half)) + 2
    lo = np.floor(centres - half).astype(np.int64)  # (K, 2) patch origin
    px = lo[:, :, None] + np.arange(w)  # (K, 2, w) pixel indices along x and y
    cover = np.clip(np.minimum(px + 1, centres[:, :, None] + half) - np.maximum(px, centres[:, :, None] - half), 0.0, 1.0)
    patch = cover[:, 1, :, None] * cover[:, 0, None, :] * lifts[:, None, None]  # (K, w, w)
    ys = np.broadcast_to(px[:, 1, :, None], patch.shape)
    xs = np.broadcast_to(px[:, 0, None, :], patch.shape)
    inside = (xs >= 0) & (xs < n) & (ys >= 0) & (ys < n)
    out = np.zeros((n, n))
    np.maximum.at(out, (ys[inside], xs[inside]), patch[inside])
    return out


def _box(x0, y0, x1, y1, n) -> np.ndarray:
    """(n, n) anti-aliased coverage of an axis-aligned box."""
    cx = _coverage(np.array([x0]), np.array([x1]), n)[0]
    cy = _coverage(np.array([y0]), np.array([y1]), n)[0]
    return np.outer(cy, cx)


def post_points(geom: Geometry, part: Part) -> tuple[np.ndarray, np.ndarray]:
    """World points along every post and their heights.

    Returns ``xy`` (T, STEPS, 2) in px and ``z`` (T, STEPS) in units of a good
    post's height; the last step is the tip. The part's jitter is applied.
    """
    bases = geom.bases() + np.asarray(part.jitter)
    t = np.linspace(0.0, 1.0, STEPS)
    n = len(bases)
    tip_offset = np.zeros((n, 2))
    height = np.ones(n)
    if part.defect_terminal >= 0:
        tip_offset[part.defect_terminal] = np.asarray(part.tilt) * geom.pitch
        height[part.defect_terminal] = 1.0 - part.retraction
    xy = bases[:, None, :] + t[None, :, None] * tip_offset[:, None, :]
    z = t[None, :] * height[:, None]
    return xy, z


def _stamps(geom: Geometry, part: Part, view: str):
    """Square stamps (centres (K, 2), values (K,)) of every post in one view."""
    xy, z = post_points(geom, part)
    off = np.asarray(CAMERA_OFFSETS[view])
    centres = xy + off * geom.parallax * z[..., None]
    values = np.full(z.shape, BODY)
    values[:, -1] = TIP_LOW + (TIP_HIGH - TIP_LOW) * z[:, -1]
    return centres.reshape(-1, 2), values.reshape(-1)


def render_view(geom: Geometry, part: Part, view: str, rng: np.random.Generator, noise: float, blur: float) -> np.ndarray:
    """(S, S) float image in [0, 1] of one part from one camera."""
    n = geom.image_size
    jx, jy = part.jitter
    x0, y0, x1, y1 = geom.housing_box()
    housing = _box(x0 + jx, y0 + jy, x1 + jx, y1 + jy, n)
    img = BACKGROUND + (HOUSING - BACKGROUND) * housing
    centres, values = _stamps(geom, part, view)
    img = img + _lift(centres, values - HOUSING, geom.half, n)
    img = img * part.lighting
    if blur > 0:
        img = ndimage.gaussian_filter(img, blur, mode="nearest")
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0.0, 1.0)


def defect_mask(geom: Geometry, part: Part) -> np.ndarray:
    """(S, S) bool: the defective post's footprint in the centre view, 1 px margin.

    All False for a passed part.
    """
    n = geom.image_size
    if part.defect_terminal < 0:
        return np.zeros((n, n), dtype=bool)
    centres, _ = _stamps(geom, part, "center")
    k = part.defect_terminal
    own = centres.reshape(-1, STEPS, 2)[k]
    cx = _coverage(own[:, 0] - geom.half, own[:, 0] + geom.half, n)
    cy = _coverage(own[:, 1] - geom.half, own[:, 1] + geom.half, n)
    cover = np.einsum("ky,kx->yx", cy, cx) > 0.25
    return ndimage.binary_dilation(cover, iterations=1)


def render_2d(data_params, indices, labels) -> dict[str, np.ndarray | list]:
    """The parts ``indices`` drawn by this renderer: :func:`vitinspect.data.geometry.render_batch`'s columns."""
    p = data_params
    geom = Geometry(p.image_size, p.grid.rows, p.grid.cols)

    def draw(part, rng):
        views = [np.round(render_view(geom, part, view, rng, p.noise, p.blur) * 255).astype(np.uint8) for view in p.views]
        return np.stack(views), defect_mask(geom, part)

    return render_batch(p, indices, labels, geom, draw)
