"""End to end with real dvc in a temporary git repo, at tiny params."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

from conftest import run

pytestmark = pytest.mark.slow
STAGES = ("prepare", "nsoartc", "train", "evaluate", "attention", "audit")


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def project(built_project, tmp_path):
    """A private copy of the reproduced project (git history and DVC cache included)."""
    dest = tmp_path / "proj"
    shutil.copytree(built_project, dest, symlinks=True)
    return dest


def set_param(root, key, value):
    path = root / "params.yaml"
    d = yaml.safe_load(path.read_text())
    *parents, leaf = key.split(".")
    node = d
    for k in parents:
        node = node[k]
    node[leaf] = value
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def test_repro_writes_every_output_and_a_second_repro_does_nothing(built_project):
    for path in ("data/parts", "data/nsoartc", "models/vit/model.safetensors", "models/vit_init/model.safetensors",
                 "metrics/data.json", "metrics/train.json", "metrics/eval.json", "metrics/attention.json", "metrics/audit.json",
                 "plots/samples.png", "plots/nsoartc.png", "plots/confusion.json", "plots/confusion.png", "plots/predictions.csv",
                 "plots/audit_change.png", "reports/audit.md", "dvclive/train/metrics.json"):
        assert (built_project / path).exists(), path
    assert list((built_project / "plots/attention").glob("*.png"))
    out = run("dvc repro", built_project).stdout
    assert ran(out) == set()
    assert "up to date" in run("dvc status", built_project).stdout


def test_nsoartc_window_reruns_nsoartc_but_not_prepare(project):
    set_param(project, "nsoartc.window", 3)
    status = run("dvc status", project).stdout
    assert "nsoartc" in status and "prepare:" not in status
    out = run("dvc repro", project).stdout
    assert "nsoartc" in ran(out) and "prepare" not in ran(out)


def test_passed_ratio_reruns_from_prepare(project):
    set_param(project, "data.passed_ratio", 0.25)
    out = run("dvc repro prepare nsoartc", project).stdout  # the data stages; the rest follow the same way
    assert {"prepare", "nsoartc"} <= ran(out)


def test_evaluate_params_rerun_evaluate_alone(project):
    set_param(project, "evaluate.batch_size", 7)
    assert ran(run("dvc repro", project).stdout) == {"evaluate"}


def test_attention_params_rerun_attention_alone(project):
    set_param(project, "attention.head_fusion", "max")
    assert ran(run("dvc repro", project).stdout) == {"attention"}


def test_exp_run_epochs_skips_the_data_stages(project):
    out = run("dvc exp run -S train.epochs=1", project).stdout
    assert "train" in ran(out) and not {"prepare", "nsoartc"} & ran(out)
    table = run("dvc exp show --md --no-pager", project).stdout
    assert "train.epochs" in table and "macro_f1" in table


def test_eval_json_agrees_with_sklearn_from_predictions_csv(built_project):
    ev = json.loads((built_project / "metrics/eval.json").read_text())
    cm = json.loads((built_project / "metrics/confusion_matrix.json").read_text())
    table = pd.read_csv(built_project / "plots/predictions.csv")
    classes = cm["labels"]
    y, p = table["label"].to_numpy(), table["predicted"].to_numpy()
    assert ev["n"] == len(table)
    assert ev["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-6)
    assert ev["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p), abs=1e-6)
    assert ev["macro_f1"] == pytest.approx(f1_score(y, p, labels=classes, average="macro", zero_division=0), abs=1e-6)
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    for i, c in enumerate(classes):
        assert ev["per_class"][c]["recall"] == pytest.approx(rec[i], abs=1e-6)
        assert ev["per_class"][c]["precision"] == pytest.approx(prec[i], abs=1e-6)
        assert ev["per_class"][c]["support"] == sup[i]
    defective = y != "passed"
    assert ev["escape_rate"] == pytest.approx(np.mean(p[defective] == "passed"), abs=1e-6)
    assert ev["false_reject_rate"] == pytest.approx(np.mean(p[~defective] != "passed"), abs=1e-6)
    assert ev["xy_confusion"]["tilt_x_as_tilt_y"] == pytest.approx(np.mean(p[y == "tilt_x"] == "tilt_y"), abs=1e-6)
    assert np.asarray(cm["counts"]).sum() == len(table)
    records = json.loads((built_project / "plots/confusion.json").read_text())
    assert len(records) == len(table) and set(records[0]) == {"actual", "predicted"}
    # The probabilities in the CSV give the predictions.
    probs = table[[f"p_{c}" for c in classes]].to_numpy()
    assert (np.asarray(classes)[probs.argmax(1)] == p).all()
