"""F2 asked again with the unit-space gate (issue 37): the lot's judges pooled over seeds, every judge at the same
escapes, and the two answers; runs before the gate's comparison say so instead of judging."""

from __future__ import annotations

from pathlib import Path

import pytest

from study_records import LOT, committed_records

from vitinspect.study.findings import Study, f2_passed_ratio

RUNS = {"base": (2, {}), "ratio0.2": (1, {"data": {"passed_ratio": 0.2}})}


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("f2")
    return {lot: (root / f"lot{lot}", committed_records(root / f"lot{lot}", RUNS, lot=lot)) for lot in (True, False)}


def _f2(repo: Path, records: dict, monkeypatch, tmp_path) -> str:
    monkeypatch.chdir(repo)  # the study reads each run with git show in the working directory
    return "\n".join(f2_passed_ratio(Study(records, tmp_path, "study")))


def _row(text: str, head: str, nth: int = 0) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(head)]
    return [c.strip() for c in rows[nth].strip("|").split("|")]


def test_the_lot_judges_are_pooled_over_seeds_with_wilson_intervals(repos, monkeypatch, tmp_path):
    text = _f2(*repos[True], monkeypatch, tmp_path)
    verdict = _row(text, "| 0.02 | 2 |", 1)  # the first 0.02 row is the classifier's test table
    # the fixed runs give every judge the same counts in both seeds: one measurement, counted once
    assert verdict[2].startswith("0 of 1,800 (0.0 % [0.0,") and verdict[3].startswith("14 of 200 (7.0 % [")
    assert verdict[4].startswith("861 of 1,800 (47.8 %")
    same = _row(text, "| 0.02 | 2 |", 2)
    assert same[2].startswith("42 of 1,800 (2.3 % [") and same[4].startswith("1,700 of 1,800") and same[5].startswith("300 of 1,800")
    assert _row(text, "| 0.2 | 1 |", 2)[2].startswith("3 of 1,800")


def test_a_judge_that_differs_between_seeds_is_summed_and_one_that_does_not_is_counted_once():
    from types import SimpleNamespace

    from vitinspect.study.lot_judges import pooled

    counts = {"lot_classifier_false_reject_k": [861, 1382, 1580], "lot_classifier_false_reject_n": [1800] * 3,
              "lot_gate_at_false_reject_k": [42] * 3, "lot_gate_at_false_reject_n": [1800] * 3,
              "lot_svm_at_false_reject_k": [175, float("nan"), 175], "lot_svm_at_false_reject_n": [1800] * 3}
    st = SimpleNamespace(values=lambda setting, key: counts[key])
    assert pooled(st, "base", "classifier", "false_reject")["k"] == 3823 and pooled(st, "base", "classifier", "false_reject")["n"] == 5400
    assert (pooled(st, "base", "gate_at", "false_reject")["k"], pooled(st, "base", "gate_at", "false_reject")["n"]) == (42, 1800)
    assert pooled(st, "base", "svm_at", "false_reject") is None  # a run that predates it: no figure


def test_the_gate_is_judged_below_every_other_judge_and_against_the_classifier_at_one_fifth(repos, monkeypatch, tmp_path):
    text = _f2(*repos[True], monkeypatch, tmp_path)
    assert "Below every other judge beyond the intervals (its upper bound under their lower bounds): **yes**." in text
    # at the same escapes the gate at 1/50 (42 of 1,800) against the classifier at 1/5 (20 of 1,800): above it
    assert "**Does the gate remove the need for 1/5 good parts?** At the same escapes the gate at 0.02 rejects 42 of 1,800" in text
    assert "**No**: above it beyond the intervals." in text
    # at the operating points: the verdict rejects fewer good parts (0 against 20) and passes more defective ones (14 of 200
    # against 1 of 200)
    assert "fewer good parts rejected, more defective parts passed." in text


def test_a_judge_the_gate_does_not_beat_is_named(repos, monkeypatch, tmp_path):
    saved = {k: dict(v) for k, v in LOT.items()}
    try:  # a CNN that rejects as few good parts as the gate at the same escapes; a classifier at 1/5 that rejects many
        LOT["base"]["cnn_at"] = ((40, 1800), (1, 200))
        LOT["ratio0.2"]["classifier_at"] = ((336, 1800), (1, 200))
        records = committed_records(tmp_path / "again", RUNS, lot=True)
        text = _f2(tmp_path / "again", records, monkeypatch, tmp_path)
    finally:
        for k, v in saved.items():
            LOT[k].update(v)
    assert "Below the classifier, the RT+SVM peer beyond the intervals, not the CNN peer: **no**." in text
    assert "the classifier at 0.2 336 of 1,800 (18.7 % [" in text and "**Yes**: below it beyond the intervals." in text


def test_runs_before_the_gates_comparison_are_not_judged(repos, monkeypatch, tmp_path):
    text = _f2(*repos[False], monkeypatch, tmp_path)
    assert "These runs predate the gate's comparison at the same escapes: not judged." in text
    assert "n/a" in _row(text, "| 0.02 | 2 |", 1)[2] and "**yes**" not in text
