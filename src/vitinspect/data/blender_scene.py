"""Parts rendered in Blender (``data.renderer: blender``): the same parts as :mod:`vitinspect.data.render2d`, as
Cycles sees them.

A housing with the ``data.grid`` of square metal posts, the cameras of ``data.views`` (the centre one looking
straight down, each side camera tilted by ``data.blender.angle`` towards the grid) and an area light. The
scene is built once per process; per part only the part's pose, the defective post, the light's strength
and the Cycles seed change. Every length is in millimetres; the numbers are in docs/blender.md.

The geometry is :mod:`vitinspect.data.blender_rig` (plain numpy, which ``validate`` checks without ``bpy``).

The part's draws are :func:`vitinspect.data.geometry.draw_part`'s (same class, defective post, tilt, retraction,
shift and light gain per seed and index as the 2-D renderer), then a small rotation and the Cycles seed.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile

import numpy as np
from scipy import ndimage

from vitinspect.data.blender_rig import (DISTANCE, HEIGHT, INSTALL, MARGIN, PITCH, POST, POST_INDEX, SUNK, THICK,
                                    bpy_available, camera_frames, rig_of)
from vitinspect.core.errors import VitinspectError
from vitinspect.data.geometry import Geometry, render_batch


class BlenderError(VitinspectError):
    """Blender could not render what was asked (no bpy, no GPU for device gpu, a failed render)."""


# --------------------------------------------------------------------------- the scene (bpy)

_SCENE = None  # (key, Scene) of this process
_STARTED_IN = None  # the pid that started Blender: a process forked from it inherits a Blender that cannot render


def _box_mesh(bpy, name: str, x: float, y: float, z0: float, z1: float):
    """An axis-aligned box mesh, centred on x = y = 0, from z0 to z1."""
    vs = [(sx * x / 2, sy * y / 2, z) for z in (z0, z1) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vs, [], faces)
    mesh.update()
    return mesh


def _material(bpy, name: str, colour, metallic: float, roughness: float):
    mat = bpy.data.materials.new(name)  # Blender 5: born with a node tree (use_nodes is deprecated)
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def _mask_material(bpy):
    """White emission on the object whose pass index equals the Compare node's value, black elsewhere."""
    mat = bpy.data.materials.new("mask")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for n in list(nodes):
        nodes.remove(n)
    info = nodes.new("ShaderNodeObjectInfo")
    cmp = nodes.new("ShaderNodeMath")
    cmp.operation = "COMPARE"
    cmp.inputs[1].default_value = -1.0
    cmp.inputs[2].default_value = 0.25
    emit = nodes.new("ShaderNodeEmission")
    out = nodes.new("ShaderNodeOutputMaterial")
    links.new(info.outputs["Object Index"], cmp.inputs[0])
    links.new(cmp.outputs[0], emit.inputs["Strength"])
    links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat, cmp


