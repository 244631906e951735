"""A part's geometry and the draws that make it, whichever renderer draws its pixels.

The part is a housing with a ``rows x cols`` grid of square terminal posts (:class:`Geometry`); each part
draws its class, defective post, tilt, retraction, jitter and lighting from its own generator
(:func:`draw_part`), seeded by ``(seed, 1, part index)``, so a part is the same whatever the order or
process it is drawn in. :func:`plan` gives every part's class and split; :func:`render_batch` is the loop
both renderers (vitinspect.data.render2d, vitinspect.data.blender_scene) run over a batch of parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitinspect.data.layout import class_counts, terminal_bases, terminal_pitch


@dataclass(frozen=True)
class Geometry:
    """Where things are in the image, derived from the image size and the grid."""

    image_size: int
    rows: int
    cols: int

    @property
    def pitch(self) -> float:
        """Distance between neighbouring terminals, px."""
        return terminal_pitch(self.image_size, self.rows, self.cols)

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
        return terminal_bases(self.image_size, self.rows, self.cols)

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


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) box of a mask, end-exclusive; zeros when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


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
