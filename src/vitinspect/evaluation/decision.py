"""Decisions a quality engineer acts on: the operating point, rates with k of n and a 95 % interval,
and whether a change between two runs is outside the noise.

The decision rule: a part is *passed* when p(passed) >= t, else it is rejected with its most
probable defect class. ``t = None`` means plain argmax over all classes.

Intervals are **Wilson score** intervals (95 %, z = 1.959964): unlike the textbook p ± z·SE they
stay inside [0, 1] and are not empty at k = 0 or k = n, which is where inspection rates live.
Two rates are compared with a **two-sided two-proportion z-test** (pooled, 5 % level).

All functions are pure: arrays in, numbers and dicts out.
"""

from __future__ import annotations

import math

import numpy as np

from vitinspect.evaluation.metrics import class_scores, confusion_counts

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
ALPHA = 0.05


def _r(x: float) -> float:
    return round(float(x), 6)


# --------------------------------------------------------------------------- intervals and tests


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials; (nan, nan) when n = 0.

    centre = (k + z²/2) / (n + z²), half = z·sqrt(k(n-k)/n + z²/4) / (n + z²).
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z * math.sqrt(k * (n - k) / n + z2 / 4) / (n + z2)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int, scale: float = 1.0) -> dict:
    """A rate with its count and 95 % Wilson interval: {k, n, rate, low, high} (rate/low/high times ``scale``).

    ``rate`` is None when n = 0 (nothing to count).
    """
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "low": None, "high": None}
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": _r(scale * k / n), "low": _r(scale * lo), "high": _r(scale * hi)}


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test that k1/n1 and k2/n2 share one rate.

    1.0 when both rates are 0 or both are 1 (no evidence of a difference); nan when n1 or n2 is 0.
    """
    if n1 <= 0 or n2 <= 0:
        return float("nan")
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k2 / n2 - k1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2))


def compare_rates(base: dict | None, new: dict | None, alpha: float = ALPHA) -> tuple[str, float]:
    """Verdict on a lower-is-better rate dict ({k, n, ...}) from base to new.

    Returns (word, p): 'better' / 'worse' when the two-proportion test rejects equal rates at
    ``alpha``, 'unchanged within noise' otherwise, 'not comparable' when a side is missing.
    """
    if not base or not new or not base.get("n") or not new.get("n"):
        return "not comparable", float("nan")
    p = two_proportion_p(base["k"], base["n"], new["k"], new["n"])
    if p >= alpha:
        return "unchanged within noise", p
    return ("better" if new["k"] / new["n"] < base["k"] / base["n"] else "worse"), p


def compare_intervals(base: dict | None, new: dict | None, higher_is_better: bool = True) -> str:
    """Verdict on a figure with a 95 % interval ({value, low, high}): changed only when the intervals do not overlap."""
    if not base or not new or base.get("value") is None or new.get("value") is None:
        return "not comparable"
    if new["low"] > base["high"]:
        return "better" if higher_is_better else "worse"
    if new["high"] < base["low"]:
        return "worse" if higher_is_better else "better"
    return "unchanged within noise"


# --------------------------------------------------------------------------- decisions


def decide(proba: np.ndarray, classes: list[str], threshold: float | None, good: str = "passed") -> np.ndarray:
    """(N, K) probabilities -> (N,) predicted class indices under the rule of this module (``good``: the
    good class, data.good_class)."""
    proba = np.asarray(proba)
    if threshold is None:
        return proba.argmax(axis=1)
    p = classes.index(good)
    defects = proba.copy()
    defects[:, p] = -np.inf
    return np.where(proba[:, p] >= threshold, p, defects.argmax(axis=1))


def _rates_at(scores: np.ndarray, is_passed: np.ndarray, t: float) -> tuple[int, int]:
    """(escapes, false rejects) when parts with score >= t pass."""
    accept = scores >= t
    return int((accept & ~is_passed).sum()), int((~accept & is_passed).sum())


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Every distinct decision a threshold in [0, 1] can make on these scores, one t each.

    0 (pass everything), the midpoints between consecutive distinct scores, and the midpoint
    between the highest score and 1 (pass nothing) when that score is below 1.
    """
    s = np.unique(np.asarray(scores, dtype=np.float64))
    mids = (s[:-1] + s[1:]) / 2 if len(s) > 1 else np.zeros(0)
    top = [(s[-1] + 1.0) / 2] if len(s) and s[-1] < 1.0 else []
    return np.concatenate([[0.0], mids, top])


