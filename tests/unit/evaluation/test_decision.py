"""The operating point, the intervals and the PR verdict, on hand-made numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vitinspect.evaluation.decision import (
    choose_threshold,
    compare_intervals,
    compare_rates,
    curves,
    decide,
    evaluation_detail,
    evaluation_summary,
    two_proportion_p,
    wilson,
)
from vitinspect.review.pr_report import build_report, degenerate, verdict_of

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]

# A val split by hand: p(passed) of 4 good and 10 defective parts.
GOOD = [0.95, 0.85, 0.55, 0.30]
DEFECTIVE = [0.70, 0.50, 0.40, 0.20, 0.10, 0.08, 0.06, 0.04, 0.02, 0.01]


def hand_table():
    scores = np.array(GOOD + DEFECTIVE)
    is_passed = np.array([True] * len(GOOD) + [False] * len(DEFECTIVE))
    return scores, is_passed


@pytest.mark.parametrize("target, t, escapes, rejects", [
    (0.1, 0.525, 1, 1),   # at most 1 of 10 may escape: pass only 0.70 of the defective; 0.30 of the good is rejected
    (0.0, 0.775, 0, 2),   # none may escape: t above 0.70; 0.55 and 0.30 are rejected
    (0.5, 0.09, 5, 0),    # 5 may escape: the lowest t keeping 0.08 out; no good part rejected
    (1.0, 0.0, 10, 0),    # anything goes: pass everything
])
def test_threshold_choice_on_a_hand_made_table(target, t, escapes, rejects):
    scores, is_passed = hand_table()
    got = choose_threshold(scores, is_passed, target)
    assert got["threshold"] == pytest.approx(t)
    assert got["met_target"] is True
    assert (got["escape"]["k"], got["escape"]["n"]) == (escapes, 10)
    assert (got["false_reject"]["k"], got["false_reject"]["n"]) == (rejects, 4)


def test_threshold_falls_back_to_the_lowest_escape_rate_when_the_target_cannot_be_met():
    # A defective part at p(passed) = 1.0: no threshold in [0, 1] rejects it.
    scores = np.array([1.0, 0.9, 0.6, 0.2, 0.1])
    is_passed = np.array([False, True, True, False, False])
    got = choose_threshold(scores, is_passed, 0.0)
    assert got["met_target"] is False
    assert got["escape"]["k"] == 1 and got["false_reject"]["k"] == 0  # lowest escape, then lowest false reject
    assert got["threshold"] == pytest.approx(0.4)


def test_decide_rejects_with_the_most_probable_defect_class():
    proba = np.array([[0.40, 0.30, 0.20, 0.10],   # argmax passed, but below t = 0.5: rejected as tilt_x
                      [0.60, 0.10, 0.25, 0.05],   # passed
                      [0.10, 0.20, 0.30, 0.40]])
    assert decide(proba, CLASSES, 0.5).tolist() == [1, 0, 3]
    assert decide(proba, CLASSES, None).tolist() == [0, 0, 3]


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),       # upper bound z^2 / (n + z^2)
    (5, 10, 0.2366, 0.7634),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Stat. Med. 17:857, table I
    (10, 10, 0.7225, 1.0),
])
def test_wilson_interval_on_known_values(k, n, low, high):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_two_proportion_test_on_known_values():
    # 15/100 vs 30/100: pooled 0.225, z = 0.15 / sqrt(0.225 * 0.775 * 0.02) = 2.540, p = 0.0111
    assert two_proportion_p(15, 100, 30, 100) == pytest.approx(0.01109, abs=1e-5)
    assert two_proportion_p(0, 50, 0, 80) == 1.0
    assert compare_rates({"k": 30, "n": 100}, {"k": 15, "n": 100})[0] == "better"
    assert compare_rates({"k": 15, "n": 100}, {"k": 18, "n": 100})[0] == "unchanged within noise"
    assert compare_intervals({"value": 0.9, "low": 0.85, "high": 0.95}, {"value": 0.8, "low": 0.7, "high": 0.84}) == "worse"


# --------------------------------------------------------------------------- the verdict


def model_outputs(n_good, n_def, rejected_good, escaped_def, seed):
    """Labels and probabilities of a model that rejects exactly ``rejected_good`` good parts and passes
    exactly ``escaped_def`` defective ones at t = 0.5 (defects spread over the three defect classes)."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.zeros(n_good, int), 1 + np.arange(n_def) % 3])
    p_pass = np.concatenate([np.r_[rng.uniform(0.0, 0.4, rejected_good), rng.uniform(0.6, 1.0, n_good - rejected_good)],
                             np.r_[rng.uniform(0.6, 1.0, escaped_def), rng.uniform(0.0, 0.4, n_def - escaped_def)]])
    proba = np.zeros((len(labels), 4))
    proba[:, 0] = p_pass
    rest = 1 - p_pass
    for i, y in enumerate(labels):
        right = y if y else 1 + rng.integers(3)
        proba[i, 1:] = rest[i] * 0.1
        proba[i, right] += rest[i] * 0.7
    return labels, proba


