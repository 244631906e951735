"""The source's claims table pins what each finding tests: a rewrite cannot flip a claim's direction unnoticed."""

from __future__ import annotations

import math

import pytest

from vitinspect.study.claims import CLAIMS, compare, verdict

from vitinspect.study.findings import Study
from vitinspect.study.claims import BY_FINDING, answer
from vitinspect.study.findings import f1_epochs, f3_raw_vs_nsoartc

# The source's directions, as the issue states them (higher is what the source found better).
PINNED = {
    "F1": ("macro_f1", "base", "epochs5", "10 epochs clearly beat 5"),  # 10 (baseline) > 5
    "F2": ("passed_recall", "ratio0.2", "base", "at least 1/5 is needed"),  # 1/5 > 1/50 (baseline)
    "F3": ("relevance_mass", "base:raw", "base:nsoartc", "maps on raw images were more reasonable than on NSOARTC composites"),
    "F4": ("trainable_pct", "base", "head", "304,326,632 parameters trainable"),
    "F5": ("relevance_mass", "base", "big", "~160k-parameter ViT gave clean maps"),
}


@pytest.mark.parametrize("finding", sorted(PINNED))
def test_each_claim_keeps_the_source_direction(finding):
    metric, higher, lower, words = PINNED[finding]
    claim = BY_FINDING[finding]
    assert (claim.metric, claim.higher, claim.lower) == (metric, higher, lower)
    assert words in claim.claim


def test_the_table_holds_the_five_findings_once():
    assert [c.finding for c in CLAIMS] == ["F1", "F2", "F3", "F4", "F5"]
    assert "NSOARTC maps more sensible" not in " ".join(c.claim for c in CLAIMS)


def test_answers_survive_degenerate_seeds():
    assert answer(compare([0.9, 0.92], [0.5, 0.52])) == "yes"
    assert answer(compare([0.5, 0.52], [0.9, 0.92])) == "no"
    assert answer(compare([0.9, 0.5], [0.7, 0.72])) == "within noise"
    assert answer(compare([0.9], [0.5, 0.52])) == "not judged"  # one seed: no spread of its own
    assert answer(compare([1.0, 1.0], [1.0, 1.0])) == "within noise"  # identical rates, spread 0
    assert answer(compare([math.nan], [0.5])) == "not judged"
    c = compare([0.0, 0.0], [1.0, 1.0])  # rates of 0 and 1, no spread: real, and the other way
    assert c["real"] and answer(c) == "no"


def records(values: dict[str, list[dict]]) -> dict:
    """Records for Study from per-setting lists of figures (as runs.figures_of would read them)."""
    out = {}
    for setting, runs in values.items():
        for seed, fig in enumerate(runs):
            out[f"study-{setting}-s{seed}"] = {"rev": None, "metrics": {}, "fig": fig,
                                               "params": {"data": {"n_images": 3000}, "train": {"epochs": 10 if setting == "base" else 5}}}
    return out


class FixedStudy(Study):
    def __init__(self, recs):
        super().__init__(recs, None, "study")
        self.figs = {n: r["fig"] for n, r in recs.items()}


@pytest.mark.parametrize("raw,composite,word", [(0.30, 0.10, "yes"), (0.10, 0.30, "no")])
def test_f3_sentence_comes_from_the_table_and_follows_the_data(raw, composite, word, monkeypatch):
    import vitinspect.study.findings as findings

    monkeypatch.setattr(findings, "bytes_at", lambda rev, path: None)
    figs = [{"relevance_mass_raw": raw + d, "relevance_mass_nsoartc": composite + d, "pointing_game_raw": 0.5, "pointing_game_nsoartc": 0.5,
             "baseline": 0.02, "relevance_mass": composite + d, "accuracy": 0.9} for d in (0.0, 0.01, 0.02)]
    text = "\n".join(f3_raw_vs_nsoartc(FixedStudy(records({"base": figs}))))
    assert f"**F3, the source found** {BY_FINDING['F3'].claim}." in text
    assert f"(**{word}**)" in text and "| 3 | 3,000 |" in text  # seeds and data size on every row
    assert ("agrees with the source" if word == "yes" else "contradicts the source") in text


def test_f1_verdict_needs_the_spread_of_both_settings(monkeypatch):
    import vitinspect.study.findings as findings

    monkeypatch.setattr(findings, "json_at", lambda rev, path: None)
    base = [{"macro_f1": v, "xy_confusion": 0.01, "accuracy": 0.9} for v in (0.90, 0.91, 0.92)]
    one = [{"macro_f1": 0.60, "xy_confusion": 0.05, "accuracy": 0.7}]
    text = "\n".join(f1_epochs(FixedStudy(records({"base": base, "epochs5": one}))))
    assert "(**not judged**)" in text and "one seed" in text
    text = "\n".join(f1_epochs(FixedStudy(records({"base": base, "epochs5": one * 3}))))
    assert "(**yes**)" in text


def test_verdict_sentence_names_claim_and_answer():
    c = compare([0.2, 0.21], [0.1, 0.11])
    line = verdict(BY_FINDING["F5"], c, "relevance mass 0.205 against 0.105")
    assert line.startswith("**F5, the source found** a ~160k-parameter ViT gave clean maps")
    assert "real (difference +0.100" in line and line.endswith("(**yes**).")


def test_report_keeps_a_marked_block_whose_runs_it_does_not_hold(tmp_path):
    """A full report rewritten from runs without pt-* experiments keeps the previous NSOARTC-pretrained block,
    marked as kept, instead of replacing it by "Not run"; the overrides of `study run --set` are named."""
    from vitinspect.study.pretrained import PT_BEGIN, PT_END
    from vitinspect.study.report import KEPT, build_report, marked_block

    old = f"# old\n\n{PT_BEGIN}\n## The pretraining (masked autoencoder on unlabeled parts)\n\nold numbers\n{PT_END}\n\n## All runs\n"
    block = marked_block(old, PT_BEGIN, PT_END)
    text = build_report({}, tmp_path, "study", {"data.source": "folders"}, [], {PT_BEGIN: block})
    assert "old numbers" in text and KEPT in text and text.count(PT_BEGIN) == 1
    assert "Base overrides applied to every experiment (`study run --set`): `data.source=folders`." in text
    assert text.index("## The source's claims") < text.index("## F1")
    again = build_report({}, tmp_path, "study", {}, [], {PT_BEGIN: marked_block(text, PT_BEGIN, PT_END)})
    assert again.count(KEPT) == 1  # marked once, however often the report is rewritten


def test_durations_of_a_one_at_a_time_queue():
    from vitinspect.study.runs import durations

    finished = {"a": 110.0, "b": 150.0, "c": 90.0, "old": 10.0}  # c finished first; old predates this run
    assert durations(["a", "b", "c", "old", "failed"], finished, 60.0) == {"a": 20.0, "b": 40.0, "c": 30.0, "old": None, "failed": None}
