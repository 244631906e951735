"""Classification figures shared by training (per epoch) and evaluation (on the test split)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def _r(x: float) -> float:
    """Rounded so metrics files are stable and diffs readable."""
    return round(float(x), 6)


def epoch_metrics(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 (all classes and defect classes only) and per-class recall.

    labels, preds: (N,) class indices. Keys are flat: ``accuracy``, ``macro_f1``,
    ``macro_f1_defects``, ``recall_<class>``.
    """
    k = list(range(len(classes)))
    _, recall, f1, _ = precision_recall_fscore_support(labels, preds, labels=k, zero_division=0)
    defects = [i for i, c in enumerate(classes) if c != "passed"]
    out = {
        "accuracy": _r(accuracy_score(labels, preds)),
        "macro_f1": _r(f1.mean()),
        "macro_f1_defects": _r(f1[defects].mean()),
    }
    out.update({f"recall_{c}": _r(recall[i]) for i, c in enumerate(classes)})
    return out


def inspection_metrics(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> dict:
    """The full evaluation: overall and per-class figures plus the inspection rates.

    escape_rate: share of defective parts predicted ``passed``;
    false_reject_rate: share of passed parts predicted defective;
    xy_confusion: tilt_x predicted tilt_y and the reverse (shares of the true class).
    """
    k = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=k, zero_division=0)
    out = {
        "n": int(len(labels)),
        "accuracy": _r(accuracy_score(labels, preds)),
        "balanced_accuracy": _r(balanced_accuracy_score(labels, preds)),
        "macro_f1": _r(f1_score(labels, preds, labels=k, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": _r(precision[i]), "recall": _r(recall[i]), "f1": _r(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
    }
    if "passed" in classes:
        p = classes.index("passed")
        defective = labels != p
        out["escape_rate"] = _r((preds[defective] == p).mean()) if defective.any() else None
        good = labels == p
        out["false_reject_rate"] = _r((preds[good] != p).mean()) if good.any() else None
    if "tilt_x" in classes and "tilt_y" in classes:
        x, y = classes.index("tilt_x"), classes.index("tilt_y")
        out["xy_confusion"] = {
            "tilt_x_as_tilt_y": _r((preds[labels == x] == y).mean()) if (labels == x).any() else None,
            "tilt_y_as_tilt_x": _r((preds[labels == y] == x).mean()) if (labels == y).any() else None,
        }
    return out


def confusion(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> dict:
    """Counts (rows: actual, columns: predicted) and the row-normalised matrix."""
    m = confusion_matrix(labels, preds, labels=list(range(len(classes))))
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros(m.shape, dtype=float), where=rows > 0)
    return {"labels": list(classes), "counts": m.tolist(), "normalized": [[_r(v) for v in row] for row in norm]}
