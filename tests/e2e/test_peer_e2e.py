"""The peers: RT features per terminal cell, their unit space, the fitted SVM and its safe loading; the CNN peer."""

from __future__ import annotations

import json

import pytest

from vitinspect.evaluation.rt_peer import load_peer


pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


def _key_paths(d, prefix=""):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _key_paths(v, prefix + k + ".")
    return out


@pytest.mark.slow
def test_baseline_json_has_the_keys_of_eval_json_s_classifier_end_to_end(built_project):
    ev = json.loads((built_project / "metrics/eval.json").read_text())
    peer = json.loads((built_project / "metrics/baseline.json").read_text())
    # The peer is a classifier: its headline keys are the ViT classifier's (eval.json's classifier_ keys), so
    # make peer and dvc metrics diff set like beside like; the combined verdict's keys are the gate's, not the peer's.
    classifier = {k.removeprefix("classifier_") for k in _key_paths(ev) if k.startswith("classifier_")}
    assert classifier and classifier <= _key_paths(peer), classifier - _key_paths(peer)
    records = json.loads((built_project / "plots/baseline_confusion.json").read_text())
    vit_records = json.loads((built_project / "plots/confusion.json").read_text())
    assert len(records) == len(vit_records)  # the same test split
    report = json.loads((built_project / "reports/baseline.json").read_text())
    assert report["svm"]["test"] == peer
    for name in ("svm", "logistic"):
        assert load_peer(built_project / "models/baseline" / f"{name}.joblib", report["models"][name]["sha256"])
    # The CNN peer: the SVM's keys exactly, the same test parts, its weights inside models/baseline.
    from vitinspect.model.cnn_peer import load_cnn

    cnn = json.loads((built_project / "metrics/baseline_cnn.json").read_text())
    assert set(cnn) == set(peer) and cnn["threshold"] == report["cnn"]["operating_point"]["threshold"]
    assert len(json.loads((built_project / "plots/baseline_cnn_confusion.json").read_text())) == len(vit_records)
    assert load_cnn(built_project / "models/baseline" / "cnn").config.widths == report["cnn"]["widths"]


@pytest.mark.slow
def test_baseline_params_rerun_baseline_alone_and_train_params_never_rerun_it(project):
    from functools import partial

    from conftest import edit_params, run, would_run

    proj = project

    set_params = partial(edit_params, proj / "params.yaml")

    dry = partial(would_run, proj)  # what `dvc repro --dry` lists
    set_params(**{"baseline.class_weight": "balanced"})
    assert dry() == {"validate", "baseline"}  # validate checks every params change, alone
    run("git checkout -- params.yaml", proj)
    set_params(**{"baseline.cnn.epochs": 1})  # the CNN peer's settings too: baseline alone, never train
    assert dry() == {"validate", "baseline"}
    run("git checkout -- params.yaml", proj)
    set_params(**{"train.epochs": 1, "train.lr": 0.01, "train.class_weighting": "balanced"})
    stages = dry()
    assert "train" in stages and "baseline" not in stages


