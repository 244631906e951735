"""The classical peer: QEU's machine of Double-Eye RT features per terminal cell, fed to an SVM.

Where NSOARTC slides a small RT window over every pixel, the machine the source grew from
uses one RT window per terminal: the centre view's pixels in a terminal's cell are the
standard m, a side view's pixels in the same cell are x, and the cell gives one sensitivity
beta and one noise Y2 per side view. Opposite side views are combined as in NSOARTC
(d1 = beta_a - beta_b, d2 = Y2_a - Y2_b, d3 = Y2_a + Y2_b), and a unit space of passed
training parts z-scores every (cell, channel), so a part becomes one vector of
3 x rows x cols numbers. An RBF SVM (and, plainer still, a logistic regression) classifies it.

The features and the fitting are pure (arrays in, arrays out). The two functions at the end
save and load a fitted peer: joblib (pickle) plus a SHA-256 the caller keeps elsewhere, so a
file the stage did not write is refused before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.composite.nsoartc import VIEW_PAIRS
from vitinspect.data.geometry import Geometry
from vitinspect.core.storage import hash_file

CHANNELS = ("d1", "d2", "d3")


# --------------------------------------------------------------------------- features


def cell_boxes(image_size: int, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 4) integer boxes (x0, y0, x1, y1), end-exclusive, one per terminal, row-major.

    A terminal's cell is the pitch x pitch square centred on its base point (render.Geometry),
    rounded to whole pixels and clipped to the image: neighbouring cells tile the terminal grid.
    """
    geom = Geometry(image_size, rows, cols)
    half = geom.pitch / 2
    b = geom.bases()
    boxes = np.stack([b[:, 0] - half, b[:, 1] - half, b[:, 0] + half, b[:, 1] + half], axis=1)
    return np.clip(np.round(boxes), 0, image_size).astype(np.int64)


def rt_window(x: np.ndarray, m: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """RT sensitivity and noise of ``x`` against the standard ``m`` over one window per sample.

    x, m: (N, ...) float arrays of the same shape; every value after the first axis is one of the
    window's k values. r = sum(m^2) + eps, L = sum(m*x), beta = L / r,
    Y2 = sqrt(max(sum(x^2) - L^2 / r, 0) / (k - 1)), as in nsoartc.rt_maps. Returns (beta, y2), (N,) each.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    m = np.asarray(m, dtype=np.float64).reshape(len(m), -1)
    if x.shape != m.shape or x.shape[1] < 2:
        raise ValueError(f"x and m must share a shape with >= 2 values per window, got {x.shape} and {m.shape}")
    r = (m * m).sum(axis=1) + eps
    L = (m * x).sum(axis=1)
    beta = L / r
    se = np.maximum((x * x).sum(axis=1) - L * L / r, 0.0)
    return beta, np.sqrt(se / (x.shape[1] - 1))


def cell_features(views: dict[str, np.ndarray], boxes: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Raw Double-Eye RT features of every terminal cell.

    views: name -> (N, H, W) float images; must hold ``center`` and an opposite pair.
    boxes: (T, 4) from :func:`cell_boxes`. With two pairs, their mean (as nsoartc.double_eye).
    Returns (N, T, 3) float64: d1, d2, d3 per cell.
    """
    centre = np.asarray(views["center"])
    pairs = [(a, b) for a, b in VIEW_PAIRS if a in views and b in views]
    if not pairs:
        raise ValueError("need an opposite pair of side views (left+right or top+bottom)")
    out = np.zeros((len(centre), len(boxes), 3))
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        m = centre[:, y0:y1, x0:x1]
        for a, b in pairs:
            beta_a, y2_a = rt_window(views[a][:, y0:y1, x0:x1], m, eps)
            beta_b, y2_b = rt_window(views[b][:, y0:y1, x0:x1], m, eps)
            out[:, t, 0] += beta_a - beta_b
            out[:, t, 1] += y2_a - y2_b
            out[:, t, 2] += y2_a + y2_b
    return out / len(pairs)


@dataclass(frozen=True)
class CellUnitSpace:
    """Mean and standard deviation of every (cell, channel) over passed parts: (T, 3) each."""

    mean: np.ndarray
    std: np.ndarray
    n: int

    @classmethod
    def fit(cls, features: np.ndarray) -> "CellUnitSpace":
        """features: (N, T, 3) raw cell features of normal parts."""
        f = np.asarray(features, dtype=np.float64)
        return cls(f.mean(axis=0), f.std(axis=0), len(f))

    def zscore(self, features: np.ndarray, eps: float) -> np.ndarray:
        """(N, T, 3) -> (N, 3T) z = (f - mean) / (std + eps), flattened cell-major (cell 0's d1, d2, d3, ...)."""
        z = (np.asarray(features) - self.mean) / (self.std + eps)
        return z.reshape(len(z), -1)


def feature_names(n_cells: int) -> list[str]:
    return [f"cell{t:02d}_{c}" for t in range(n_cells) for c in CHANNELS]


# --------------------------------------------------------------------------- the classifiers


def make_svm(C: float, gamma: float, class_weight: str, seed: int, folds: int = 5):
    """StandardScaler -> RBF SVC whose decision function is calibrated into probabilities.

    Platt scaling (sigmoid) fitted on out-of-fold decision values, then one SVC refitted on all of
    train (``ensemble=False``): what ``SVC(probability=True)`` did before scikit-learn 1.9 deprecated it.
    Probabilities let the SVM take the same operating point as the ViT.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    cw = None if class_weight == "none" else class_weight
    svc = SVC(kernel="rbf", C=C, gamma=gamma, class_weight=cw)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(svc, method="sigmoid", cv=cv, ensemble=False))


def make_logistic(C: float, class_weight: str, seed: int):
    """StandardScaler -> multinomial logistic regression: the plainest peer on the same features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cw = None if class_weight == "none" else class_weight
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight=cw, max_iter=5000, random_state=seed))