def choose_threshold(p_passed: np.ndarray, is_passed: np.ndarray, target_escape_rate: float) -> dict:
    """The threshold with the lowest false-reject rate whose escape rate is <= the target.

    p_passed: (N,) p(passed) per part; is_passed: (N,) bool, the part is truly passed.
    When no threshold in [0, 1] meets the target (a defective part scored p = 1, say), the
    threshold with the lowest escape rate (then the lowest false-reject rate) is taken and
    ``met_target`` is False. Ties go to the lowest t.

    Returns {threshold, met_target, escape: rate, false_reject: rate} on these parts.
    """
    scores = np.asarray(p_passed, dtype=np.float64)
    is_passed = np.asarray(is_passed, dtype=bool)
    n_def, n_good = int((~is_passed).sum()), int(is_passed.sum())
    if n_def == 0:
        raise ValueError("no defective part to measure an escape rate on")
    best, fallback = None, None
    for t in candidate_thresholds(scores):
        esc, fr = _rates_at(scores, is_passed, t)
        key = (fr, t)
        if esc / n_def <= target_escape_rate + 1e-12 and (best is None or key < best[0]):
            best = (key, t, esc, fr)
        fkey = (esc, fr, t)
        if fallback is None or fkey < fallback[0]:
            fallback = (fkey, t, esc, fr)
    met = best is not None
    _, t, esc, fr = best if met else fallback
    return {"threshold": _r(t), "met_target": met, "escape": rate(esc, n_def), "false_reject": rate(fr, n_good)}


RULE = "passed when p(passed) >= threshold, else the most probable defect class"


def rates_at(p_passed: np.ndarray, is_passed: np.ndarray, threshold: float) -> dict:
    """{escape, false_reject} rate dicts when parts with p(passed) >= threshold pass."""
    scores, is_passed = np.asarray(p_passed, dtype=np.float64), np.asarray(is_passed, dtype=bool)
    esc, fr = _rates_at(scores, is_passed, threshold)
    return {"escape": rate(esc, int((~is_passed).sum())), "false_reject": rate(fr, int(is_passed.sum()))}


def operating_point(p_passed: np.ndarray, is_passed: np.ndarray, setting, target_escape_rate: float,
                    classes: list[str], chosen_on: str = "val", good: str = "passed") -> dict:
    """The operating point deployed with the model (models/operating_point.json).

    setting: "auto" (choose_threshold for the target) or a fixed threshold, checked against the target.
    Returns {class, threshold, mode, target_escape_rate, chosen_on, met_target, rule, classes,
    <chosen_on>: {escape, false_reject}} with the counts it was chosen or checked on.
    """
    if setting == "auto":
        chosen = choose_threshold(p_passed, is_passed, target_escape_rate)
        t, met, rates = chosen["threshold"], chosen["met_target"], {k: chosen[k] for k in ("escape", "false_reject")}
    else:
        t = float(setting)
        rates = rates_at(p_passed, is_passed, t)
        met = rates["escape"]["rate"] is not None and rates["escape"]["k"] / rates["escape"]["n"] <= target_escape_rate + 1e-12
    return {"class": good, "threshold": t, "mode": "auto" if setting == "auto" else "fixed",
            "target_escape_rate": target_escape_rate, "chosen_on": chosen_on, "met_target": met,
            "rule": RULE, "classes": list(classes), chosen_on: rates}


def at_escape_target(pass_score: np.ndarray, is_passed: np.ndarray, target_escape_rate: float) -> dict:
    """One judge read off its ROC on a labelled set at an escape target, to compare judges at the same escapes.

    ``pass_score`` (N,): higher is more like a good part (p(passed); minus the gate's MD); a part passes when its
    score is at least t. Of every t, the one that rejects the fewest good parts while at most
    floor(target x defective parts) of the defective ones pass. A measurement: the set's own defective parts
    choose t (the same rule for every judge), never a threshold to deploy. Returns {target_escape_rate,
    escapes_allowed, escape, false_reject} (rates k of n with Wilson intervals; None without defective or good
    parts)."""
    s, good = np.asarray(pass_score, dtype=np.float64), np.asarray(is_passed, dtype=bool)
    bad = np.sort(s[~good])[::-1]  # the defective parts most like good ones first
    allowed = int(math.floor(target_escape_rate * len(bad) + 1e-9))
    out = {"target_escape_rate": target_escape_rate, "escapes_allowed": allowed}
    if not len(bad) or not good.any():
        return {**out, "escape": rate(0, len(bad)), "false_reject": rate(0, int(good.sum()))}
    t = np.nextafter(bad[allowed], np.inf) if allowed < len(bad) else -np.inf  # just above the first defect to reject
    return {**out, "escape": rate(int((bad >= t).sum()), len(bad)), "false_reject": rate(int((s[good] < t).sum()), int(good.sum()))}


# --------------------------------------------------------------------------- curves