def evaluation(test, lot, t=0.5):
    return {"operating_point": {"threshold": t}, "test": evaluation_detail(*test, CLASSES, t), "lot": evaluation_detail(*lot, CLASSES, t)}


def test_a_model_that_never_predicts_passed_is_called_worse_and_why():
    base = evaluation(model_outputs(9, 441, 2, 1, 0), model_outputs(1800, 200, 40, 1, 1))
    labels, proba = model_outputs(1800, 200, 40, 1, 1)
    proba[:, 0] = 0.01  # the degenerate model: p(passed) tiny for every part
    tl, tp = model_outputs(9, 441, 2, 1, 0)
    tp[:, 0] = 0.01
    new = evaluation((tl, tp), (labels, proba))
    j = verdict_of(base, new)
    assert j["overall"] == "worse"
    assert any("false-reject rate on the lot worse" in r for r in j["reasons"])
    assert any("never predicts `passed`" in r for r in j["reasons"])
    report = build_report("main", "", "", base, new, None)
    assert "## Verdict: **worse**" in report
    top = report.split("## Verdict")[0]  # the degenerate call-out comes first
    assert "never predicts `passed`" in top and "false-reject rate is exactly 1 (100 %): 1800 of 1800" in top
    assert "escape rate is exactly 0" in top  # fewer escapes here is no achievement


def test_two_runs_that_differ_by_noise_are_unchanged():
    base = evaluation(model_outputs(9, 441, 2, 3, 0), model_outputs(1800, 200, 40, 1, 1))
    new = evaluation(model_outputs(9, 441, 3, 2, 2), model_outputs(1800, 200, 47, 2, 3))  # 40 -> 47 rejects, 1 -> 2 escapes
    j = verdict_of(base, new)
    assert j["overall"] == "unchanged within noise", j
    assert {w for w, _ in j["figures"].values()} == {"unchanged within noise"}
    report = build_report("main", "", "", base, new, None)
    assert "## Verdict: **unchanged within noise**" in report and "Degenerate" not in report
    # Headline table first, at most 12 rows, the full metrics diff folded away.
    table = [line for line in report.split("## Params")[0].splitlines() if line.startswith("| ")]
    assert len(table) <= 12
    assert "<details>" in report and report.index("<details>") > report.index("| figure")


def test_a_real_improvement_is_called_better():
    base = evaluation(model_outputs(9, 441, 2, 3, 0), model_outputs(1800, 200, 120, 2, 1))
    new = evaluation(model_outputs(9, 441, 2, 3, 0), model_outputs(1800, 200, 30, 2, 3))
    assert verdict_of(base, new)["overall"] == "better"


def test_a_base_without_counts_is_not_comparable():
    new = evaluation(model_outputs(9, 441, 2, 3, 0), model_outputs(1800, 200, 40, 1, 1))
    assert verdict_of(None, new)["overall"] == "not comparable"
    assert degenerate(new) == []