@dataclass
class Fitted:
    """A peer chosen on val: the model, its settings, val macro-F1 of every grid point, fit seconds."""

    model: object
    settings: dict
    val_macro_f1: float
    grid: list[dict]
    fit_seconds: float


def _macro_f1(y, pred, n_classes) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def choose(make, grid: list[dict], x_train, y_train, x_val, y_val, n_classes: int) -> Fitted:
    """Fit ``make(**g)`` on train for every g in ``grid``; keep the best val macro-F1 (first on ties).

    Predictions are the argmax of predict_proba, the rule the ViT's evaluation uses.
    """
    best, table, total = None, [], 0.0
    for g in grid:
        start = time.perf_counter()
        model = make(**g).fit(x_train, y_train)
        total += time.perf_counter() - start
        score = _macro_f1(y_val, predict_proba(model, x_val).argmax(axis=1), n_classes)
        table.append({**g, "val_macro_f1": round(score, 6)})
        if best is None or score > best[2]:
            best = (model, g, score, time.perf_counter() - start)
    model, g, score, _ = best
    return Fitted(model, dict(g), round(score, 6), table, total)


def predict_proba(model, x: np.ndarray) -> np.ndarray:
    """(N, K) class probabilities over all K classes, whichever classes the training split held."""
    return np.asarray(model.predict_proba(x))


# --------------------------------------------------------------------------- saving and loading


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    hash_file(h, path)
    return h.hexdigest()


def save_peer(model, path: str | Path) -> str:
    """joblib-dump ``model`` to ``path`` (the caller makes it atomic); return the file's SHA-256."""
    import joblib

    joblib.dump(model, path)
    return sha256_of(path)


def load_peer(path: str | Path, expected_sha256: str):
    """Load a peer saved by :func:`save_peer`, only if its bytes hash to ``expected_sha256``.

    joblib files are pickles, and unpickling runs code: the hash, kept by the caller in a file the
    stage wrote (reports/baseline.json, tracked in git), is checked before joblib sees a byte.
    """
    path = Path(path)
    if not path.is_file():
        raise VitinspectError(f"{path}: no such model file; run the baseline stage (dvc repro baseline)")
    # Read the bytes once and unpickle those very bytes: hashing the file by name and opening it again
    # by name leaves a window in which another file could be put in its place.
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise VitinspectError(f"{path}: SHA-256 {actual[:12]}... is not the {str(expected_sha256)[:12]}... the baseline stage "
                              "recorded; refusing to unpickle a file it did not write (rerun dvc repro baseline)")
    import io

    import joblib

    return joblib.load(io.BytesIO(data))