@contextlib.contextmanager
def _quiet():
    """Blender's own printing (a line per saved frame, its numpy 1.x notice on import) goes to a file, not
    the stage's log; what it said comes back in the message of an error raised meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except VitinspectError:
            raise
        except Exception as exc:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            log.seek(0)
            said = log.read()[-300:].decode("utf-8", "replace").strip().splitlines()
            raise BlenderError(f"Blender failed: {type(exc).__name__}: {str(exc)[:200]}" + (f" ({said[-1]})" if said else "")) from None
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class Scene:
    """The Blender scene of one params set, built once; :meth:`render` poses it for a part."""

    def __init__(self, data):
        import bpy

        self.bpy, self.data, self.rig = bpy, data, rig_of(data)
        b = data.blender
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = self.scene = bpy.context.scene
        r = scene.render
        r.engine = "CYCLES"
        r.resolution_x = r.resolution_y = data.image_size
        r.resolution_percentage = 100
        r.threads_mode, r.threads = "FIXED", int(b.threads)
        r.dither_intensity = 0.0
        r.use_persistent_data = True
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "BW"
        r.image_settings.color_depth = "8"
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        c = scene.cycles
        c.samples, c.use_denoising, c.use_adaptive_sampling = int(b.samples), bool(b.denoise), False
        c.max_bounces, c.diffuse_bounces, c.glossy_bounces, c.transmission_bounces = 4, 2, 3, 0
        c.pixel_filter_type = "BLACKMAN_HARRIS"
        c.use_animated_seed = False
        c.device = self._device(b.device)

        world = bpy.data.worlds.new("world")
        self.background = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
        self.background.inputs["Color"].default_value = (0.02, 0.02, 0.02, 1.0)
        scene.world = world

        rig = self.rig
        self.part = bpy.data.objects.new("part", None)
        scene.collection.objects.link(self.part)
        bases = rig.bases()
        width = (np.ptp(bases[:, 0]) + 2 * MARGIN, np.ptp(bases[:, 1]) + 2 * MARGIN)
        housing = bpy.data.objects.new("housing", _box_mesh(bpy, "housing", *width, -THICK, 0.0))
        housing.data.materials.append(_material(bpy, "plastic", (0.08, 0.08, 0.08), 0.0, 0.6))
        housing.parent, housing.pass_index = self.part, 0
        scene.collection.objects.link(housing)
        metal = _material(bpy, "brass", (0.9, 0.8, 0.6), 1.0, 0.35)
        post_mesh = _box_mesh(bpy, "post", POST, POST, -SUNK, HEIGHT)
        post_mesh.materials.append(metal)
        self.posts = []
        for k, (x, y, _) in enumerate(bases):
            post = bpy.data.objects.new(f"post-{k:03d}", post_mesh)
            post.parent, post.location, post.pass_index = self.part, (x, y, 0.0), POST_INDEX + k
            scene.collection.objects.link(post)
            self.posts.append(post)

        light = bpy.data.lights.new("panel", "AREA")
        light.shape, light.size = "SQUARE", 0.6 * rig.frame
        self.energy = 14.0 * rig.frame ** 2  # tops just saturate where they mirror the panel
        light.energy = self.energy
        self.light = bpy.data.objects.new("panel", light)
        self.light.location = (0.0, 0.0, 1.5 * rig.frame)
        scene.collection.objects.link(self.light)

        from mathutils import Matrix

        self.cameras = {}
        for view, (loc, rot) in camera_frames(rig).items():
            cam = bpy.data.cameras.new(view)
            cam.type, cam.sensor_fit, cam.angle = "PERSP", "HORIZONTAL", rig.fov
            cam.clip_start, cam.clip_end = 1.0, 20 * DISTANCE * rig.frame
            obj = bpy.data.objects.new(view, cam)
            m = np.eye(4)
            m[:3, :3], m[:3, 3] = rot, loc
            obj.matrix_world = Matrix(m.tolist())
            scene.collection.objects.link(obj)
            self.cameras[view] = obj
        self.mask_material, self.mask_target = _mask_material(bpy)
        self.tmp = tempfile.mkdtemp(prefix="vitinspect-blender-")

    def _device(self, device: str) -> str:
        if device == "cpu":
            return "CPU"
        prefs = self.bpy.context.preferences.addons["cycles"].preferences
        for kind in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
            try:
                prefs.compute_device_type = kind
            except TypeError:
                continue
            prefs.get_devices()
            gpus = [d for d in prefs.devices if d.type == kind]
            if gpus:
                for d in prefs.devices:
                    d.use = d.type == kind
                return "GPU"
        if device == "gpu":
            raise BlenderError("data.blender.device gpu: Blender finds no CUDA, OptiX, HIP, oneAPI or Metal device here; use auto or cpu")
        return "CPU"

    def _still(self, view: str, name: str) -> np.ndarray:
        bpy, scene = self.bpy, self.scene
        scene.camera = self.cameras[view]
        path = os.path.join(self.tmp, f"{name}.png")
        scene.render.filepath = path
        with _quiet():
            bpy.ops.render.render(write_still=True)
        from PIL import Image

        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("L"), dtype=np.uint8).copy()
        except OSError as exc:  # pragma: no cover (Blender wrote nothing)
            raise BlenderError(f"Blender rendered no image for view {view!r} ({exc})") from None
        finally:
            if os.path.exists(path):
                os.remove(path)

    def pose(self, part, rotation_deg: float, mm_per_px: float) -> None:
        """Place the part (shift, rotation), its defective post (tilt, retraction) and the light's gain."""
        jx, jy = part.jitter
        self.part.location = (jx * mm_per_px, -jy * mm_per_px, 0.0)
        self.part.rotation_euler = (0.0, 0.0, math.radians(rotation_deg))
        bases = self.rig.bases()
        for k, post in enumerate(self.posts):
            post.location = (bases[k, 0], bases[k, 1], 0.0)
            post.rotation_euler = (0.0, 0.0, 0.0)
        if part.defect_terminal >= 0:
            post = self.posts[part.defect_terminal]
            tx, ty = part.tilt  # tip displacement in pitches, image axes
            # about y by +a moves the tip to +x; about x by +b moves it to -y world, +y in the image
            post.rotation_euler = (math.asin(min(1.0, ty * PITCH / HEIGHT)), math.asin(min(1.0, tx * PITCH / HEIGHT)), 0.0)
            post.location = (bases[part.defect_terminal, 0], bases[part.defect_terminal, 1], -part.retraction * HEIGHT)
        self.light.data.energy = self.energy * part.lighting

    def render(self, part, views, cycles_seed: int, rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """(V, S, S) uint8 views before sensor noise and the (S, S) bool mask of the defective post."""
        b, s = self.data.blender, self.data.image_size
        self.pose(part, rotation_deg, self.rig.frame / s)
        c, layer = self.scene.cycles, self.bpy.context.view_layer
        c.seed, c.samples, c.filter_width = int(cycles_seed), int(b.samples), 1.5
        c.use_denoising = bool(b.denoise)
        images = np.stack([self._still(v, v) for v in views])
        mask = np.zeros((s, s), dtype=bool)
        if part.defect_terminal >= 0:  # emission-only: the defective post white, all else black, pixel centres
            self.mask_target.inputs[1].default_value = float(POST_INDEX + part.defect_terminal)
            layer.material_override = self.mask_material
            self.background.inputs["Strength"].default_value = 0.0
            c.samples, c.filter_width, c.use_denoising = 1, 0.01, False
            try:
                mask = self._still("center", "mask") > 127
            finally:
                layer.material_override = None
                self.background.inputs["Strength"].default_value = 1.0
        return images, mask


def scene_for(data) -> Scene:
    """This process's scene for ``data``, built on first use (each worker process builds its own)."""
    global _SCENE, _STARTED_IN
    if _STARTED_IN is not None and _STARTED_IN != os.getpid():  # Cycles' threads did not survive the fork: it would hang
        raise BlenderError("Blender was started in the process this one was forked from and cannot render here; "
                           "start it only in the worker processes (render nothing in the parent before they fork)")
    key = (data.image_size, data.grid, tuple(data.views), data.blender)
    if _SCENE is None or _SCENE[0] != key:
        if not bpy_available():
            raise BlenderError(INSTALL)
        _STARTED_IN = os.getpid()
        with _quiet():  # bpy's import notices, Cycles' probing of GPU libraries
            _SCENE = (key, Scene(data))
    return _SCENE[1]


def render_blender(data_params, indices, labels) -> dict[str, np.ndarray | list]:
    """:func:`vitinspect.data.render2d.render_2d` for ``data.renderer: blender``: the same columns and draws, the
    pixels from Cycles. Part i's nuisance comes from the generator seeded by (seed, 1, i), so any subset, in
    any order or process, gives the same bytes per part on one machine."""
    p, b = data_params, data_params.blender
    geom = Geometry(p.image_size, p.grid.rows, p.grid.cols)  # the 2-D draws: jitter in px, tilt in pitches
    scene = scene_for(p)

    def draw(part, rng):
        rotation = float(rng.uniform(-b.rotation, b.rotation)) if b.rotation > 0 else 0.0
        images, mask = scene.render(part, p.views, int(rng.integers(2 ** 31 - 1)), rotation)
        if p.noise > 0:
            images = np.clip(images / 255.0 + rng.normal(0.0, p.noise, images.shape), 0.0, 1.0)
            images = np.round(images * 255)
        mask = ndimage.binary_dilation(mask, iterations=1) if mask.any() else mask
        return images.astype(np.uint8), mask

    return render_batch(p, indices, labels, geom, draw)
