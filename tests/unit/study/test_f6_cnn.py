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
