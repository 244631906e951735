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
from itertools import product
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.composite.nsoartc import VIEW_PAIRS, moments, zscore
from vitinspect.data.arrow import SPLITS, good_index
from vitinspect.data.layout import cell_boxes
from vitinspect.core.storage import hash_file
from vitinspect.evaluation.decision import decide, evaluation_summary
from vitinspect.evaluation.evaluate import val_operating_point
from vitinspect.evaluation.metrics import confusion

CHANNELS = ("d1", "d2", "d3")


# --------------------------------------------------------------------------- features


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
        return cls(*moments(features))

    def zscore(self, features: np.ndarray, eps: float) -> np.ndarray:
        """(N, T, 3) -> (N, 3T): the unit space's z-scores (``composite.nsoartc.zscore``, float64), flattened
        cell-major (cell 0's d1, d2, d3, ...): one vector per part, as the classifiers take it."""
        z = zscore(np.asarray(features), self.mean, self.std, eps)
        return z.reshape(len(z), -1)


def feature_names(n_cells: int) -> list[str]:
    return [f"cell{t:02d}_{c}" for t in range(n_cells) for c in CHANNELS]


def part_features(views: np.ndarray, view_names: list[str], boxes: np.ndarray, eps: float) -> np.ndarray:
    """uint8 views (N, V, H, W), ``view_names`` naming axis 1 -> raw cell features (N, T, 3) float64:
    :func:`cell_features` of the views scaled to [0, 1] in float64."""
    v = views.astype(np.float64) / 255.0
    return cell_features({name: v[:, j] for j, name in enumerate(view_names)}, boxes, eps)


@dataclass
class PeerInputs:
    """What the peer learns from and is judged on, per split: z-scored cell features ``x`` (N, 3T) float64
    and labels ``y`` (N,) int; the unit space they are scored against, the cells (T, 4), and the seconds
    feature extraction took over every split."""

    x: dict
    y: dict
    space: CellUnitSpace
    boxes: np.ndarray
    feature_seconds: float


def peer_inputs(cols: dict, view_names: list[str], grid, eps: float, classes: list[str], good: str, min_unit_space: int,
                where: str) -> PeerInputs:
    """The peer's features of every split (``cols``: split -> {"views": (N, V, S, S) uint8, "label": (N,)}),
    cells placed by ``data.grid`` (rows x cols terminals), z-scored by the unit space of the good (``good``)
    training parts. Raises a one-line VitinspectError naming ``where`` when the classes lack ``good``, and one
    when the unit space has fewer than ``min_unit_space`` parts or the train split lacks a class."""
    boxes = cell_boxes(cols["train"]["views"].shape[-1], grid.rows, grid.cols)
    start = time.perf_counter()
    raw = {s: part_features(cols[s]["views"], view_names, boxes, eps) for s in SPLITS}
    feature_seconds = time.perf_counter() - start
    y = {s: cols[s]["label"].astype(int) for s in SPLITS}
    unit = raw["train"][y["train"] == good_index(where, classes, good)]
    if len(unit) < min_unit_space:
        raise VitinspectError(f"params.yaml: the unit space has {len(unit)} good ({good!r}) training parts, fewer than "
                              f"nsoartc.min_unit_space={min_unit_space}; raise data.passed_ratio or data.n_images")
    if len(np.unique(y["train"])) < len(classes):
        raise VitinspectError(f"{where}: the train split lacks a class; the peer needs every class to fit")
    per_class = np.bincount(y["train"], minlength=len(classes))
    if per_class.min() < MIN_TRAIN_PER_CLASS:  # validate refuses this for folders (vitinspect.data.folder_checks)
        few = int(per_class.argmin())
        raise VitinspectError(f"{where}: class {classes[few]!r} has {per_class[few]} training part; the peer's cross-validated "
                              f"calibration needs at least {MIN_TRAIN_PER_CLASS} per class")
    space = CellUnitSpace.fit(unit)
    return PeerInputs({s: space.zscore(raw[s], eps) for s in SPLITS}, y, space, boxes, feature_seconds)


# --------------------------------------------------------------------------- the classifiers


# make_svm calibrates on SVM_FOLDS stratified folds; scikit-learn refuses a class with fewer training parts than
# folds, so fit_peers lowers the folds to the smallest class (and the report says so), down to 2: a class of one
# part cannot be calibrated. The same 2 is vitinspect.data.folder_checks.MIN_TRAIN_PER_CLASS, which validate
# checks (a unit test keeps them equal).
SVM_FOLDS = 5
MIN_TRAIN_PER_CLASS = 2


def make_svm(C: float, gamma: float, class_weight: str, seed: int, folds: int = SVM_FOLDS):
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
    folds: int | None = None  # the SVM's calibration folds where fewer than SVM_FOLDS (a class with fewer parts)


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


def fit_peers(inputs: PeerInputs, baseline_params, n_classes: int) -> dict[str, Fitted]:
    """{"svm": the RBF SVM, "logistic": the logistic regression}, each chosen on val (:func:`choose`) over
    ``baseline.grid`` (C x gamma for the SVM, C for the logistic regression)."""
    p, x, y = baseline_params, inputs.x, inputs.y
    svm_grid = [{"C": c, "gamma": g} for c, g in product(p.grid.C, p.grid.gamma)]
    folds = int(min(SVM_FOLDS, np.bincount(y["train"]).min()))
    svm = choose(lambda C, gamma: make_svm(C, gamma, p.class_weight, p.seed, folds), svm_grid, x["train"], y["train"], x["val"], y["val"],
                 n_classes)
    if folds < SVM_FOLDS:
        svm.folds = folds
    logistic = choose(lambda C: make_logistic(C, p.class_weight, p.seed), [{"C": c} for c in p.grid.C],
                      x["train"], y["train"], x["val"], y["val"], n_classes)
    return {"svm": svm, "logistic": logistic}


