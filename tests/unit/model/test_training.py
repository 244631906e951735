"""The train stage at tiny sizes: every strategy, the per-epoch log, checkpoints, DDP with 2 gloo processes.

Resuming after a real kill is tested through dvc, in test_reliability.py.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import BIN, ROOT, TRAINED, train_args, write_params


def read(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("strategy", ["full", "head", "last_blocks", "lora"])
def test_every_strategy_trains_and_counts_what_it_says(trained, strategy):
    out = trained(strategy)
    counts = read(out / "train.json")["parameters"]
    hidden, classes = 32, 4
    if strategy == "full":
        assert counts["trainable"] == counts["total"]
    elif strategy == "head":
        assert counts["trainable"] == (hidden + 1) * classes
    elif strategy == "last_blocks":
        assert (hidden + 1) * classes < counts["trainable"] < counts["total"] / 2
    else:
        assert 0 < counts["trainable"] < counts["total"] / 2
    # The saved model is a plain ViT (LoRA merged), the default conv stem included: the one documented call loads it.
    import torch

    from vitinspect.model.vit import load_trained

    model = load_trained(out / "vit")
    assert model.config.vitinspect_stem == "conv" and set(model.config.id2label.values()) == {"passed", "tilt_x", "tilt_y", "retracted"}
    assert model(pixel_values=torch.zeros(1, 3, 32, 32)).logits.shape == (1, 4)
    weights = load_file(out / "vit" / "model.safetensors")
    assert not any("lora_" in k for k in weights)
    assert read(out / "live" / "metrics.json")["step"] == TRAINED[strategy]["epochs"] - 1


def test_per_epoch_metrics_are_logged_once_per_epoch(trained):
    out = trained("full")
    rows = (out / "live" / "plots" / "metrics" / "val" / "macro_f1.tsv").read_text().strip().splitlines()
    assert rows[0].split("\t") == ["step", "macro_f1"] and len(rows) == 1 + 3
    for name in ("train/loss.tsv", "val/loss.tsv", "val/accuracy.tsv", "val/recall_passed.tsv", "val/recall_tilt_x.tsv"):
        assert len((out / "live" / "plots" / "metrics" / name).read_text().strip().splitlines()) == 4, name


def test_foreign_checkpoints_are_discarded_and_finished_runs_leave_none(trained):
    out = trained("full")  # started beside a checkpoint planted from another fingerprint
    assert read(out / "train_run.json")["resumed"] is False
    assert read(out / "train.json")["epochs"] == 3
    assert not (out / "checkpoints").exists()  # the run was saved: nothing left to resume


@pytest.mark.slow
def test_ddp_two_gloo_processes_one_epoch_and_a_readable_log(tiny_data, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"epochs": 1, "device": "cpu"})
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(ROOT / "stages" / "train.py"), *train_args(tiny_data, tmp_path, params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = read(tmp_path / "train_run.json")
    assert info["world_size"] == 2  # really two processes, not one that ignored torchrun
    assert read(tmp_path / "train.json")["epochs"] == 1
    assert (tmp_path / "vit" / "model.safetensors").exists()
    # What a person reads in the log: one line an epoch (rank 0 only), numbers as numbers, no raw dicts or bars.
    log = proc.stdout + proc.stderr
    epochs = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 1/1: train loss "), log[-3000:]
    assert "{'" not in log and "Writing model shards" not in log and "%|" not in log, log[-3000:]
