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

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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


@dataclass(frozen=True)
class Geometry:
    """Where things are in the image, derived from the image size and the grid."""

    image_size: int
    rows: int
    cols: int

    @property
    def pitch(self) -> float:
        """Distance between neighbouring terminals, px."""
        return 0.8 * self.image_size / max(self.rows, self.cols, 3)

    @property
    def half(self) -> float:
        """Half the side of a terminal's square section, px."""
        return 0.3 * self.pitch

    @property
    def parallax(self) -> float:
        """Image shift of a point at height 1 in a side view with unit offset, px."""
        return 0.45 * self.pitch

    def bases(self) -> np.ndarray:
        """(rows*cols, 2) base points (x, y) of the terminals, row-major, px."""
        c = self.image_size / 2
        xs = c + (np.arange(self.cols) - (self.cols - 1) / 2) * self.pitch
        ys = c + (np.arange(self.rows) - (self.rows - 1) / 2) * self.pitch
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)

    def housing_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the housing, px."""
        b = self.bases()
        m = 0.6 * self.pitch
        return b[:, 0].min() - m, b[:, 1].min() - m, b[:, 0].max() + m, b[:, 1].max() + m


@dataclass(frozen=True)
class Part:
    """One part: its class and the draws that place and light it."""

    label: str
    defect_terminal: int  # -1 for a passed part
    tilt: tuple[float, float]  # tip displacement of the defective post, in pitches
    retraction: float  # fraction of h the defective post lost
    jitter: tuple[float, float]  # whole-part shift, px
    lighting: float  # multiplicative gain


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


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) box of a mask, end-exclusive; zeros when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def class_counts(n_images: int, classes: list[str], passed_ratio: float) -> dict[str, int]:
    """Exact class sizes: round(passed_ratio * n) passed, the rest split evenly.

    When the defective parts do not split evenly the first defect classes get one more.
    """
    n_passed = int(round(passed_ratio * n_images))
    defects = [c for c in classes if c != "passed"]
    base, extra = divmod(n_images - n_passed, len(defects))
    counts = {c: base + (i < extra) for i, c in enumerate(defects)}
    return {"passed": n_passed, **counts} if "passed" in classes else counts


def assign_splits(labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Stratified split names for an array of labels: every class split by the same fractions."""
    names = list(fractions)
    out = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        cuts = np.round(np.cumsum([fractions[s] for s in names[:-1]]) * len(idx)).astype(int)
        for name, chunk in zip(names, np.split(idx, cuts)):
            out[chunk] = name
    return out


def draw_part(label: str, geom: Geometry, rng: np.random.Generator, *, tilt_range, retract_range, jitter_px, lighting) -> Part:
    """Draw one part of class ``label``."""
    n_terminals = geom.rows * geom.cols
    jitter = tuple(rng.uniform(-jitter_px, jitter_px, 2)) if jitter_px > 0 else (0.0, 0.0)
    gain = float(rng.uniform(1 - lighting, 1 + lighting))
    terminal, tilt, retraction = -1, (0.0, 0.0), 0.0
    if label != "passed":
        terminal = int(rng.integers(n_terminals))
        if label in ("tilt_x", "tilt_y"):
            mag = float(rng.uniform(*tilt_range)) * (1 if rng.random() < 0.5 else -1)
            tilt = (mag, 0.0) if label == "tilt_x" else (0.0, mag)
        elif label == "retracted":
            retraction = float(rng.uniform(*retract_range))
    return Part(label, terminal, (float(tilt[0]), float(tilt[1])), retraction, (float(jitter[0]), float(jitter[1])), gain)


def plan(data_params) -> tuple[np.ndarray, np.ndarray]:
    """Class name and split name of every part (N,), both object arrays: cheap, no pixels."""
    p = data_params
    counts = class_counts(p.n_images, p.classes, p.passed_ratio)
    order_rng = np.random.default_rng([p.seed, 0])
    labels = np.array([c for c in p.classes for _ in range(counts[c])], dtype=object)
    labels = labels[order_rng.permutation(len(labels))]
    splits = assign_splits(labels, {"train": p.split.train, "val": p.split.val, "test": p.split.test}, order_rng)
    return labels, splits


