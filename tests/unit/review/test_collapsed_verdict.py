"""`make report` calls a run whose training collapsed collapsed, instead of comparing its figures."""

from __future__ import annotations

from vitinspect.evaluation.decision import rate
from vitinspect.review.pr_report import build_report, verdict_of


def _evaluation(lot_rejects: int) -> dict:
    lot = {"n": 2000, "escape": rate(0, 200), "false_reject": rate(lot_rejects, 1800), "rejected": rate(lot_rejects + 200, 2000),
           "predicted_counts": {"passed": 1, "tilt_x": 1}, "macro_f1_defects": {"value": None, "low": None, "high": None}}
    test = dict(lot, n=40, macro_f1_defects={"value": 0.8, "low": 0.75, "high": 0.85})
    return {"operating_point": {"threshold": 0.5}, "lot": {"operating_point": lot}, "test": {"operating_point": test}}


def test_a_collapsed_workspace_is_called_collapsed_and_nothing_is_compared():
    base, new = _evaluation(900), _evaluation(90)  # the workspace would be "better" on the lot
    assert verdict_of(base, new, {"collapsed": False})["overall"] == "better"
    assert verdict_of(base, new)["overall"] == "better"  # an older train.json without the key: compared as before
    train = {"collapsed": True, "val": {"macro_f1": 0.108696}}
    j = verdict_of(base, new, train)
    assert j["overall"] == "collapsed"
    assert {w for w, _ in j["figures"].values()} == {"not compared"}
    assert "val macro-F1 0.109 at or below that of predicting one class" in j["reasons"][0]
    report = build_report("main", "", "", base, new, None, train)
    assert "## Verdict: **collapsed**" in report and "**better**" not in report