def test_summary_has_the_headline_keys_and_the_curves_mark_the_point():
    labels, proba = model_outputs(180, 20, 4, 1, 0)
    s = evaluation_summary(labels, proba, CLASSES, 0.5)
    assert s["false_reject_rate"] == pytest.approx(4 / 180, abs=1e-6)
    assert s["escapes_per_million"] == pytest.approx(1e6 / 20)
    assert s["rejected_per_1000"] == pytest.approx(1000 * (4 + 19) / 200)
    assert sum(isinstance(v, (int, float)) for v in s.values()) == 9
    c = curves(proba[:, 0], labels == 0, 0.5)
    point = [r for r in c["roc"] if r["operating_point"]]
    assert len(point) == 1 and point[0]["false_reject_rate"] == pytest.approx(4 / 180, abs=1e-6)
    assert point[0]["detection_rate"] == pytest.approx(19 / 20, abs=1e-6)


def test_macro_f1_interval_value_matches_sklearn_and_brackets_it():
    from sklearn.metrics import f1_score

    from vitinspect.evaluation.decision import macro_f1_interval

    labels, proba = model_outputs(50, 150, 5, 4, 7)
    preds = decide(proba, CLASSES, 0.5)
    got = macro_f1_interval(labels, preds, [1, 2, 3], 4)
    assert got["value"] == pytest.approx(f1_score(labels, preds, labels=[1, 2, 3], average="macro", zero_division=0), abs=1e-6)
    assert got["low"] <= got["value"] <= got["high"] and got["high"] - got["low"] < 0.2


def test_operating_point_auto_and_fixed_on_the_hand_table():
    from vitinspect.evaluation.decision import operating_point

    scores, is_passed = hand_table()
    auto = operating_point(scores, is_passed, "auto", 0.1, CLASSES)
    assert auto["threshold"] == pytest.approx(0.525) and auto["mode"] == "auto" and auto["met_target"] is True
    assert auto["val"]["false_reject"]["k"] == 1 and auto["class"] == "passed" and auto["chosen_on"] == "val"
    fixed = operating_point(scores, is_passed, 0.45, 0.1, CLASSES)  # passes 0.70 and 0.50: 2 of 10 escape
    assert fixed["mode"] == "fixed" and fixed["threshold"] == 0.45 and fixed["met_target"] is False
    assert fixed["val"]["escape"]["k"] == 2 and fixed["val"]["false_reject"]["k"] == 1


def test_inspection_block_agrees_with_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

    from vitinspect.evaluation.decision import inspection_block

    labels, proba = model_outputs(30, 90, 5, 4, 11)
    labels[:3] = 3  # a few more retracted parts
    preds = decide(proba, CLASSES, 0.5)
    preds[preds == 2] = 1  # tilt_y never predicted: zero-division paths
    got = inspection_block(labels, preds, CLASSES)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-6)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, preds), abs=1e-6)
    assert got["macro_f1"] == pytest.approx(f1_score(labels, preds, labels=[0, 1, 2, 3], average="macro", zero_division=0), abs=1e-6)
    prec, rec, f1, sup = precision_recall_fscore_support(labels, preds, labels=[0, 1, 2, 3], zero_division=0)
    for i, c in enumerate(CLASSES):
        assert got["per_class"][c] == pytest.approx({"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": sup[i]}, abs=1e-6)
    assert got["predicted_counts"]["tilt_y"] == 0
    assert got["escape"]["k"] == int(((labels != 0) & (preds == 0)).sum())
    assert got["rejected"]["k"] == int((preds != 0).sum()) and got["rejected"]["n"] == len(labels)


