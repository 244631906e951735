"""F6 with the CNN peer: its columns, and the paired comparison against the stronger peer; runs before it say n/a."""

from __future__ import annotations

import pytest

from study_records import committed_records

from vitinspect.study.findings import f6_answer, f6_section, stronger_peer
from vitinspect.study.plan import by_setting

F6_RUNS = {"base": (2, {}), "n1000": (1, {"data": {"n_images": 1000}})}


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("f6")
    return {cnn: (root / f"cnn{cnn}", committed_records(root / f"cnn{cnn}", F6_RUNS, cnn=cnn)) for cnn in (True, False)}


def _f6(repo, records, monkeypatch) -> str:
    monkeypatch.chdir(repo)  # the study reads each run with git show in the working directory
    return "\n".join(f6_section(records, by_setting(records)))


def test_f6_shows_the_cnn_and_judges_the_vit_against_the_stronger_peer(repos, monkeypatch):
    text = _f6(*repos[True], monkeypatch)
    assert "| CNN accuracy |" in text and "| CNN macro-F1 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| default data | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] != "n/a" and float(cells[5].split()[0]) > 0.8 and cells[8] == "0.970 ±0.000"  # CNN accuracy, CNN macro-F1
    # The CNN (macro-F1 0.97) is stronger than every fixed SVM: the paired intervals are against it.
    assert "**default data, macro-F1** (against the CNN)" in text and "**n_images 1000, accuracy** (against the CNN)" in text
    assert "only the CNN)" in text and "against the SVM" not in text
    assert "**Answer: does the ViT beat the stronger peer?**" in text


def test_f6_of_runs_before_the_cnn_says_n_a_and_compares_with_the_svm(repos, monkeypatch):
    text = _f6(*repos[False], monkeypatch)
    row = next(line for line in text.splitlines() if line.startswith("| default data | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "n/a" and cells[8] == "n/a"
    assert "(against the SVM)" in text and "against the CNN" not in text and "only the SVM)" in text


def test_stronger_peer_and_the_answer_name_the_peer():
    svm, cnn = {"macro_f1": 0.8}, {"macro_f1": 0.9}
    assert stronger_peer([{"svm": svm, "cnn": cnn}]) == ("CNN", "paired_cnn")
    assert stronger_peer([{"svm": cnn, "cnn": svm}]) == ("SVM", "paired")
    assert stronger_peer([{"svm": svm, "cnn": None}, {"svm": svm}]) == ("SVM", "paired")  # older runs: no CNN figures
    assert stronger_peer([{"svm": None, "cnn": cnn}]) == ("CNN", "paired_cnn")
    assert "no: the CNN is ahead in every seed (2 of 2)" in f6_answer([("default data, macro-F1", 0, 2, 2, "", "CNN")])
    assert "no: the SVM is ahead in every seed (1 of 1)" in f6_answer([("n_images 1000", 0, 1, 1, "")])


def test_f6_of_runs_since_the_gate_reads_the_vits_argmax_figures_from_the_report(repos, monkeypatch):
    # Since the gate, metrics/eval.json's headline keys are the verdict's and its classifier_ keys hold the operating
    # point's figures and the defect classes' macro-F1 only: F6 takes accuracy, macro-F1 and passed recall at argmax
    # from reports/evaluation.json, as for the peers, and escape and false-reject rates at the operating point.
    repo, records = repos[True]
    before = _f6(repo, records, monkeypatch)
    gate_era = {}
    for name, r in records.items():
        m = r["metrics"]["metrics/eval.json"]
        eval_json = {"classifier_accuracy": 0.5, "classifier_macro_f1_defects": 0.5, "classifier_threshold": 0.7,
                     "classifier_escapes_per_million": m["escape_rate"] * 1e6, "classifier_false_reject_rate": m["false_reject_rate"],
                     "escapes_per_million": 0.0, "false_reject_rate": 0.0, "gate_threshold": 1.0, "rejected_per_1000": 0.0}
        gate_era[name] = {**r, "metrics": {**r["metrics"], "metrics/eval.json": eval_json}}
    after = _f6(repo, gate_era, monkeypatch)
    row = lambda text: next(line for line in text.splitlines() if line.startswith("| default data | 2 |"))  # noqa: E731
    assert row(after) == row(before) and "n/a" not in row(after)
