"""The unit-space gate (Taguchi's Mahalanobis-Taguchi system): is a part like the good parts? Fitted and
thresholded on good parts alone.

The unit space is the one the composite already has: the NSOARTC image of a part is its RT channels
z-scored by the good training parts, pixel by pixel (``composite.nsoartc``). The gate summarises it per
terminal cell (``data.grid``, the peer's cells, :func:`vitinspect.data.layout.cell_boxes`): for each
cell and channel, the mean distance of the composite from mid-grey, ``mean |c - 128|`` (the gain times the
mean |z|, clipped where the composite clips). A good part keeps every cell near its usual level; a defect
lights up its own cell, a foreign or blank frame every cell. 3 x rows x cols numbers (36 at the defaults).

Measured at the defaults (42 good training parts, lot of 1,800 good and 200 defective parts): these
features with a Ledoit-Wolf covariance separate the lot completely (ROC AUC 1.000, 9 of 1,800 good parts
rejected at a threshold for 1 %, 0 of 200 escapes); the mean z per cell instead lets 20 tilt_y parts
through (a tilt's sign is random: the mean cancels, the magnitude does not); the ViT's pooled feature (64
numbers, PaDiM-style) reaches AUC 0.963 only (14 % of good parts rejected); a per-feature model (diagonal
covariance) 0.989: the cells are correlated (lighting moves them together), so the full covariance is
needed, and with 42 parts for 36 features it must be shrunk: Ledoit-Wolf picks the shrinkage towards a
scaled identity from the data, with no parameter to tune.

MT's distance: MD = D^2 / k, D^2 the squared Mahalanobis distance to the good parts' mean, k the number of
features, so a good part scores about 1. The threshold comes from good parts only: the leave-one-out
distances of the good training parts (each scored by a unit space fitted without it) and the distances of
the good val parts (never fitted on), and is the larger of two estimates of their (1 - a) quantile, a =
``gate.false_reject_rate``: the log-normal one and the empirical one (the OOD guard's rule,
:func:`vitinspect.deploy.ood_guard.calibrate`). No defective part is read to set it.

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
FEATURES = "mean |composite - 128| per terminal cell (data.grid) and channel"
# Measured at the defaults (36 features, subsets of the 42 good training parts, lot escapes of 200 at a 1 %
# target): 8 parts 4 escapes, 12 parts 1, 18 or more 0. So at least one good training part per three features.
PARTS_PER_FEATURE = 1 / 3


def n_features(rows: int, cols: int) -> int:
    return 3 * rows * cols


def min_good_parts(rows: int, cols: int) -> int:
    """Good training parts the gate needs for a ``rows`` x ``cols`` grid's features (at least 3: leave-one-out)."""
    return max(3, math.ceil(n_features(rows, cols) * PARTS_PER_FEATURE))


def too_few(n: int, rows: int, cols: int) -> str | None:
    """The one line that says the gate has too few good training parts, or None."""
    need = min_good_parts(rows, cols)
    if n >= need:
        return None
    return (f"the gate's {n_features(rows, cols)} features (3 channels x {rows} x {cols} cells of data.grid) need at least "
            f"{need} good training parts, there are {n}; raise data.passed_ratio or data.n_images (or bring more good "
            "parts), or a coarser data.grid")


