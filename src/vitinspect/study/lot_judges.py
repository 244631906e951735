"""F2 asked again with the unit-space gate (issue 37): the line's judges on the lot, pooled over a setting's seeds.

The verdict (the gate's) and the classifier alone at their operating points; then every judge (gate, classifier,
RT+SVM and CNN peers) at the same escapes on the lot (:func:`vitinspect.evaluation.decision.at_escape_target`), read
from reports/evaluation.json and reports/baseline.json (:func:`vitinspect.study.runs.lot_counts`). Two answers: is the
gate below every other judge beyond the intervals, and does the gate at the rare passed ratio do what 1/5 good parts
did for the classifier?
"""

from __future__ import annotations

import numpy as np

from vitinspect.evaluation.decision import rate


def pooled(st, setting: str, judge: str, what: str) -> dict | None:
    """A lot judge's rate pooled over the setting's seeds (k and n summed), with its Wilson interval; None where a
    run predates it. A judge whose counts are the same in every seed (the gate, the peers: none depends on the ViT's
    training seed, and every seed judges the same lot) is one measurement, counted once, not n times."""
    k, n = (st.values(setting, f"lot_{judge}_{what}_{c}") for c in ("k", "n"))
    if not n or any(np.isnan(x) for x in k + n) or sum(n) == 0:
        return None
    if len(set(zip(k, n))) == 1:
        return rate(int(k[0]), int(n[0]))
    return rate(int(sum(k)), int(sum(n)))


def fmt_rate(r: dict | None) -> str:
    return "n/a" if r is None else (f"{r['k']:,} of {r['n']:,} ({100 * r['rate']:.1f} % "
                                    f"[{100 * r['low']:.1f}, {100 * r['high']:.1f}])")


def f2_lot(st, ratios: list[tuple[float, str]]) -> list[str]:
    """F2 asked again with the unit-space gate (issue 37): the line's verdict and the classifier alone on the lot, and
    every judge at the same escapes; does the gate at the rare ratio do what 1/5 good parts did for the classifier?"""
    lines = ["**F2 asked again with the unit-space gate** (issue 37; the lot stage's parts, every seed's counts "
             "pooled (a judge with the same counts in every seed counted once), 95 % Wilson intervals). The line's verdict passes a part when the gate, fitted on good parts alone, "
             "accepts it; the classifier alone passes it at its operating point (chosen on val):", "",
             "| passed ratio | seeds | verdict: good parts rejected | verdict: defective parts passed | classifier alone: good parts rejected | classifier alone: defective parts passed |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r:g} | {st.seeds(s)} | {fmt_rate(pooled(st, s, 'verdict', 'false_reject'))} | "
              f"{fmt_rate(pooled(st, s, 'verdict', 'escape'))} | {fmt_rate(pooled(st, s, 'classifier', 'false_reject'))} | "
              f"{fmt_rate(pooled(st, s, 'classifier', 'escape'))} |" for r, s in ratios]
    lines += ["", "At the same escapes: each judge at its own threshold that lets at most evaluate.target_escape_rate of the "
              "lot's defective parts pass (chosen with the lot's labels: a comparison, not an operating point), the good "
              "parts it rejects:", "",
              "| passed ratio | seeds | gate (the verdict) | classifier | RT+SVM peer | CNN peer |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r:g} | {st.seeds(s)} | " + " | ".join(fmt_rate(pooled(st, s, j, "false_reject"))
                                                      for j in ("gate_at", "classifier_at", "svm_at", "cnn_at")) + " |"
              for r, s in ratios]
    rare = ratios[0][1]
    gate, others = pooled(st, rare, "gate_at", "false_reject"), {
        name: pooled(st, rare, judge, "false_reject") for name, judge in (("the classifier", "classifier_at"), ("the RT+SVM peer", "svm_at"), ("the CNN peer", "cnn_at"))}
    known = {k: v for k, v in others.items() if v is not None}
    if gate is None or not known:
        return lines + ["", "These runs predate the gate's comparison at the same escapes: not judged.", ""]
    beyond = [k for k, v in known.items() if gate["high"] < v["low"]]
    lines += ["", f"**At a passed ratio of {ratios[0][0]:g}, at the same escapes**, the gate rejects {fmt_rate(gate)} of the good "
              f"lot parts; " + "; ".join(f"{k} {fmt_rate(v)}" for k, v in known.items()) + ". Below "
              + ("every other judge beyond the intervals (its upper bound under their lower bounds): **yes**." if len(beyond) == len(known)
                 else f"{', '.join(beyond) or 'none of them'} beyond the intervals, not {', '.join(k for k in known if k not in beyond)}: **no**.")]
    more = next((s for r, s in ratios[1:] if r >= 0.2), None)
    c_at = pooled(st, more, "classifier_at", "false_reject") if more else None
    if c_at is not None:
        rare_r, more_r = f"{ratios[0][0]:g}", f"{st.param(more, 'data', 'passed_ratio')}"
        word = ("**Yes**: below it beyond the intervals" if gate["high"] < c_at["low"] else
                "**No**: above it beyond the intervals" if gate["low"] > c_at["high"] else "**Within noise**: the intervals overlap")
        lines += ["", f"**Does the gate remove the need for 1/5 good parts?** At the same escapes the gate at {rare_r} rejects "
                  f"{fmt_rate(gate)} of the good parts, the classifier at {more_r} {fmt_rate(c_at)}. {word}."]
        v_fr, v_esc = pooled(st, rare, "verdict", "false_reject"), pooled(st, rare, "verdict", "escape")
        c_fr, c_esc = (pooled(st, more, "classifier", w) for w in ("false_reject", "escape"))
        if None not in (v_fr, v_esc, c_fr, c_esc):
            side = {w: ("fewer" if a["high"] < b["low"] else "more" if a["low"] > b["high"] else "as many, within the intervals,")
                    for w, a, b in (("rejected", v_fr, c_fr), ("passed", v_esc, c_esc))}
            lines += [f"At their operating points (the gate's threshold from good parts, the classifier's from val) the verdict at "
                      f"{rare_r} rejects {fmt_rate(v_fr)} of the good parts and passes {fmt_rate(v_esc)} of the defective ones, "
                      f"the classifier alone at {more_r} {fmt_rate(c_fr)} and {fmt_rate(c_esc)}: {side['rejected']} good parts "
                      f"rejected, {side['passed']} defective parts passed."]
    return lines + [""]
