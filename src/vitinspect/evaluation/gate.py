"""The unit-space gate (Taguchi's Mahalanobis-Taguchi system): is a part like the good parts? Fitted and
thresholded on good parts alone.

The unit space is the one the composite already has: the NSOARTC image of a part is its RT channels
z-scored by the good training parts, pixel by pixel (``composite.nsoartc``). The gate summarises it per
terminal cell (``data.grid``, the peer's cells, :func:`vitinspect.data.layout.cell_boxes`), each cell cut into
quarters (2 x 2 sub-cells, :func:`feature_boxes`): for each quarter and channel, the mean distance of the composite
from mid-grey, ``mean |c - 128|`` (the gain times the mean |z|, clipped where the composite clips). A good part
keeps every quarter near its usual level; a defect lights up its own, a foreign or blank frame every one.
12 x rows x cols numbers (144 at the defaults). With fewer good training parts than the quarters need (one per
eight features, measured: :data:`PARTS_PER_FEATURE`) the gate keeps whole cells (36 numbers, one part per three).

Measured at the defaults (42 good training parts, lot of 1,800 good and 200 defective parts), the whole cells
first: these features with a Ledoit-Wolf covariance separate the 2-D lot completely (ROC AUC 1.000); the mean z
per cell instead lets 20 tilt_y parts through (a tilt's sign is random: the mean cancels, the magnitude does
not); the ViT's pooled feature (64 numbers, PaDiM-style) reaches AUC 0.963 only (14 % of good parts rejected); a
per-feature model (diagonal covariance) 0.989: the cells are correlated (lighting moves them together), so the
full covariance is needed, and with 42 parts for 36 features it must be shrunk: Ledoit-Wolf picks the shrinkage
towards a scaled identity from the data, with no parameter to tune. On Blender parts whole cells let 26 of 200
defective parts through (9 tilt_y, 17 retracted; AUC 0.9945): a retracted post changes a small patch of its
cell, and the cell's mean dilutes it with the rest. Quarters, measured beside other cuts and statistics on the
same Blender lot (threshold from good parts at 1 %, the moved copies below; good parts rejected, escapes, AUC):
whole cells 3, 26, 0.9945; **quarters 0, 14, 0.9994**; 2 x 12 sub-cells 0, 63, 0.970; 4 x 6 sub-cells 4, 50,
0.980; 8 x 16 0, 27, 0.997; 16 x 16 5, 64, 0.955; the cells' root-mean-square 2, 20, 0.997; their maximum 2, 70,
0.979; the excess over |c - 128| > 40 0, 85, 0.983; whole cells over a box found from the unit space's spread (where
the good parts vary, instead of the grid) 2, 56, 0.988. On 2-D parts quarters keep 0 of 1,800 and 0 of 200. At
the escape count the classifier reaches on the Blender lot (1 of 200), the quarters reject 42 of 1,800 good
parts (2.3 %), whole cells 9.8 %, the classifier alone 47.8 %.

MT's distance: MD = D^2 / k, D^2 the squared Mahalanobis distance to the good parts' mean, k the number of
features, so a good part scores about 1. The threshold comes from good parts only: the leave-one-out
distances of the good training parts (each scored by a unit space fitted without it) and the distances of
the good val parts (never fitted on), each part with its moved copies, and is the larger of two estimates of their (1 - a) quantile, a =
``gate.false_reject_rate``: the log-normal one and the empirical one (the OOD guard's rule,
:func:`vitinspect.deploy.ood_guard.calibrate`). No defective part is read to set it.

**Moved good parts.** The composite's z-scores are per pixel, so a good part that sits at the edge of the
renderer's jitter (uniform within +-``data.jitter_px``, 2 px per axis at the defaults) lights up every edge of its
housing and posts, and so every cell: measured at the defaults, 20 fresh good parts drawn at each corner and edge
of the jitter scored up to 1.58 times the threshold (x moves more than y: the side views look along x), and a
centred good part moved by np.roll by 2 px up to 1.53 times. The gate therefore learns the good parts together with
copies of them moved by every integer (dx, dy) within +-``gate.shift_px`` (edges repeated; 25 copies at 2 px): a
copy is the part's raw NSOARTC channels (decoded from its composite with the unit space, ``gain`` and ``eps``)
moved and z-scored again against the unit space (:func:`moved_features`); copy (0, 0) is the composite itself, bit
for bit. Fitting and the threshold see the copies (each leave-one-out fit leaves a part out with all its copies);
scoring does not change: one composite, one MD (the line PC's cost is the same). Measured at the defaults, beside
the alternatives (lot of 1,800 good and 200 defective parts):

====================================================  ==========  =======  =======  ==================  ============
features                                              good rej.   escapes  ROC AUC  jitter corners      defect min
====================================================  ==========  =======  =======  ==================  ============
these cells, good parts as drawn (before)             9 / 1800    0 / 200  1.000    up to 1.58 x thr    2.13 x thr
these cells, moved copies +-2 px (now)                0 / 1800    0 / 200  1.000    up to 0.67 x thr    1.73 x thr
the peer's RT features per cell (beta, Y2 per view)   60 / 1800   17 / 200 0.977    up to 1.96 x thr    0.33 x thr
these cells, each part scored at its best of 25 MDs   51 / 1800   0 / 200  1.000    up to 1.42 x thr    2.84 x thr
these cells at the shift of least total |c - 128|     31 / 1800   0 / 200  1.000    up to 1.14 x thr    4.74 x thr
====================================================  ==========  =======  =======  ==================  ============

(The peer's cells are fixed while the posts move inside them; a minimum of 25 distances is biased low, so its
threshold from good parts is low too; registration leaves a sub-pixel residual the tight unit space rejects.)
A blank, a grey frame and another product (3 x 4 terminals) score 6.6, 6.6 and 5.5 times the threshold.

With quarters the threshold still reads every moved copy, and so is conservative: 0 of 1,800 good lot parts
rejected at a 1 % target on either renderer. Read from the copies moved by at most 1 px it comes nearer the
target (2-D 6 of 1,800, Blender 7) and lets fewer Blender defects through (6 of 200 against 14), but then it
rejects 18 of 360 new 2-D good parts drawn at the corners and edges of the jitter (5 of the 40 drawn at exactly
x = 0); with every copy 0 of 360 (at most 0.75 x the threshold). A good part must pass wherever the renderer's
jitter puts it, so every copy stays.

Scoring is pure numpy (the line PC runs it without torch or scikit-learn); fitting imports scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.data.layout import cell_boxes
from vitinspect.evaluation.decision import rate

CHUNK = 256  # parts per chunk of composites: a memory-mapped lot is never decoded whole
MID = 128.0  # the composite's mid-grey, z = 0 (composite.nsoartc.to_image)
FEATURES = {1: "mean |composite - 128| per terminal cell (data.grid) and channel",
            2: "mean |composite - 128| per quarter of each terminal cell (data.grid) and channel"}
MOVED = "fitted and thresholded on the good parts and copies of them moved by every integer (dx, dy) within +-shift_px"
# Good training parts needed per feature, by how finely each terminal cell is cut (split x split sub-cells), measured
# at the defaults (random subsets of the 42 good training parts, the 9 good val parts, lot escapes of 200 at a 1 %
# target). Quarters (split 2, 144 features): on Blender parts 8 parts 54 escapes, 12: 58, 15: 58, 18: 29, 24: 24,
# 30: 25, all 42: 14 (0 of 1,800 good parts rejected in each); on 2-D parts 1 at 8, 0 from 12 on; below 18 the
# threshold doubles: one part per eight features. Whole cells (split 1, 36 features), on 2-D parts: 8 parts 4
# escapes, 12: 1, 18 or more 0: one part per three features. The finest split the good parts allow is used.
PARTS_PER_FEATURE = {2: 1 / 8, 1: 1 / 3}


def n_features(rows: int, cols: int, split: int = 1) -> int:
    return 3 * rows * cols * split * split


def parts_needed(rows: int, cols: int, split: int) -> int:
    """Good training parts the gate needs for the features of a ``rows`` x ``cols`` grid cut ``split`` x ``split``
    (at least 3: leave-one-out)."""
    return max(3, math.ceil(n_features(rows, cols, split) * PARTS_PER_FEATURE[split]))


def min_good_parts(rows: int, cols: int) -> int:
    """Good training parts the gate needs at all (its coarsest features: whole cells)."""
    return parts_needed(rows, cols, 1)


def split_for(n: int, rows: int, cols: int) -> int:
    """The finest cut of the cells that ``n`` good training parts allow (2: quarters; 1: whole cells)."""
    return 2 if n >= parts_needed(rows, cols, 2) else 1


def too_few(n: int, rows: int, cols: int) -> str | None:
    """The one line that says the gate has too few good training parts, or None."""
    need = min_good_parts(rows, cols)
    if n >= need:
        return None
    return (f"the gate's {n_features(rows, cols)} features (3 channels x {rows} x {cols} cells of data.grid) need at least "
            f"{need} good training parts, there are {n}; raise data.passed_ratio or data.n_images (or bring more good "
            f"parts), or a coarser data.grid ({parts_needed(rows, cols, 2)} give it each cell's quarters, "
            f"{n_features(rows, cols, 2)} features, the finer gate)")


def feature_boxes(size: int, rows: int, cols: int, split: int = 1) -> np.ndarray:
    """(rows * cols * split^2, 4) boxes (x0, y0, x1, y1), end-exclusive: each terminal cell of
    :func:`vitinspect.data.layout.cell_boxes` (row-major) cut into ``split`` x ``split`` sub-cells (row-major), each at
    least 1 px."""
    def cuts(a, b):  # a cell's edges and its cuts, rounded up
        return [a + -(-(b - a) * i // split) for i in range(split + 1)]

    out = []
    for x0, y0, x1, y1 in cell_boxes(size, rows, cols):
        xs, ys = cuts(x0, x1), cuts(y0, y1)
        out += [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(split) for i in range(split)]
    b = np.asarray(out, dtype=np.int64).reshape(-1, 4)
    b[:, :2] = np.minimum(b[:, :2], size - 1)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    return b


def cell_features(images, rows: int, cols: int, split: int = 1) -> np.ndarray:
    """(N, S, S, 3) uint8 NSOARTC composites (an array or a memory-mapped column) -> (N, n_features) float64: per
    sub-cell (:func:`feature_boxes`, row-major) its three channels' mean |c - 128|."""
    n, size = len(images), images.shape[1]
    boxes = feature_boxes(size, rows, cols, split)
    out = np.empty((n, len(boxes), 3))
    for i in range(0, n, CHUNK):
        a = np.abs(np.asarray(images[i:i + CHUNK], dtype=np.float64) - MID)
        for t, (x0, y0, x1, y1) in enumerate(boxes):
            out[i:i + CHUNK, t] = a[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return out.reshape(n, -1)


def shifts(px: int) -> list[tuple[int, int]]:
    """Every integer (dx, dy) within +-``px``, (0, 0) first."""
    r = range(-px, px + 1)
    return [(0, 0)] + [(dx, dy) for dy in r for dx in r if (dx, dy) != (0, 0)]


@dataclass(frozen=True)
class Moves:
    """How the gate moves a good part: by every integer (dx, dy) within +-``px`` (``gate.shift_px``), against
    the NSOARTC unit space (``mean``, ``std``: (3, S, S)) and the ``gain`` and ``eps`` its composite was made with."""

    mean: np.ndarray
    std: np.ndarray
    gain: float
    eps: float
    px: int

    def shifts(self) -> list[tuple[int, int]]:
        """Every (dx, dy), (0, 0) first."""
        return shifts(self.px)


def moves_from(unit_space_path, gain: float, eps: float, px: int) -> Moves:
    """:class:`Moves` with the nsoartc stage's unit space (``data/unit_space.npz``)."""
    from vitinspect.composite.nsoartc import load_unit_space

    space = load_unit_space(unit_space_path)
    return Moves(space.mean.astype(np.float64), space.scale.astype(np.float64), float(gain), float(eps), int(px))


def _moved(raw: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(N, S, S, C) -> the same moved by dx px right and dy px down, edges repeated."""
    if dx == dy == 0:
        return raw
    n, s = max(abs(dx), abs(dy)), raw.shape[1]
    padded = np.pad(raw, ((0, 0), (n, n), (n, n), (0, 0)), mode="edge")
    return padded[:, n - dy:n - dy + s, n - dx:n - dx + s]


def moved_features(images, rows: int, cols: int, moves: Moves | None, split: int = 1) -> np.ndarray:
    """(N, S, S, 3) uint8 composites -> (N, K, n_features): the :func:`cell_features` (``split``) of each part moved by
    each of ``moves``' K shifts ((0, 0) first: the composite as it is). A part is moved as the camera would see it
    moved: its raw channels (z * (std + eps) + mean, exact up to the composite's rounding and clipping) move, the
    unit space stays, and the composite is made again (``to_image``'s rounding and clipping). No moves: K = 1."""
    if moves is None or moves.px == 0:
        return cell_features(images, rows, cols, split)[:, None]
    n, shifts = len(images), moves.shifts()
    mean, scale = np.moveaxis(moves.mean, 0, -1), np.moveaxis(moves.std, 0, -1) + moves.eps
    out = np.empty((n, len(shifts), n_features(rows, cols, split)))
    for i in range(0, n, CHUNK):
        raw = (np.asarray(images[i:i + CHUNK], dtype=np.float64) - MID) / moves.gain * scale + mean
        for k, (dx, dy) in enumerate(shifts):
            c = np.clip(np.round(MID + moves.gain * (_moved(raw, dx, dy) - mean) / scale), 0, 255)
            out[i:i + CHUNK, k] = cell_features(c, rows, cols, split)
    return out


def mahalanobis(x: np.ndarray, location: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N, D) -> (N,) squared Mahalanobis distance to ``location`` under ``precision`` (D, D)."""
    d = np.asarray(x, dtype=np.float64) - location
    return np.einsum("nd,de,ne->n", d, precision, d)


def _shrunk(good: np.ndarray):
    from sklearn.covariance import LedoitWolf  # lazy: only fitting needs it

    return LedoitWolf().fit(good)


def threshold_from_good(distances: np.ndarray, false_reject_rate: float) -> float:
    """The larger of the log-normal and the empirical (1 - a) quantile of good parts' distances."""
    d = np.asarray(distances, dtype=np.float64)
    logs = np.log(np.maximum(d, 1e-12))
    normal = math.exp(logs.mean() + NormalDist().inv_cdf(1.0 - false_reject_rate) * logs.std(ddof=1))
    return float(max(normal, np.quantile(d, 1.0 - false_reject_rate)))


@dataclass(frozen=True)
class Gate:
    """The fitted gate: the good parts' mean (D,) and shrunk precision (D, D) of the cell features, the grid
    they are taken on (and ``split``: each cell cut into split x split sub-cells), and the MD threshold (a part
    passes when MD <= threshold)."""

    location: np.ndarray
    precision: np.ndarray
    threshold: float
    rows: int
    cols: int
    false_reject_rate: float
    shrinkage: float
    n_fit: int
    held_out: dict  # the good parts' distances the threshold was set on (each part's moved copies): k above it of n
    shift_px: int = 0  # the good parts were fitted and thresholded with their copies moved within +-shift_px
    split: int = 1  # each terminal cell cut into split x split sub-cells (2: quarters)

    def score(self, images) -> np.ndarray:
        """(N, S, S, 3) uint8 composites -> (N,) MD = D^2 / k (a good part scores about 1)."""
        if not len(images):
            return np.zeros(0)
        return mahalanobis(cell_features(images, self.rows, self.cols, self.split), self.location, self.precision) / len(self.location)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def info(self) -> dict:
        """What the reports and the bundle's manifest say of it (JSON)."""
        return {"features": FEATURES[self.split], "moved": MOVED, "shift_px": self.shift_px, "n_features": len(self.location),
                "grid": [self.rows, self.cols], "split": self.split,
                "covariance": "Ledoit-Wolf", "shrinkage": round(self.shrinkage, 6), "n_fit": self.n_fit,
                "false_reject_rate": self.false_reject_rate, "threshold": self.threshold, "held_out": self.held_out,
                "rule": "pass when MD = D^2 / k <= threshold, k features; threshold from good parts only"}

    def arrays(self) -> dict:
        """The arrays :func:`from_arrays` reads back (an .npz: float64, so every score comes back bit for bit)."""
        return {"location": self.location, "precision": self.precision,
                "settings": np.array([self.threshold, self.rows, self.cols, self.false_reject_rate, self.shrinkage,
                                      self.n_fit, self.held_out["k"], self.held_out["n"], self.shift_px, self.split],
                                     dtype=np.float64)}


def from_arrays(a, where) -> Gate:
    """The Gate of :meth:`Gate.arrays` (a mapping of arrays, e.g. an open .npz); a one-line VitinspectError
    naming ``where`` when they are not one (shapes, non-finite values, a threshold <= 0)."""
    try:
        loc, prec = np.asarray(a["location"], dtype=np.float64), np.asarray(a["precision"], dtype=np.float64)
        s = np.asarray(a["settings"], dtype=np.float64)
        if s.shape == (9,):  # a gate written before the cells were cut: whole cells
            s = np.append(s, 1.0)
        t, rows, cols, frr, shrink, n_fit, k, n, px, split = (float(x) for x in s)
        ok = (s.shape == (10,) and np.all(np.isfinite(s)) and split in (1, 2)
              and loc.shape == (n_features(int(rows), int(cols), int(split)),)
              and prec.shape == (len(loc), len(loc)) and np.all(np.isfinite(loc)) and np.all(np.isfinite(prec)) and t > 0
              and rows >= 1 and cols >= 1 and 0 <= k <= n and px >= 0)
    except (KeyError, ValueError, TypeError) as exc:
        raise VitinspectError(f"{where}: not a gate ({type(exc).__name__}); rebuild it (dvc repro)") from None
    if not ok:
        raise VitinspectError(f"{where}: not a gate (the location, precision and settings must be finite, of the grid's "
                              "feature count, with a positive threshold); rebuild it (dvc repro)")
    return Gate(loc, prec, t, int(rows), int(cols), frr, shrink, int(n_fit), rate(int(k), int(n)), int(px), int(split))


def fit_gate(train_good: np.ndarray, val_good: np.ndarray, rows: int, cols: int, false_reject_rate: float, where,
             shift_px: int = 0, split: int = 1) -> Gate:
    """The gate of the good training parts' cell features ``train_good`` (N, K, D): N parts, each with its K moved
    copies (:func:`moved_features` with ``split``; (N, D) is K = 1), its threshold from their leave-one-out distances
    (a part is left out with all its copies) and the good val parts' ``val_good`` (M, K, D). Only good parts come in:
    no defective part can move the threshold. One line naming ``where`` when there are too few good training parts
    (for ``split``)."""
    train_good, val_good = (np.asarray(a, dtype=np.float64) for a in (train_good, val_good))
    if train_good.ndim == 2:
        train_good, val_good = train_good[:, None], val_good.reshape(len(val_good), 1, train_good.shape[-1])
    problem = too_few(len(train_good), rows, cols)
    if problem or len(train_good) < parts_needed(rows, cols, split):
        raise VitinspectError(f"{where}: {problem or f'the gate cut {split} x {split} needs {parts_needed(rows, cols, split)} good training parts, there are {len(train_good)}'}")
    k = train_good.shape[-1]
    flat = lambda a: a.reshape(-1, k)  # noqa: E731
    loo = [mahalanobis(train_good[i], (lw := _shrunk(flat(np.delete(train_good, i, axis=0)))).location_, lw.precision_)
           for i in range(len(train_good))]
    lw = _shrunk(flat(train_good))
    held = mahalanobis(flat(val_good), lw.location_, lw.precision_) if len(val_good) else np.zeros(0)
    distances = np.concatenate([*loo, held]) / k
    t = threshold_from_good(distances, false_reject_rate)
    return Gate(lw.location_.astype(np.float64), lw.precision_.astype(np.float64), t, rows, cols, false_reject_rate,
                float(lw.shrinkage_), len(train_good), rate(int((distances > t).sum()), len(distances)), shift_px, split)


def gate_of(splits: dict, good: int, rows: int, cols: int, false_reject_rate: float, where, moves: Moves | None) -> Gate:
    """The gate of a data set's splits ({"train"|"val": {"label": (N,), "nsoartc": (N, S, S, 3) uint8}}): fitted on
    the train split's good parts (label ``good``) and their copies moved by ``moves`` (None: not moved), thresholded
    with the val split's good parts and theirs. Defective parts are never read."""
    keep = {s: np.flatnonzero(np.asarray(splits[s]["label"]) == good) for s in ("train", "val")}
    split = split_for(len(keep["train"]), rows, cols)
    feats = {s: moved_features(splits[s]["nsoartc"][k], rows, cols, moves, split) if len(k)
             else np.zeros((0, 1, n_features(rows, cols, split))) for s, k in keep.items()}
    return fit_gate(feats["train"], feats["val"], rows, cols, false_reject_rate, where, moves.px if moves else 0, split)


def gate_and_scores(data_dir, lot_composites, good: int, grid, false_reject_rate: float, moves: Moves | None) -> tuple[Gate, dict]:
    """The evaluate stage's gate: fitted on the good training parts of the nsoartc stage's data set ``data_dir``,
    thresholded with its good val parts, both with their copies moved by ``moves`` (:func:`gate_of`, :func:`moves_from`),
    and its MD on every part of val, test and the lot (``lot_composites``: (N, S, S, 3) uint8). ``grid``: params'
    data.grid (rows, cols)."""
    from vitinspect.core.storage import load_dataset_dir
    from vitinspect.data.arrow import MappedImages, columns

    ds = load_dataset_dir(data_dir)
    splits = {s: {**columns(ds[s], ["label"]), "nsoartc": MappedImages(ds[s], "nsoartc")} for s in ("train", "val", "test")}
    gate = gate_of(splits, good, grid.rows, grid.cols, false_reject_rate, data_dir, moves)
    return gate, {"val": gate.score(splits["val"]["nsoartc"]), "test": gate.score(splits["test"]["nsoartc"]),
                  "lot": gate.score(lot_composites)}


def roc(scores: np.ndarray, is_good: np.ndarray, threshold: float) -> list[dict]:
    """The gate's ROC on a set of parts (defect detection by MD, for dvc plots): false-reject rate (x) against
    detection rate (y), the threshold of each record, and the gate's own point marked ``operating_point``."""
    from sklearn.metrics import roc_curve

    y = ~np.asarray(is_good, dtype=bool)
    if y.all() or not y.any():
        return []
    fpr, tpr, thr = roc_curve(y, np.asarray(scores, dtype=np.float64))
    out = [{"false_reject_rate": round(float(a), 6), "detection_rate": round(float(b), 6),
            "threshold": round(float(min(c, 1e6)), 6), "operating_point": False} for a, b, c in zip(fpr, tpr, thr)]
    reject = np.asarray(scores) > threshold
    out.append({"false_reject_rate": round(float((reject & ~y).sum() / (~y).sum()), 6),
                "detection_rate": round(float((reject & y).sum() / y.sum()), 6), "threshold": round(threshold, 6),
                "operating_point": True})
    return out


def save_gate(gate: Gate, path) -> None:
    """Write the gate's arrays (:meth:`Gate.arrays`) to ``path`` (.npz), atomically."""
    from vitinspect.core.storage import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **gate.arrays())


def load_gate(path) -> Gate:
    """The gate :func:`save_gate` wrote; a one-line VitinspectError naming ``path`` otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return from_arrays({k: z[k] for k in z.files}, path)
    except (OSError, ValueError) as exc:
        raise VitinspectError(f"{path}: not a gate written by the evaluate stage ({type(exc).__name__}); run dvc repro") from None