def cell_features(images, rows: int, cols: int) -> np.ndarray:
    """(N, S, S, 3) uint8 NSOARTC composites (an array or a memory-mapped column) -> (N, 3 * rows * cols)
    float64: per cell (row-major) its three channels' mean |c - 128|."""
    n, size = len(images), images.shape[1]
    boxes = cell_boxes(size, rows, cols)
    out = np.empty((n, len(boxes), 3))
    for i in range(0, n, CHUNK):
        a = np.abs(np.asarray(images[i:i + CHUNK], dtype=np.float64) - MID)
        for t, (x0, y0, x1, y1) in enumerate(boxes):
            out[i:i + CHUNK, t] = a[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return out.reshape(n, -1)


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
    they are taken on, and the MD threshold (a part passes when MD <= threshold)."""

    location: np.ndarray
    precision: np.ndarray
    threshold: float
    rows: int
    cols: int
    false_reject_rate: float
    shrinkage: float
    n_fit: int
    held_out: dict  # the good parts the threshold was set on: k above it of n (rate, Wilson interval)

    def score(self, images) -> np.ndarray:
        """(N, S, S, 3) uint8 composites -> (N,) MD = D^2 / k (a good part scores about 1)."""
        if not len(images):
            return np.zeros(0)
        return mahalanobis(cell_features(images, self.rows, self.cols), self.location, self.precision) / len(self.location)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def info(self) -> dict:
        """What the reports and the bundle's manifest say of it (JSON)."""
        return {"features": FEATURES, "n_features": len(self.location), "grid": [self.rows, self.cols],
                "covariance": "Ledoit-Wolf", "shrinkage": round(self.shrinkage, 6), "n_fit": self.n_fit,
                "false_reject_rate": self.false_reject_rate, "threshold": self.threshold, "held_out": self.held_out,
                "rule": "pass when MD = D^2 / k <= threshold, k features; threshold from good parts only"}

    def arrays(self) -> dict:
        """The arrays :func:`from_arrays` reads back (an .npz: float64, so every score comes back bit for bit)."""
        return {"location": self.location, "precision": self.precision,
                "settings": np.array([self.threshold, self.rows, self.cols, self.false_reject_rate, self.shrinkage,
                                      self.n_fit, self.held_out["k"], self.held_out["n"]], dtype=np.float64)}


def from_arrays(a, where) -> Gate:
    """The Gate of :meth:`Gate.arrays` (a mapping of arrays, e.g. an open .npz); a one-line VitinspectError
    naming ``where`` when they are not one (shapes, non-finite values, a threshold <= 0)."""
    try:
        loc, prec = np.asarray(a["location"], dtype=np.float64), np.asarray(a["precision"], dtype=np.float64)
        s = np.asarray(a["settings"], dtype=np.float64)
        t, rows, cols, frr, shrink, n_fit, k, n = (float(x) for x in s)
        ok = (s.shape == (8,) and np.all(np.isfinite(s)) and loc.shape == (n_features(int(rows), int(cols)),)
              and prec.shape == (len(loc), len(loc)) and np.all(np.isfinite(loc)) and np.all(np.isfinite(prec)) and t > 0
              and rows >= 1 and cols >= 1 and 0 <= k <= n)
    except (KeyError, ValueError, TypeError) as exc:
        raise VitinspectError(f"{where}: not a gate ({type(exc).__name__}); rebuild it (dvc repro)") from None
    if not ok:
        raise VitinspectError(f"{where}: not a gate (the location, precision and settings must be finite, of the grid's "
                              "feature count, with a positive threshold); rebuild it (dvc repro)")
    return Gate(loc, prec, t, int(rows), int(cols), frr, shrink, int(n_fit), rate(int(k), int(n)))


def fit_gate(train_good: np.ndarray, val_good: np.ndarray, rows: int, cols: int, false_reject_rate: float, where) -> Gate:
    """The gate of the good training parts' cell features ``train_good`` (N, D), its threshold from their
    leave-one-out distances and the good val parts' ``val_good`` (M, D). Only good parts come in: no defective
    part can move the threshold. One line naming ``where`` when there are too few good training parts."""
    train_good = np.asarray(train_good, dtype=np.float64)
    problem = too_few(len(train_good), rows, cols)
    if problem:
        raise VitinspectError(f"{where}: {problem}")
    k = train_good.shape[1]
    loo = np.array([mahalanobis(train_good[i:i + 1], (lw := _shrunk(np.delete(train_good, i, axis=0))).location_,
                                lw.precision_)[0] for i in range(len(train_good))]) / k
    lw = _shrunk(train_good)
    held = mahalanobis(val_good, lw.location_, lw.precision_) / k if len(val_good) else np.zeros(0)
    distances = np.concatenate([loo, held])
    t = threshold_from_good(distances, false_reject_rate)
    return Gate(lw.location_.astype(np.float64), lw.precision_.astype(np.float64), t, rows, cols, false_reject_rate,
                float(lw.shrinkage_), len(train_good), rate(int((distances > t).sum()), len(distances)))


def gate_of(splits: dict, good: int, rows: int, cols: int, false_reject_rate: float, where) -> Gate:
    """The gate of a data set's splits ({"train"|"val": {"label": (N,), "nsoartc": (N, S, S, 3) uint8}}): fitted on
    the train split's good parts (label ``good``), thresholded with the val split's good parts. Defective parts are
    never read."""
    feats = {}
    for s in ("train", "val"):
        keep = np.flatnonzero(np.asarray(splits[s]["label"]) == good)
        feats[s] = cell_features(splits[s]["nsoartc"][keep], rows, cols) if len(keep) else np.zeros((0, n_features(rows, cols)))
    return fit_gate(feats["train"], feats["val"], rows, cols, false_reject_rate, where)


def gate_and_scores(data_dir, lot_composites, good: int, grid, false_reject_rate: float) -> tuple[Gate, dict]:
    """The evaluate stage's gate: fitted on the good training parts of the nsoartc stage's data set ``data_dir``,
    thresholded with its good val parts (:func:`gate_of`), and its MD on every part of val, test and the lot
    (``lot_composites``: (N, S, S, 3) uint8). ``grid``: params' data.grid (rows, cols)."""
    from vitinspect.core.storage import load_dataset_dir
    from vitinspect.data.arrow import MappedImages, columns

    ds = load_dataset_dir(data_dir)
    splits = {s: {**columns(ds[s], ["label"]), "nsoartc": MappedImages(ds[s], "nsoartc")} for s in ("train", "val", "test")}
    gate = gate_of(splits, good, grid.rows, grid.cols, false_reject_rate, data_dir)
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
