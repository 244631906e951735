"""One verdict from the gate and the classifier, and the headline figures of each.

A part **passes** when the unit-space gate accepts it (MD <= the gate's threshold); a rejected part carries
the classifier's most probable defect class, for the rework station. The classifier does not veto: at the
defaults (42 good training parts) its operating point rejects 228 of the lot's 1,800 good parts where the
gate rejects none, and the gate alone lets none of the 200 defective parts through, so requiring both would
reject at least 228 good parts for no escape fewer. On Blender parts (seed 0 of the default recipe) a veto
chosen on val does not help either: the gate lets 26 of the lot's 200 defective parts through, and a veto
strict enough to bring that to 1 rejects 526 good parts, near the classifier's own 861. Its figures stay
beside the combined ones, under ``classifier_`` keys.

Pure: arrays in, dicts out.
"""

from __future__ import annotations

import math

import numpy as np

from vitinspect.evaluation.decision import _r, decide, inspection_block, rate

RULE = "pass when the unit-space gate accepts (MD <= gate threshold); a rejected part carries the classifier's most probable defect"


def combined(proba: np.ndarray, accept: np.ndarray, classes: list[str], good: str) -> np.ndarray:
    """(N, K) probabilities and (N,) gate acceptances -> (N,) class indices: ``good`` where the gate accepts,
    else the most probable defect."""
    proba = np.asarray(proba).reshape(-1, len(classes))
    if not len(proba):
        return np.zeros(0, dtype=np.int64)
    return np.where(np.asarray(accept, dtype=bool), classes.index(good), decide(proba, classes, math.inf, good))


def gate_block(labels: np.ndarray | None, accept: np.ndarray, threshold: float, good_index: int) -> dict:
    """The gate alone on a set of parts: escapes, false rejects and rejected parts, k of n with Wilson
    intervals (``labels`` None: rejected parts only)."""
    accept = np.asarray(accept, dtype=bool)
    out = {"threshold": _r(threshold), "rejected": rate(int((~accept).sum()), len(accept))}
    if labels is not None:
        is_good = np.asarray(labels) == good_index
        out["escape"] = rate(int((accept & ~is_good).sum()), int((~is_good).sum()))
        out["false_reject"] = rate(int((~accept & is_good).sum()), int(is_good.sum()))
    return out


def blocks(labels: np.ndarray | None, proba: np.ndarray, scores: np.ndarray, gate, classes: list[str], good: str) -> dict:
    """{"gate": gate_block, "combined": inspection_block of the combined verdict (or, without labels, its
    rejected parts and predicted counts)} of one set of parts."""
    accept = gate.accepts(scores)
    preds = combined(proba, accept, classes, good)
    p = classes.index(good)
    if labels is None:
        comb = {"rejected": rate(int((preds != p).sum()), len(preds)),
                "predicted_counts": {c: int((preds == i).sum()) for i, c in enumerate(classes)}}
    else:
        comb = inspection_block(labels, preds, classes, good)
    return {"gate": gate_block(labels, accept, gate.threshold, p), "combined": {"rule": RULE, **comb}}


def _scaled(r: dict, s: float):
    return None if r.get("rate") is None else _r(s * r["k"] / r["n"])


def headline(detail: dict, bounds: bool = False) -> dict:
    """metrics/eval.json (test) and, with ``bounds``, metrics/lot.json: the combined verdict's escapes per million
    defective parts, false-reject rate and parts rejected per 1,000; the gate's threshold; the classifier's
    threshold, escapes and false-reject rate at its operating point. The test split adds the classifier's
    accuracy and defect macro-F1; the lot instead the 95 % Wilson upper bounds of the combined escape and
    false-reject rates (the promise a line can be given). Nine numbers each (the surface stays small: argmax,
    the gate alone and every count are in reports/evaluation.json)."""
    c, g, op = detail["combined"], detail["gate"], detail["operating_point"]
    out = {
        "escapes_per_million": _scaled(c["escape"], 1e6),
        "false_reject_rate": c["false_reject"]["rate"],
        "rejected_per_1000": _scaled(c["rejected"], 1e3),
        "gate_threshold": g["threshold"],
        "classifier_threshold": op["threshold"],
        "classifier_escapes_per_million": _scaled(op["escape"], 1e6),
        "classifier_false_reject_rate": op["false_reject"]["rate"],
    }
    if bounds:
        high = c["escape"]["high"]
        out.update({"escapes_per_million_high": None if high is None else _r(1e6 * high),
                    "false_reject_rate_high": c["false_reject"]["high"]})
    else:
        out.update({"classifier_accuracy": op["accuracy"], "classifier_macro_f1_defects": op["macro_f1_defects"]["value"]})
    return out


def unscored_headline(detail: dict) -> dict:
    """metrics/lot.json for a lot that could not be scored: the same keys, None where there is no label."""
    out = dict.fromkeys(LOT_KEYS)
    out.update({"rejected_per_1000": _scaled(detail["combined"]["rejected"], 1e3), "gate_threshold": detail["gate"]["threshold"],
                "classifier_threshold": detail["operating_point"]["threshold"], "n_parts": detail["operating_point"]["n"],
                "scored": False})
    return out


LOT_KEYS = ("escapes_per_million", "false_reject_rate", "rejected_per_1000", "gate_threshold", "classifier_threshold",
            "classifier_escapes_per_million", "classifier_false_reject_rate", "escapes_per_million_high", "false_reject_rate_high")
