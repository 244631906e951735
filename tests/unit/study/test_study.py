"""The study machinery end to end at toy sizes: two tiny experiments, then every section of the report."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import TESTS
from vitinspect.study.claims import compare
from vitinspect.study.findings import spread
from vitinspect.study.plan import plan
from vitinspect.study.runs import figures_of


def test_f6_plan_runs_the_peer_settings_with_seeds_and_only_the_stages_it_needs():
    exps = plan("f6", seeds=3)
    assert [e.name for e in exps] == ["study-base-s0", "study-base-s1", "study-base-s2", "study-ratio0.2-s0",
                                      "study-n1000-s0", "study-n1000-s1", "study-n1000-s2"]
    assert all(e.targets == ("evaluate", "baseline") for e in exps)
    assert exps[3].overrides["data.passed_ratio"] == 0.2 and exps[4].overrides["data.n_images"] == 1000
    assert "n1000" in {e.setting for e in plan("full", seeds=3)}


def test_plan_covers_the_five_findings():
    names = {e.setting for e in plan("full", seeds=3)}
    assert {"base", "epochs5", "ratio0.05", "ratio0.1", "ratio0.2", "raw", "head", "last_blocks", "lora", "big"} <= names
    assert sum(e.setting == "base" for e in plan("full", seeds=3)) == 3
    assert "pretrained" in {e.setting for e in plan("full", 2, pretrained="ckpt")}
    assert len({e.name for e in plan("full", 3)}) == len(plan("full", 3))
    # Every experiment reproduces what the findings read (attention, audit, the peer), never the inspection bundle;
    # the toy plan's report (F1, F6, all runs) reads no audit.
    assert all({"evaluate", "attention", "audit", "baseline"} == set(e.targets) for e in plan("full", 2))
    assert all({"evaluate", "attention", "baseline"} == set(e.targets) for e in plan("toy"))


def test_spread_and_judgement():
    assert spread([0.8, 0.9, 0.85]) == pytest.approx(0.05)
    # judged by the larger spread of the two settings compared, never by the baseline's alone
    assert compare([0.95, 0.96], [0.84, 0.86])["real"] is True
    assert compare([0.95, 0.75], [0.84, 0.86])["real"] is False  # the setting's own spread (±0.10) swallows +0.0
    assert compare([0.95], [0.84, 0.86])["real"] is None  # one seed: no spread of its own, not judged
    assert np.isnan(spread([0.8]))
    assert figures_of({"metrics": {}})["accuracy"] != figures_of({"metrics": {}})["accuracy"]  # NaN when absent


def test_study_panels_give_each_rate_its_own_axis_and_draw_the_seed_range():
    from vitinspect.visualization.figures import study_panels

    fig = study_panels([0.02, 0.2], {"passed_recall": [[0.5, 0.6, 0.7], [0.99]], "escape_rate": [[0.001, 0.003], [0.008]]},
                       "passed ratio", percent={"escape_rate"})
    recall_ax, escape_ax = fig.axes[:2]
    assert escape_ax.get_ylim()[1] < 1.5  # 0.1 % .. 0.8 % on its own axis, in %, not squashed on 0..1
    assert recall_ax.get_ylim()[1] > 1.0
    assert len(recall_ax.containers) == 1 and len(escape_ax.containers) == 1  # one seed-range bar where seeds exist


@pytest.fixture(scope="module")
def fixed_report(tmp_path_factory):
    """The report rendered from a fixed set of collected runs (tests/study_records.py: each run a commit of a
    throwaway repo, read back with `git show` as after `make study`), the 2-D runs and the Blender ones:
    (records, text, figure folder, the repo). Committed once for the tests below."""
    import os

    from study_records import BLENDER, SETTINGS, committed_records

    from vitinspect.study.report import build_report

    root = tmp_path_factory.mktemp("fixed")
    records = committed_records(root / "repo", {**SETTINGS, **BLENDER}, contrast=True)
    here = os.getcwd()
    os.chdir(root / "repo")
    try:
        figures = root / "study"
        figures.mkdir()
        yield records, build_report(records, figures, "study"), figures, root
    finally:
        os.chdir(here)


def test_report_bytes_from_fixed_runs_match_the_golden_report(fixed_report):
    """reports/study.md from the fixed runs is byte for byte tests/golden/study.md (first the report study.py
    wrote before it was split into the study package; regenerated for issue 25's claims table, seeds and sizes,
    and for issue 26's Blender section). Every section has numbers here, none says "Not run"; regenerate the
    golden file only for a change meant to alter the report."""
    records, text, figures, _ = fixed_report
    golden = TESTS / "golden" / "study.md"
    assert "Not run in this plan" not in text
    assert text.encode() == golden.read_bytes()
    assert sorted(p.name for p in figures.iterdir()) == ["blender_f1_confusion.png", "blender_f2_ratio.png", "f1_confusion.png",
                                                         "f2_ratio.png", "pt_label_efficiency.png",
                                                         "pt_reconstruction_pt-big.png", "pt_reconstruction_pt-full.png",
                                                         "pt_reconstruction_ptraw-big.png", "pt_reconstruction_ptraw-full.png"]


def test_blender_runs_get_their_own_section_and_leave_the_2d_findings_as_they_were(fixed_report, monkeypatch):
    """Issue 26: `study run --plan blender` experiments (study-blender-<setting>-s<seed>) are judged as a study of
    their own, after a table that sets each finding's answer on both renderers side by side. The 2-D findings
    read none of them: without them the report down to its table of runs is the same but for the count."""
    from vitinspect.study.report import build_report
    from vitinspect.study.claims import BY_FINDING, answer, compare
    from vitinspect.study.renderers import markers

    records, text, _, root = fixed_report
    monkeypatch.chdir(root / "repo")
    begin, end = markers("blender")
    head, rest = text.split(begin + "\n")
    block, tail = rest.split(end + "\n")
    flat_records = {n: r for n, r in records.items() if not n.startswith("study-blender-")}
    (root / "flat").mkdir(exist_ok=True)
    flat = build_report(flat_records, root / "flat", "flat").replace("](flat/", "](study/")
    assert (head + tail.lstrip("\n")).split("## All runs")[0] == \
        flat.split("## All runs")[0].replace(f"{len(flat_records)} experiments", f"{len(records)} experiments", 1)
    assert "| study-blender-raw-s2 |" in tail

    def answer_of(finding, prefix):
        c = BY_FINDING[finding]
        side = lambda ref: [figures_of(records[n])[c.metric + ("_" + ref.split(":")[1] if ":" in ref else "")]  # noqa: E731
                            for n in records if n.startswith(f"study-{prefix}{ref.split(':')[0]}-s")]
        return answer(compare(side(c.higher), side(c.lower)))

    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in block.splitlines() if line.startswith("| F")}
    assert sorted(rows) == ["F1", "F2", "F3", "F6"]
    for finding in ("F1", "F2", "F3"):
        two_d, blender = answer_of(finding, ""), answer_of(finding, "blender-")
        assert rows[finding][4:6] == [two_d, blender], finding
        expected = "cannot tell" if "not judged" in (two_d, blender) else "no" if two_d == blender else "**yes**"
        assert rows[finding][6].startswith(expected), finding
    assert "| defect contrast in the composite, tilt_y | 3.490 | 1.670 |" in block
    assert "| training seeds of the baseline | 3 | 3 |" in block
    for heading in ("### F1: does 10 epochs beat 5? (Blender parts)", "### F2", "### F3", "### F6"):
        assert heading in block
    assert "## F4" not in block


def test_a_renderer_plan_rewrites_its_block_alone_and_keeps_the_2d_column(fixed_report, monkeypatch, tmp_path):
    """`study run --plan blender` reports from the Blender experiments alone (the 2-D runs may live elsewhere): the
    report's 2-D findings stay byte for byte, the Blender block is rebuilt, and its side-by-side 2-D column is the
    report's as it was."""
    import vitinspect.study.report as report
    from vitinspect.study.renderers import markers

    records, text, figures, root = fixed_report
    monkeypatch.chdir(root / "repo")
    blender = {n: r for n, r in records.items() if n.startswith("study-blender-")}
    out = tmp_path / "study.md"
    begin, end = markers("blender")
    old_block = text.split(begin)[1].split(end)[0]
    # the report as it was, with a stale Blender block whose 2-D column the rewrite must keep
    stale = old_block.replace("| ViT test accuracy, baseline |", "| ViT test accuracy, baseline (stale) |")
    out.write_text(text.replace(old_block, stale))
    (tmp_path / "study").mkdir()
    monkeypatch.setattr(report, "collect", lambda all_commits=False: blender)
    report.write_report(out, only="renderers")
    new = out.read_text()
    assert new.split(begin)[0] == text.split(begin)[0] and new.split(end)[1] == text.split(end)[1]  # the rest as it was
    block = new.split(begin)[1].split(end)[0]
    assert "(stale)" not in block and "The 2-D column is the report's as it was" in block
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in block.splitlines() if line.startswith("| F")}
    old_rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in old_block.splitlines() if line.startswith("| F")}
    for finding in ("F1", "F2", "F3", "F6"):
        assert rows[finding][2] == old_rows[finding][2] and rows[finding][4] == old_rows[finding][4], finding
        assert rows[finding][3] == old_rows[finding][3] and rows[finding][5] == old_rows[finding][5], finding
    assert "| training seeds of the baseline | 3 | 3 |" in block
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["blender_f1_confusion.png", "blender_f2_ratio.png"]