def render_parts(data_params, indices, labels) -> dict[str, np.ndarray | list]:
    """Render the parts ``indices`` (of :func:`plan`'s ``labels``): any subset, in any order or process,
    gives the same bytes per part (each part draws from its own generator, seeded by (seed, 1, index)).

    Returns columns ``id``, ``label`` (class names), ``defect_terminal``, ``tilt``, ``retraction``,
    ``bbox``, ``mask`` (n, S, S) uint8 and ``views`` (n, V, S, S) uint8. With ``data.renderer: blender``
    Blender renders them (:func:`vitinspect.blender_scene.render_parts`, the same columns and draws).
    """
    p = data_params
    if p.renderer == "blender":  # the same parts from Cycles (vitinspect.blender_scene)
        from vitinspect.blender_scene import render_parts as blender_parts

        return blender_parts(p, indices, labels)
    geom = Geometry(p.image_size, p.grid.rows, p.grid.cols)

    def draw(part, rng):
        views = [np.round(render_view(geom, part, view, rng, p.noise, p.blur) * 255).astype(np.uint8) for view in p.views]
        return np.stack(views), defect_mask(geom, part)

    return render_batch(p, indices, labels, geom, draw)


def render_batch(p, indices, labels, geom: "Geometry", draw) -> dict[str, np.ndarray | list]:
    """The columns of a batch of parts: each part's draws (``draw_part``, from its own seeded generator), then
    ``draw(part, rng)`` -> ((V, S, S) uint8 views, (S, S) mask), with the same generator, so a renderer that
    draws more from it (Blender's rotation and noise) keeps the 2-D renderer's parts for a seed."""
    indices = [int(i) for i in indices]
    n, s, v = len(indices), p.image_size, len(p.views)
    views = np.empty((n, v, s, s), dtype=np.uint8)
    masks = np.empty((n, s, s), dtype=np.uint8)
    terminals = np.empty(n, dtype=np.int32)
    tilts = np.empty((n, 2), dtype=np.float32)
    retractions = np.empty(n, dtype=np.float32)
    boxes = np.empty((n, 4), dtype=np.int32)
    for k, i in enumerate(indices):
        rng = np.random.default_rng([p.seed, 1, i])
        part = draw_part(labels[i], geom, rng, tilt_range=p.defect.tilt, retract_range=p.defect.retract,
                         jitter_px=p.jitter_px, lighting=p.lighting)
        views[k], mask = draw(part, rng)
        masks[k] = mask
        boxes[k] = mask_box(mask)
        terminals[k] = part.defect_terminal
        tilts[k] = part.tilt
        retractions[k] = part.retraction
    return {
        "id": [f"part-{i:05d}" for i in indices],
        "label": [labels[i] for i in indices],
        "defect_terminal": terminals,
        "tilt": tilts,
        "retraction": retractions,
        "bbox": boxes,
        "mask": masks,
        "views": views,
    }


def generate(data_params) -> dict[str, np.ndarray | list]:
    """Render the whole data set described by ``params.data``, in memory (the ``prepare`` stage renders
    it in chunks with :func:`plan` and :func:`render_parts` instead).

    Returns columns: ``id`` (N,), ``split`` (N,), ``label`` (N,) class names,
    ``defect_terminal`` (N,), ``tilt`` (N, 2) pitches, ``retraction`` (N,),
    ``mask`` (N, S, S) uint8, ``bbox`` (N, 4), ``views`` (N, V, S, S) uint8.
    """
    labels, splits = plan(data_params)
    cols = render_parts(data_params, range(len(labels)), labels)
    return {"id": cols.pop("id"), "split": list(splits), **cols}