def predict_timed(model, x: np.ndarray) -> tuple[np.ndarray, float]:
    """(:func:`predict_proba`, the seconds it took)."""
    start = time.perf_counter()
    proba = predict_proba(model, x)
    return proba, time.perf_counter() - start


# --------------------------------------------------------------------------- what the baseline stage writes


INPUT = "rt_cells"  # what the peer sees, in the place of eval.json's "input"
FOREIGN_CELLS = ("data.grid rows x cols cells over the whole frame: these parts are not our renderer's, so the cells "
                 "are not placed on terminals; set data.grid to your part's layout")


@dataclass
class PeerReport:
    """What the baseline stage writes from the fitted peers: the SVM's test figures (eval.json's keys), one
    {actual, predicted} record per test part and the confusion matrix (the SVM at its operating point),
    reports/baseline.json, the timings (a log: they vary run to run), and the line it prints."""

    metrics: dict
    confusion_records: list[dict]
    confusion_matrix: dict
    report: dict
    run_info: dict
    line: str


def peer_report(fitted: dict[str, Fitted], tested: dict[str, tuple[np.ndarray, float]], inputs: PeerInputs, classes: list[str],
                good: str, evaluate_params, class_weight: str, hashes: dict, foreign_cells: bool, where: str) -> PeerReport:
    """The SVM's own operating point, chosen on val by the ViT's rule and settings (``evaluate.*``,
    :func:`vitinspect.evaluation.evaluate.val_operating_point`): the same decision, so its figures sit beside
    eval.json's key for key. ``tested``: name -> (test probabilities (N, K), predict seconds); ``hashes``: name ->
    the saved model file and its SHA-256; ``foreign_cells``: the parts are the user's folders (cells not on terminals)."""
    svm, x, y = fitted["svm"], inputs.x, inputs.y
    labels = y["test"]
    scored = peer_scores(y["val"], predict_proba(svm.model, x["val"]), labels, tested["svm"][0], classes, good, evaluate_params, where)
    op, metrics, matrix = scored.operating_point, scored.metrics, scored.confusion_matrix
    report = {
        "features": {"cells": int(len(inputs.boxes)), "per_part": int(x["train"].shape[1]), "unit_space_size": inputs.space.n,
                     **({"cells_placed": FOREIGN_CELLS} if foreign_cells else {})},
        "input": INPUT,
        "operating_point": op,
        "confusion_matrix": matrix,
        "models": hashes,
    }
    for name, peer in fitted.items():
        report[name] = {
            "chosen": peer.settings, "class_weight": class_weight, "val_macro_f1": peer.val_macro_f1, "grid": peer.grid,
            "test": metrics if name == "svm" else evaluation_summary(labels, tested[name][0], classes, None, good),
        }
        if peer.folds is not None:  # said only where it differs from SVM_FOLDS (the reports of other runs keep their bytes)
            report[name]["calibration_folds"] = f"{peer.folds} (not {SVM_FOLDS}: a class has {peer.folds} training parts)"
    per_part_ms = 1000 * inputs.feature_seconds / sum(len(y[s]) for s in SPLITS)
    run_info = {"extract_ms_per_part": round(per_part_ms, 4), **{
        name: {"fit_seconds_all_grid": round(peer.fit_seconds, 3), "predict_ms_per_part": round(1000 * tested[name][1] / len(labels), 4)}
        for name, peer in fitted.items()}}
    lr = report["logistic"]["test"]
    line = (f"baseline: {len(inputs.boxes)} cells x 3 features; SVM {svm.settings} test accuracy {metrics['accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f}, escapes per million {metrics.get('escapes_per_million')}, false-reject rate "
            f"{metrics.get('false_reject_rate')} at t={op['threshold']}; logistic accuracy {lr['accuracy']:.3f}, macro-F1 {lr['macro_f1']:.3f}")
    return PeerReport(metrics, scored.records, matrix, report, run_info, line)


@dataclass
class PeerScores:
    """A peer judged as the ViT is: its operating point (chosen on val), its test figures (eval.json's keys), the
    test confusion matrix and one {actual, predicted} record per test part, at that operating point."""

    operating_point: dict
    metrics: dict
    confusion_matrix: dict
    records: list[dict]


def peer_scores(y_val: np.ndarray, proba_val: np.ndarray, y_test: np.ndarray, proba_test: np.ndarray, classes: list[str],
                good: str, evaluate_params, where: str) -> PeerScores:
    """Every peer's figures (the SVM's, the CNN's) by the ViT's rule and settings: labels (N,) int, probabilities
    (N, K) of val and test; the operating point by :func:`vitinspect.evaluation.evaluate.val_operating_point`, the
    test figures by :func:`vitinspect.evaluation.decision.evaluation_summary`, so they sit beside eval.json's."""
    op = val_operating_point(y_val, proba_val, classes, good, evaluate_params, where)
    preds = decide(proba_test, classes, op["threshold"], good)
    names = np.asarray(classes)
    records = [{"actual": a, "predicted": b} for a, b in zip(names[y_test], names[preds])]
    metrics = evaluation_summary(y_test, proba_test, classes, op["threshold"], good)
    return PeerScores(op, metrics, confusion(y_test, preds, classes), records)


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
