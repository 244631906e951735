"""The study machinery end to end at toy sizes: two tiny experiments, then every section of the report."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import BIN

pytestmark = pytest.mark.slow


def test_toy_study_writes_every_section(toy_study):
    """`vitinspect.study run --plan toy` through `dvc queue` (conftest: begun in the background as soon as
    the tiny project is reproduced)."""
    proj = toy_study
    report = (proj / "reports" / "study.md").read_text()
    for heading in ("## F1", "## F2", "## F3", "## F4", "## F5", "## F6", "## All runs"):
        assert heading in report, heading
    assert "study-base-s0" in report and "study-epochs5-s0" in report
    assert "| 5 epochs |" in report and "| 2 epochs (baseline) |" in report
    assert (proj / "reports" / "study" / "f1_confusion.png").exists()
    # F2, F4, F5, and the four pretrained-start sections (pretraining, F4, label efficiency, F5) the toy plan does not
    # run; F3 is the baseline's own maps on both inputs
    assert report.count("Not run in this plan.") == 7
    assert "**F3, the source found** with the fine-tuned model, maps on raw images were more reasonable" in report
    assert "| default data | 1 |" in report and "ahead beyond the interval in" in report  # F6 from the toy baseline run
    # `--set train.weight_decay=0.01`: applied to every experiment, named in the report, its wall time recorded
    assert "Base overrides applied to every experiment (`study run --set`): `train.weight_decay=0.01`." in report
    timing = json.loads((proj / "reports" / "study.runs.json").read_text())["runs"]
    assert timing[-1]["plans"] == ["toy"] and timing[-1]["set"] == {"train.weight_decay": "0.01"}
    assert timing[-1]["experiments"] == 2 and timing[-1]["wall_s"] > 0
    shown = subprocess.run([str(BIN / "dvc"), "exp", "show", "--json"], cwd=proj, capture_output=True, text=True, check=True).stdout
    exps = [e for base in json.loads(shown) for e in base.get("experiments") or []]
    params = {r["name"]: r["data"]["params"]["params.yaml"]["data"] for e in exps for r in e["revs"] if (r.get("name") or "").startswith("study-")}
    assert sorted(params) == ["study-base-s0", "study-epochs5-s0"]
    assert all(p["train"]["weight_decay"] == 0.01 for p in params.values())


