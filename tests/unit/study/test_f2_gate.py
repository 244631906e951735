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
    # two seeds of 1,800 good and 200 defective parts: the counts add up
    assert verdict[2].startswith("0 of 3,600 (0.0 % [0.0,") and verdict[3].startswith("28 of 400 (7.0 % [")
    assert verdict[4].startswith("1,722 of 3,600 (47.8 %")
    same = _row(text, "| 0.02 | 2 |", 2)
    assert same[2].startswith("84 of 3,600 (2.3 % [") and same[4].startswith("3,400 of 3,600") and same[5].startswith("600 of 3,600")
    assert _row(text, "| 0.2 | 1 |", 2)[2].startswith("3 of 1,800")


def test_the_gate_is_judged_below_every_other_judge_and_against_the_classifier_at_one_fifth(repos, monkeypatch, tmp_path):
    text = _f2(*repos[True], monkeypatch, tmp_path)
    assert "Below every other judge beyond the intervals (its upper bound under their lower bounds): **yes**." in text
    # at the same escapes the gate at 1/50 (84 of 3,600) against the classifier at 1/5 (20 of 1,800): above it
    assert "**Does the gate remove the need for 1/5 good parts?** At the same escapes the gate at 0.02 rejects 84 of 3,600" in text
    assert "**No**: above it beyond the intervals." in text
    # at the operating points: the verdict rejects fewer good parts (0 against 20) and passes more defective ones (28 of 400
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