def curves(p_passed: np.ndarray, is_passed: np.ndarray, threshold: float | None = None) -> dict:
    """ROC and precision-recall of *defective* detection (score 1 - p(passed)), for dvc plots.

    ROC: false-reject rate (x) against detection rate = 1 - escape rate (y). PR: recall = detection
    rate (x) against precision = share of rejected parts that are defective (y). Each record carries
    ``threshold`` (on p(passed)); the operating point is the record with ``operating_point: true``.
    Returns {"roc": [...], "pr": [...]}; empty lists when one class is absent.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = ~np.asarray(is_passed, dtype=bool)
    score = 1.0 - np.asarray(p_passed, dtype=np.float64)
    if y.all() or not y.any():
        return {"roc": [], "pr": []}
    fpr, tpr, thr = roc_curve(y, score)
    roc = [{"false_reject_rate": _r(a), "detection_rate": _r(b), "threshold": _r(min(1.0, max(0.0, 1 - c))), "operating_point": False}
           for a, b, c in zip(fpr, tpr, thr)]
    prec, rec, thr2 = precision_recall_curve(y, score)
    pr = [{"detection_rate": _r(r), "precision": _r(p), "threshold": _r(1 - c), "operating_point": False}
          for p, r, c in zip(prec[:-1], rec[:-1], thr2)]
    if threshold is not None:
        reject = np.asarray(p_passed) < threshold
        tp, fp = int((reject & y).sum()), int((reject & ~y).sum())
        det, fr = tp / y.sum(), fp / (~y).sum()
        roc.append({"false_reject_rate": _r(fr), "detection_rate": _r(det), "threshold": _r(threshold), "operating_point": True})
        if tp + fp:
            pr.append({"detection_rate": _r(det), "precision": _r(tp / (tp + fp)), "threshold": _r(threshold), "operating_point": True})
    return {"roc": roc, "pr": pr}


# --------------------------------------------------------------------------- what evaluate writes


def macro_f1_interval(labels: np.ndarray, preds: np.ndarray, class_ids: list[int], n_classes: int,
                      resamples: int = 1000, seed: int = 0) -> dict:
    """Macro-F1 over ``class_ids`` with a 95 % percentile bootstrap interval (parts resampled, seeded).

    Each resample's confusion matrix comes from one bincount, so 1000 resamples of 2,000 parts
    take milliseconds. Returns {value, low, high}; values are None for an empty set.
    """
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    n, k = len(labels), n_classes
    if n == 0:
        return {"value": None, "low": None, "high": None}
    codes = labels * k + preds

    def f1s(idx):  # (B, n) row indices -> (B,) macro-F1 over class_ids
        b = idx.shape[0]
        flat = (codes[idx] + (k * k) * np.arange(b)[:, None]).ravel()
        m = np.bincount(flat, minlength=b * k * k).reshape(b, k, k)  # [resample, actual, predicted]
        tp = m[:, class_ids, class_ids]
        denom = m.sum(axis=2)[:, class_ids] + m.sum(axis=1)[:, class_ids]  # actual + predicted = 2tp + fn + fp
        return np.divide(2 * tp, denom, out=np.zeros(denom.shape, dtype=float), where=denom > 0).mean(axis=1)

    value = float(f1s(np.arange(n)[None])[0])
    rng = np.random.default_rng(seed)
    boot = f1s(rng.integers(0, n, size=(resamples, n)))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"value": _r(value), "low": _r(lo), "high": _r(hi)}


def _per_class(m: np.ndarray, classes: list[str]) -> dict:
    """Overall and per-class figures from a confusion matrix m[actual, predicted] (sklearn's definitions,
    zero_division=0; balanced accuracy over the classes present)."""
    precision, recall, f1, support = class_scores(m)
    n = int(m.sum())
    present = support > 0
    out = {
        "n": n,
        "accuracy": _r(np.trace(m) / n) if n else None,
        "balanced_accuracy": _r(recall[present].mean()) if present.any() else None,
        "macro_f1": _r(f1.mean()),
        "per_class": {c: {"precision": _r(precision[i]), "recall": _r(recall[i]), "f1": _r(f1[i]), "support": int(support[i])}
                      for i, c in enumerate(classes)},
    }
    if "tilt_x" in classes and "tilt_y" in classes:
        x, y = classes.index("tilt_x"), classes.index("tilt_y")
        out["xy_confusion"] = {"tilt_x_as_tilt_y": _r(m[x, y] / support[x]) if support[x] else None,
                               "tilt_y_as_tilt_x": _r(m[y, x] / support[y]) if support[y] else None}
    return out


def inspection_block(labels: np.ndarray, preds: np.ndarray, classes: list[str], good: str = "passed") -> dict:
    """Every inspection figure of one set of decisions, each rate with k of n and its Wilson interval.

    escape: defective parts passed, of defective parts; false_reject: passed parts rejected, of
    passed parts; rejected: parts rejected, of all parts; predicted_counts: how often each class was
    predicted (a class at 0 is never predicted); accuracy, balanced accuracy, macro-F1 and per-class
    precision/recall/F1/support as sklearn defines them (from one confusion matrix, no sklearn call:
    evaluate runs this six times and must stay close to the cost of the forward pass).
    """
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    k = len(classes)
    m = confusion_counts(labels, preds, k)
    p = classes.index(good)
    n_good = int(m[p].sum())
    defective = int(m.sum()) - n_good
    return {
        **_per_class(m, classes),
        "escape": rate(int(m[:, p].sum() - m[p, p]), defective),
        "false_reject": rate(n_good - int(m[p, p]), n_good),
        "rejected": rate(int(m.sum() - m[:, p].sum()), int(m.sum())),
        "macro_f1_defects": macro_f1_interval(labels, preds, [i for i, c in enumerate(classes) if c != good], k),
        "predicted_counts": {c: int(m[:, i].sum()) for i, c in enumerate(classes)},
    }


def evaluation_detail(y_true: np.ndarray, proba: np.ndarray, classes: list[str], threshold: float | None,
                      good: str = "passed") -> dict:
    """{"argmax": block, "operating_point": block} for one set of parts (see :func:`inspection_block`)."""
    y_true = np.asarray(y_true).astype(int)
    return {
        "argmax": inspection_block(y_true, decide(proba, classes, None, good), classes, good),
        "operating_point": {"threshold": threshold, **inspection_block(y_true, decide(proba, classes, threshold, good), classes, good)},
    }


def evaluation_summary(y_true: np.ndarray, proba: np.ndarray, classes: list[str], threshold: float | None,
                       good: str = "passed") -> dict:
    """The headline figures of one set of parts: what ``metrics/eval.json`` (test) and ``metrics/lot.json`` hold.

    Nine numbers, flat, so ``dvc exp show`` stays readable (the counts behind them: reports/evaluation.json). Rates are at the operating point
    (``threshold``; None = argmax) unless suffixed ``_argmax``:
    escapes_per_million (defective parts passed, per million defective), false_reject_rate (share
    of passed parts rejected), rejected_per_1000 (parts rejected per 1,000 parts), accuracy,
    macro_f1 (all classes), macro_f1_defects (defect classes only).
    """
    return summary_of(evaluation_detail(y_true, proba, classes, threshold, good))


def summary_of(detail: dict) -> dict:
    """:func:`evaluation_summary` from an :func:`evaluation_detail` already computed."""
    op, am = detail["operating_point"], detail["argmax"]

    def scaled(r, s):
        return None if r["rate"] is None else _r(s * r["k"] / r["n"])

    return {
        "threshold": op["threshold"],
        "escapes_per_million": scaled(op["escape"], 1e6),
        "false_reject_rate": op["false_reject"]["rate"],
        "rejected_per_1000": scaled(op["rejected"], 1e3),
        "escapes_per_million_argmax": scaled(am["escape"], 1e6),
        "false_reject_rate_argmax": am["false_reject"]["rate"],
        "accuracy": op["accuracy"],
        "macro_f1": op["macro_f1"],
        "macro_f1_defects": op["macro_f1_defects"]["value"],
    }


UNSCORED = "the lot has no labels (a folder of parts without labels.csv or class folders): judged and counted, not scored"


def unscored_detail(proba: np.ndarray, classes: list[str], threshold: float | None, good: str = "passed",
                    note: str = UNSCORED) -> dict:
    """What can be said of parts without labels: how many were judged, rejected (k of n, Wilson) and
    predicted as each class; escape and false-reject rates are None (nothing to score them against)."""
    proba = np.asarray(proba).reshape(-1, len(classes))
    n = len(proba)
    preds = decide(proba, classes, threshold, good) if n else np.zeros(0, dtype=int)
    p = classes.index(good)
    block = {"n": n, "scored": False, "note": note, "rejected": rate(int((preds != p).sum()), n),
             "escape": rate(0, 0), "false_reject": rate(0, 0), "accuracy": None, "macro_f1": None,
             "macro_f1_defects": {"value": None}, "predicted_counts": {c: int((preds == i).sum()) for i, c in enumerate(classes)}}
    return {"argmax": {**block, "rejected": rate(int((proba.argmax(axis=1) != p).sum()) if n else 0, n)},
            "operating_point": {"threshold": threshold, **block}}


def unscored_summary(detail: dict) -> dict:
    """metrics/lot.json for a lot that could not be scored: the same keys, None where there is no label."""
    op = detail["operating_point"]
    r = op["rejected"]
    return {"threshold": op["threshold"], "escapes_per_million": None, "false_reject_rate": None,
            "rejected_per_1000": None if r["rate"] is None else _r(1e3 * r["k"] / r["n"]),
            "escapes_per_million_argmax": None, "false_reject_rate_argmax": None, "accuracy": None, "macro_f1": None,
            "macro_f1_defects": None, "n_parts": op["n"], "scored": False}
