"""The classical peer: RT features per terminal cell, their unit space, the fitted SVM and its safe loading."""

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
def test_baseline_json_has_exactly_the_keys_of_eval_json_end_to_end(built_project):
    ev = json.loads((built_project / "metrics/eval.json").read_text())
    peer = json.loads((built_project / "metrics/baseline.json").read_text())
    assert _key_paths(peer) == _key_paths(ev)
    records = json.loads((built_project / "plots/baseline_confusion.json").read_text())
    vit_records = json.loads((built_project / "plots/confusion.json").read_text())
    assert len(records) == len(vit_records)  # the same test split
    report = json.loads((built_project / "reports/baseline.json").read_text())
    assert report["svm"]["test"] == peer
    for name in ("svm", "logistic"):
        assert load_peer(built_project / "models/baseline" / f"{name}.joblib", report["models"][name]["sha256"])


@pytest.mark.slow
def test_baseline_params_rerun_baseline_alone_and_train_params_never_rerun_it(project):
    from functools import partial

    import yaml

    from conftest import run, would_run

    proj = project

    def set_params(**changes):
        d = yaml.safe_load((proj / "params.yaml").read_text())
        for key, value in changes.items():
            *parents, leaf = key.split(".")
            node = d
            for k in parents:
                node = node[k]
            node[leaf] = value
        (proj / "params.yaml").write_text(yaml.safe_dump(d, sort_keys=False))

    dry = partial(would_run, proj)  # what `dvc repro --dry` lists
    set_params(**{"baseline.class_weight": "balanced"})
    assert dry() == {"validate", "baseline"}  # validate checks every params change, alone
    run("git checkout -- params.yaml", proj)
    set_params(**{"train.epochs": 1, "train.lr": 0.01, "train.class_weighting": "balanced"})
    stages = dry()
    assert "train" in stages and "baseline" not in stages


