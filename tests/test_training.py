"""The train stage at tiny sizes: every strategy, resume after interruption, DDP with 2 gloo processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from conftest import BIN, ROOT, load_stage, train_args, write_params


def read(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("strategy", ["full", "head", "last_blocks", "lora"])
def test_every_strategy_trains_and_counts_what_it_says(tiny_data, in_tmp, tmp_path, strategy):
    params = write_params(tmp_path / "params.yaml", finetune={"strategy": strategy, "last_blocks": 1}, train={"epochs": 1})
    load_stage("train").main(train_args(tiny_data, tmp_path, params))
    summary = read(tmp_path / "train.json")
    counts = summary["parameters"]
    hidden, classes = 32, 4
    if strategy == "full":
        assert counts["trainable"] == counts["total"]
    elif strategy == "head":
        assert counts["trainable"] == (hidden + 1) * classes
    elif strategy == "last_blocks":
        assert (hidden + 1) * classes < counts["trainable"] < counts["total"] / 2
    else:
        assert 0 < counts["trainable"] < counts["total"] / 2
    # The saved model is a plain ViT (LoRA merged) with its processor: what `pipeline` loads.
    from transformers import pipeline

    clf = pipeline("image-classification", model=str(tmp_path / "vit"))
    from PIL import Image
    import numpy as np

    out = clf(Image.fromarray(np.zeros((32, 32, 3), np.uint8)))
    assert {o["label"] for o in out} <= {"passed", "tilt_x", "tilt_y", "retracted"}
    weights = load_file(tmp_path / "vit" / "model.safetensors")
    assert not any("lora_" in k for k in weights)
    assert (tmp_path / "live" / "metrics.json").exists()


def test_per_epoch_metrics_are_logged_once_per_epoch(tiny_data, in_tmp, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"epochs": 3})
    load_stage("train").main(train_args(tiny_data, tmp_path, params))
    rows = (tmp_path / "live" / "plots" / "metrics" / "val" / "macro_f1.tsv").read_text().strip().splitlines()
    assert rows[0].split("\t") == ["step", "macro_f1"] and len(rows) == 1 + 3
    for name in ("train/loss.tsv", "val/loss.tsv", "val/accuracy.tsv", "val/recall_passed.tsv", "val/recall_tilt_x.tsv"):
        assert len((tmp_path / "live" / "plots" / "metrics" / name).read_text().strip().splitlines()) == 4, name


def test_resume_after_interruption_gives_identical_weights(tiny_data, in_tmp, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"epochs": 3})
    stage = load_stage("train")
    whole = tmp_path / "whole"
    stage.main(train_args(tiny_data, whole, params))
    # The interrupted run: the same run killed after its epoch-2 checkpoint.
    cut = tmp_path / "cut"
    shutil.copytree(whole / "checkpoints", cut / "checkpoints")
    steps = sorted((p for p in (cut / "checkpoints").iterdir() if p.name.startswith("checkpoint-")), key=lambda p: int(p.name.split("-")[1]))
    assert len(steps) == 2
    shutil.rmtree(steps[-1])
    stage.main(train_args(tiny_data, cut, params))
    assert read(cut / "train_run.json")["resumed"] is True
    assert (whole / "train.json").read_bytes() == (cut / "train.json").read_bytes()
    a, b = load_file(whole / "vit" / "model.safetensors"), load_file(cut / "vit" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert (whole / "live" / "plots" / "metrics" / "val" / "loss.tsv").read_text() == (cut / "live" / "plots" / "metrics" / "val" / "loss.tsv").read_text()


def test_checkpoints_of_other_params_are_not_resumed(tiny_data, in_tmp, tmp_path):
    stage = load_stage("train")
    stage.main(train_args(tiny_data, tmp_path, write_params(tmp_path / "a.yaml", train={"epochs": 1})))
    stage.main(train_args(tiny_data, tmp_path, write_params(tmp_path / "b.yaml", train={"epochs": 1, "lr": 0.001})))
    assert read(tmp_path / "train_run.json")["resumed"] is False


@pytest.mark.slow
def test_ddp_two_gloo_processes_one_epoch(tiny_data, in_tmp, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"epochs": 1, "device": "cpu"})
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(ROOT / "stages" / "train.py"), *train_args(tiny_data, tmp_path, params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read(tmp_path / "train.json")
    assert summary["epochs"] == 1
    assert (tmp_path / "vit" / "model.safetensors").exists()
    assert sys.executable  # the same interpreter's torchrun
