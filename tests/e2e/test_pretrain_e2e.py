"""MAE pretraining: the encoder that train loads is the one pretrained, loss falls, and the default pays nothing."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import run, would_run

pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]


@pytest.mark.slow
def test_pretrain_costs_only_when_used(project):
    """Default: pretrain.* edits rerun only the placeholder stage; switching source reaches pretrain and what
    reads it (what `dvc repro --dry` lists), and the stage then pretrains for real under dvc. That train starts
    from its encoder: test_stage_pretrains_and_train_starts_from_it; the whole `dvc exp run -S
    model.source=pretrain` at the defaults is timed in docs/pretraining.md."""
    proj = project
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["pretrain"]["epochs"] = 5
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # validate reruns on any params change (same bytes out); pretrain rewrites the same placeholders; nothing else runs.
    assert would_run(proj) == {"validate", "pretrain"}

    params["model"]["source"], params["pretrain"]["epochs"] = "pretrain", 2
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert would_run(proj) == {"validate", "pretrain", "train", "audit"}
    out = run("dvc repro pretrain", proj).stdout
    assert set(re.findall(r"Running stage '([^']+)'", out)) == {"validate", "pretrain"}
    assert (proj / "models/pretrain/model.safetensors").exists()
    assert (proj / "dvclive/pretrain/plots/metrics/reconstruction_loss.tsv").read_text().count("\n") == 3
    assert "logs/" not in run("git status --porcelain", proj).stdout


