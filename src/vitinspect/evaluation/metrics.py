"""Classification figures shared by training (per epoch), evaluation and the decision reports.

scikit-learn's definitions (``zero_division=0``), computed from one confusion matrix with numpy: the same
floats (a test holds them to ``sklearn.metrics`` bit for bit) without importing scikit-learn and scipy into
every stage that trains, a second of each start.
"""

from __future__ import annotations

import numpy as np


def _r(x: float) -> float:
    """Rounded so metrics files are stable and diffs readable."""
    return round(float(x), 6)


def confusion_counts(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts m[actual, predicted] of class indices 0..k-1."""
    labels, preds = np.asarray(labels, dtype=np.int64).ravel(), np.asarray(preds, dtype=np.int64).ravel()
    for name, a in (("labels", labels), ("predictions", preds)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} hold class index {int(a.min() if a.min() < 0 else a.max())}, outside 0..{k - 1}")
    if labels.shape != preds.shape:
        raise ValueError(f"{labels.size} labels but {preds.size} predictions")
    return np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)


def class_scores(m: np.ndarray):
    """Per class of a confusion matrix: precision, recall, F1 (float64, 0 where undefined) and support."""
    tp = np.diag(m).astype(float)
    support, predicted = m.sum(axis=1), m.sum(axis=0)

    def div(a, b):
        return np.divide(a, b, out=np.zeros(len(a), dtype=float), where=b > 0)

    return div(tp, predicted), div(tp, support), div(2 * tp, support + predicted), support


def epoch_metrics(labels: np.ndarray, preds: np.ndarray, classes: list[str], good: str = "passed") -> dict[str, float]:
    """Accuracy, macro-F1 (all classes and defect classes only) and per-class recall.

    labels, preds: (N,) class indices. Keys are flat: ``accuracy``, ``macro_f1``,
    ``macro_f1_defects``, ``recall_<class>``.
    """
    m = confusion_counts(labels, preds, len(classes))
    _, recall, f1, _ = class_scores(m)
    defects = [i for i, c in enumerate(classes) if c != good]
    out = {
        "accuracy": _r(np.mean(np.asarray(labels) == np.asarray(preds))),
        "macro_f1": _r(f1.mean()),
        "macro_f1_defects": _r(f1[defects].mean()),
    }
    out.update({f"recall_{c}": _r(recall[i]) for i, c in enumerate(classes)})
    return out


def confusion(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> dict:
    """Counts (rows: actual, columns: predicted) and the row-normalised matrix."""
    m = confusion_counts(labels, preds, len(classes))
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros(m.shape, dtype=float), where=rows > 0)
    return {"labels": list(classes), "counts": m.tolist(), "normalized": [[_r(v) for v in row] for row in norm]}


def one_class_macro_f1(labels: np.ndarray, k: int) -> float:
    """The macro-F1 (over all k classes) of predicting one class for every part, the best such class chosen.

    Predicting class j everywhere: its precision is its share p_j = n_j / N, its recall 1, its F1
    2 p_j / (1 + p_j) = 2 n_j / (N + n_j); every other class has F1 0. So the level is
    max_j 2 n_j / (N + n_j) / k, reached by the majority class (0 for an empty split)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=k).astype(float)
    n = counts.sum()
    return _r(float((2 * counts / (n + counts)).max()) / k) if n else 0.0


def collapsed(macro_f1: float, labels: np.ndarray, k: int) -> bool:
    """Whether a model's macro-F1 on ``labels`` is at or below :func:`one_class_macro_f1` (rounded as metrics are)."""
    return bool(_r(macro_f1) <= one_class_macro_f1(labels, k))