def test_class_scores_and_epoch_metrics_are_sklearns_floats_bit_for_bit():
    """metrics.py computes sklearn's definitions with numpy (so training need not import sklearn): the same
    floats, also where a class is never predicted, never present, or the only one."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    from vitinspect.evaluation.metrics import class_scores, confusion, confusion_counts, epoch_metrics

    rng = np.random.default_rng(3)
    for trial in range(300):
        k = int(rng.integers(2, 6))
        n = int(rng.integers(1, 60))
        labels = rng.integers(0, k, n)
        preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, k, n))
        if trial % 3 == 0:
            preds[preds == k - 1] = 0  # a class never predicted
        if trial % 5 == 0:
            labels[labels == 1] = 0  # a class never present
        if trial % 17 == 0:
            labels[:], preds[:] = 0, 0  # one class only
        m = confusion_counts(labels, preds, k)
        assert np.array_equal(m, confusion_matrix(labels, preds, labels=list(range(k))))
        ours = class_scores(m)
        theirs = precision_recall_fscore_support(labels, preds, labels=list(range(k)), zero_division=0)
        for a, b in zip(ours, theirs):
            assert np.asarray(a).tobytes() == np.asarray(b, dtype=np.asarray(a).dtype).tobytes()
        names = ["passed", "tilt_x", "tilt_y", "retracted", "bent"][:k]
        got = epoch_metrics(labels, preds, names)
        assert got["accuracy"] == round(float(accuracy_score(labels, preds)), 6)
        assert got["macro_f1"] == round(float(theirs[2].mean()), 6)
        assert got["macro_f1_defects"] == round(float(theirs[2][1:].mean()), 6)
        assert [got[f"recall_{c}"] for c in names] == [round(float(r), 6) for r in theirs[1]]
        assert confusion(labels, preds, names)["counts"] == m.tolist()


def test_class_indices_outside_the_classes_are_refused_not_miscounted():
    from vitinspect.evaluation.metrics import confusion_counts, epoch_metrics

    for labels, preds in (([0, 1, 2], [0, 1, -1]), ([0, 1, 2], [0, 1, 3]), ([0, 5], [0, 1])):
        with pytest.raises(ValueError, match="outside 0..2"):
            epoch_metrics(np.array(labels), np.array(preds), ["passed", "tilt_x", "tilt_y"])
    with pytest.raises(ValueError, match="2 labels but 3 predictions"):
        confusion_counts(np.array([0, 1]), np.array([0, 1, 1]), 3)


def test_an_unlabelled_lot_whose_verdict_never_names_a_class_is_noted_with_its_part_count():
    # a folder of parts without labels: its block counts predictions and rejections only (no "n")
    lot = {"rejected": {"k": 6, "n": 6, "rate": 1.0}, "predicted_counts": {"passed": 0, "tilt_x": 3, "tilt_y": 2, "retracted": 1}}
    notes = degenerate({"lot": {"combined": lot}})
    assert notes == ["lot: the model never predicts `passed` (6 parts)"], notes


def test_at_escape_target_rejects_the_fewest_good_parts_that_keep_the_escapes_at_the_target():
    from vitinspect.evaluation.decision import at_escape_target

    score = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.1])  # four good parts, then three defective ones
    good = np.array([True] * 4 + [False] * 3)
    none = at_escape_target(score, good, 0.0)  # no escape allowed: reject from the best-scored defect (0.6) down
    assert none["escapes_allowed"] == 0 and none["escape"]["k"] == 0 and none["false_reject"]["k"] == 1
    one = at_escape_target(score, good, 0.34)  # one of three may pass: the 0.6 one does, 0.5 and below are rejected
    assert one["escapes_allowed"] == 1 and one["escape"]["k"] == 1 and one["false_reject"]["k"] == 1
    every = at_escape_target(score, good, 1.0)
    assert every["escape"]["k"] == 3 and every["false_reject"]["k"] == 0
    # a defect scored like the best good part: every good part at or below it goes too; ties are rejected together
    tie = at_escape_target(np.array([0.9, 0.5, 0.9]), np.array([True, True, False]), 0.0)
    assert tie["escape"]["k"] == 0 and tie["false_reject"]["k"] == 2
    # degenerate sets: no defective or no good part gives no rate, never a division by zero
    assert at_escape_target(score[good], good[good], 0.005)["escape"]["rate"] is None
    assert at_escape_target(score[~good], good[~good], 0.005)["false_reject"]["rate"] is None
