"""The evaluate stage's judgement from probabilities: the operating point on val, test and lot judged at it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vitinspect.core.errors import VitinspectError
from vitinspect.evaluation.decision import UNSCORED, at_escape_target, evaluation_detail, operating_point
from vitinspect.evaluation.evaluate import evaluate, lot_split, val_operating_point
from vitinspect.evaluation.gate import Gate
from vitinspect.evaluation.verdict import blocks, headline

CLASSES = ["passed", "tilt", "retracted"]
AUTO = SimpleNamespace(threshold="auto", target_escape_rate=0.0)


def _set(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    proba = rng.dirichlet(np.ones(3), n)
    proba[labels == 0, 0] += 1.0  # passed parts look passed
    return labels, proba / proba.sum(axis=1, keepdims=True)


GATE = Gate(np.zeros(3), np.eye(3), 1.0, 1, 1, 0.01, 0.1, 10, {"k": 0, "n": 10})


def _scores(sets):
    """Gate scores: good parts 0.5, defective parts 2 (rejected), but every third defective part 0.9 (accepted)."""
    out = {}
    for name, (y, _) in sets.items():
        s = np.where(np.asarray(y) == 0, 0.5, 2.0)
        s[np.flatnonzero(np.asarray(y) != 0)[::3]] = 0.9
        out[name] = s
    return out


def test_the_operating_point_is_decisions_on_val_and_names_a_missing_good_class():
    labels, proba = _set(30, 0)
    assert val_operating_point(labels, proba, CLASSES, "passed", AUTO, "data/nsoartc") == \
        operating_point(proba[:, 0], labels == 0, "auto", 0.0, CLASSES, good="passed")
    with pytest.raises(VitinspectError, match=r"data/nsoartc: holds classes .*, without data.good_class 'ok'; run dvc repro"):
        val_operating_point(labels, proba, CLASSES, "ok", AUTO, "data/nsoartc")


def test_test_and_a_labelled_lot_are_scored_at_the_val_threshold():
    sets = {"val": _set(30, 0), "test": _set(12, 1), "lot": _set(9, 2)}
    scores = _scores(sets)
    ev = evaluate(sets, np.array([f"p{i}" for i in range(12)]), CLASSES, "passed", AUTO, None, "data/nsoartc", GATE, scores)
    t = ev.operating_point["threshold"]
    for name, got in (("test", ev.metrics), ("lot", ev.lot_metrics)):
        detail = {**evaluation_detail(*sets[name], CLASSES, t, "passed"), **blocks(*sets[name], scores[name], GATE, CLASSES, "passed")}
        assert got == headline(detail, bounds=name == "lot")
        assert ev.report[name]["combined"] == detail["combined"] and ev.report[name]["gate"] == detail["gate"]
    assert list(ev.predictions.columns) == ["id", "label", "predicted", "predicted_argmax", "p_passed", "p_tilt", "p_retracted",
                                            "gate_score", "verdict"]
    assert (ev.predictions["verdict"] == "passed").tolist() == (scores["test"] <= 1.0).tolist()
    assert len(ev.confusion_records) == 12 and ev.roc and ev.pr and any(r["operating_point"] for r in ev.roc)
    assert ev.gate_roc and any(r["operating_point"] for r in ev.gate_roc)
    assert ev.report["operating_point"] == ev.operating_point
    assert set(ev.report) == {"interval", "operating_point", "gate", "verdict", "val", "test", "lot"}
    assert ev.line.startswith(f"evaluate: threshold {t:.4g} (auto") and "defective parts escaped" in ev.line
    # the lot's judges at the same escapes: the gate by its MD, the classifier by p(passed), each at its own threshold
    at = ev.report["lot"]["at_escape_target"]
    good = sets["lot"][0] == 0
    assert at["gate"] == at_escape_target(-scores["lot"], good, AUTO.target_escape_rate)
    assert at["classifier"] == at_escape_target(sets["lot"][1][:, 0], good, AUTO.target_escape_rate)
    assert "at_escape_target" not in ev.report["test"] and "at_escape_target" not in ev.report["val"]


def test_a_lot_without_labels_or_without_parts_is_counted_not_scored():
    sets = {"val": _set(30, 0), "test": _set(12, 1), "lot": (np.full(4, -1), _set(4, 2)[1])}
    ev = evaluate(sets, np.arange(12), CLASSES, "passed", AUTO, None, "data/nsoartc", GATE, _scores(sets))
    assert ev.lot_metrics["scored"] is False and ev.lot_metrics["n_parts"] == 4 and ev.roc == [] and ev.pr == []
    assert ev.gate_roc == [] and ev.lot_metrics["false_reject_rate"] is None and ev.lot_metrics["rejected_per_1000"] == 500.0  # by the gate: 2 of 4
    assert ev.report["lot"]["operating_point"]["note"] == UNSCORED and "not scored" in ev.line
    sets["lot"] = (np.zeros(0, dtype=int), np.zeros((0, 3)))
    assert evaluate(sets, np.arange(12), CLASSES, "passed", AUTO, None, "x", GATE, _scores(sets)).report["lot"]["operating_point"]["note"] == "no lot"


def test_no_lot_is_an_empty_split_of_the_test_split_shape():
    lot = lot_split("data/lot", {"rows": {"lot": 0}}, "nsoartc", CLASSES, (8, 8, 3))
    assert lot["label"].shape == (0,) and lot["nsoartc"].shape == (0, 8, 8, 3) and lot["nsoartc"].dtype == np.uint8
    raw = lot_split("data/lot", {"rows": {"lot": 0}}, "raw", CLASSES, (8, 8))
    assert raw["raw"].shape == (0, 8, 8) and raw["nsoartc"].shape == (0, 8, 8, 3)  # the gate's composites, whatever the input
