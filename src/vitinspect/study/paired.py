"""F6's arithmetic: the ViT against a peer (the RT+SVM machine, the CNN) on the same test parts of one experiment."""

from __future__ import annotations

import functools

import numpy as np

from vitinspect.core.runtime import run_command
from vitinspect.study.runs import json_at

PEER_METRICS, PEER_REPORT, VIT_PREDICTIONS, PEER_RECORDS = (
    "metrics/baseline.json", "reports/baseline.json", "plots/predictions.csv", "plots/baseline_confusion.json")
CNN_METRICS, CNN_RECORDS = "metrics/baseline_cnn.json", "plots/baseline_cnn_confusion.json"  # absent before the CNN peer


def paired_accuracy(vit_pred, vit_true, peer_pred, peer_true, resamples: int = 2000) -> dict | None:
    """The ViT minus the peer on the same test parts: accuracy and macro-F1, each with a 95 % interval.

    Accuracy: per part d = [ViT right] - [peer right]; mean +- 1.96 sd / sqrt(n) (paired, normal
    approximation), with the counts of parts only one of them gets right. Macro-F1: a paired bootstrap
    over the parts (``resamples`` draws, seed 0, percentile interval); it carries the rare passed class.
    None when the two lists are not the same parts.
    """
    vit_true, peer_true = np.asarray(vit_true), np.asarray(peer_true)
    vit_pred, peer_pred = np.asarray(vit_pred), np.asarray(peer_pred)
    if len(vit_true) < 2 or len(vit_true) != len(peer_true) or (vit_true != peer_true).any():
        return None
    a, b = (vit_pred == vit_true).astype(float), (peer_pred == peer_true).astype(float)
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    labels = sorted(set(vit_true) | set(vit_pred) | set(peer_pred))
    code = {c: i for i, c in enumerate(labels)}
    t, pv, pp = (np.array([code[x] for x in arr]) for arr in (vit_true, vit_pred, peer_pred))
    k = len(labels)

    def macro_f1(truth, pred):  # sklearn's macro-F1 (zero_division=0) over all labels, by counts
        tp = np.bincount(truth[truth == pred], minlength=k)
        denom = np.bincount(truth, minlength=k) + np.bincount(pred, minlength=k)
        return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))

    def f1_diff(idx):
        return macro_f1(t[idx], pv[idx]) - macro_f1(t[idx], pp[idx])

    rng = np.random.default_rng(0)
    boot = [f1_diff(rng.integers(0, len(d), len(d))) for _ in range(resamples)]
    return {"n": len(d), "diff": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half),
            "only_vit": int(((a == 1) & (b == 0)).sum()), "only_peer": int(((a == 0) & (b == 1)).sum()),
            "f1_diff": float(f1_diff(np.arange(len(d)))), "f1_low": float(np.percentile(boot, 2.5)),
            "f1_high": float(np.percentile(boot, 97.5))}


@functools.lru_cache(maxsize=None)
def peer_of(rev: str) -> dict:
    """The peers' figures and the paired comparisons of the ViT with each, in one experiment: {"svm", "report", "cnn"
    (None in a run before the CNN peer or with it off), "paired" (against the SVM), "paired_cnn"} (read once per
    commit: a commit's files never change, and F6 and the renderer sections both ask). Read it, never change it."""
    import io

    import pandas as pd

    out = {"svm": json_at(rev, PEER_METRICS), "report": json_at(rev, PEER_REPORT) or {}, "cnn": json_at(rev, CNN_METRICS) or None}
    proc = run_command(["git", "show", f"{rev}:{VIT_PREDICTIONS}"], check=False)
    table = pd.read_csv(io.StringIO(proc)) if proc else None
    for key, path in (("paired", PEER_RECORDS), ("paired_cnn", CNN_RECORDS)):  # "paired": the SVM's, as before the CNN
        records = json_at(rev, path)
        if records and table is not None:
            out[key] = paired_accuracy(table["predicted"], table["label"], [r["predicted"] for r in records],
                                       [r["actual"] for r in records])
    return out
