"""MAE pretraining: the encoder that train loads is the one pretrained, loss falls, and the default pays nothing."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, load_stage, run, tiny_dict, train_args, write_params
from vitinspect.params import ParamsError, params_from_dict

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]


def test_pretrain_seed_must_differ_from_the_data_seed():
    d = tiny_dict(model={"source": "pretrain"}, pretrain={"seed": 0})
    with pytest.raises(ParamsError, match="pretrain.seed .0. must differ from data.seed"):
        params_from_dict(d)
    params_from_dict(tiny_dict(model={"source": "scratch"}, pretrain={"seed": 0}))  # only checked when used


def test_tiny_mae_loss_falls_and_every_encoder_tensor_reaches_the_classifier(tmp_path, tiny_params):
    """A few steps of the real Trainer loop; then the pretrained path loads each encoder tensor, bit for bit."""
    from vitinspect.model import InputSpec, load_pretrained
    from vitinspect.pretrain import ImageDataset, build_mae, encoder_as_vit, mae_config, make_mae_trainer, unlabeled_views

    q = tiny_params.pretrain
    views = unlabeled_views(tiny_params.data, 64, q.seed)
    images = views[:, 0]  # the centre view (raw); the composite path is covered by the stage test
    mae = build_mae(mae_config(tiny_params.model, 32, q), q.seed)
    init = {k: v.clone() for k, v in mae.vit.state_dict().items()}
    trainer = make_mae_trainer(mae, ImageDataset(images), InputSpec(32), dataclasses.replace(q, epochs=4, device="cpu"), tmp_path / "t")
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses

    vit = encoder_as_vit(mae)
    vit.save_pretrained(tmp_path / "enc")
    model, spec = load_pretrained(str(tmp_path / "enc"), CLASSES)
    pretrained = mae.vit.state_dict()
    loaded = {k.removeprefix("vit."): v for k, v in model.state_dict().items() if k.startswith("vit.")}
    assert set(loaded) == set(pretrained) and len(pretrained) == 4 + 16 * tiny_params.model.layers + 2
    for k, v in pretrained.items():
        assert torch.equal(loaded[k], v), k
    moved = [k for k in pretrained if not torch.equal(pretrained[k], init[k])]
    assert len(moved) >= len(pretrained) - 1  # training moved them (all but the fixed sin-cos position table)
    assert set(model.state_dict()) - {f"vit.{k}" for k in pretrained} == {"classifier.weight", "classifier.bias"}
    assert model.config.num_labels == len(CLASSES)


def test_encoder_copy_refuses_a_mismatch(tiny_params):
    from vitinspect.pretrain import build_mae, encoder_as_vit, mae_config

    mae = build_mae(mae_config(tiny_params.model, 32, tiny_params.pretrain), 0)
    mae.vit.layers[0].mlp.fc1 = torch.nn.Linear(tiny_params.model.hidden_size, 8)  # a different shape
    with pytest.raises(RuntimeError, match="shape mismatch"):
        encoder_as_vit(mae)


def stage_args(d, out):
    return ["--unit-space", str(d / "unit.npz"), "--out", str(out / "pretrain"), "--live", str(out / "live_pt"), "--figure", str(out / "pretrain.png")]


def test_scratch_writes_constant_placeholders_without_torch(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outs = []
    for epochs in (3, 7):  # pretrain.* changes do not change the placeholders
        p = write_params(tmp_path / f"p{epochs}.yaml", pretrain={"epochs": epochs})
        code = ("import sys, runpy; sys.argv = ['pretrain.py'] + sys.argv[1:]; "
                "runpy.run_path(sys.argv[0].replace('pretrain.py', %r), run_name='__main__'); "
                "assert 'torch' not in sys.modules, 'placeholder imported torch'" % str(ROOT / "stages" / "pretrain.py"))
        out = tmp_path / f"o{epochs}"
        proc = subprocess.run([sys.executable, "-c", code, "--params", str(p), *stage_args(tiny_data, out)],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append({f.relative_to(out).as_posix(): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()})
    assert outs[0] == outs[1] and "pretrain/placeholder.json" in outs[0] and "pretrain.png" in outs[0]


def test_stage_pretrains_and_train_starts_from_it(tiny_data, tmp_path, monkeypatch):
    """The stage on NSOARTC composites; train with model.source: pretrain loads exactly its encoder."""
    from safetensors.torch import load_file
    from transformers import ViTModel

    monkeypatch.chdir(tmp_path)
    p = write_params(tmp_path / "params.yaml", model={"source": "pretrain"}, train={"epochs": 1})
    load_stage("pretrain").main(["--params", str(p), *stage_args(tiny_data, tmp_path)])
    curve = (tmp_path / "live_pt/plots/metrics/reconstruction_loss.tsv").read_text().split()
    losses = [float(x) for x in curve[3::2]]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert (tmp_path / "pretrain.png").stat().st_size > 5000
    assert json.loads((tmp_path / "live_pt/run.json").read_text())["images_per_second"] > 0
    pretrained = ViTModel.from_pretrained(tmp_path / "pretrain").state_dict()

    load_stage("train").main(["--pretrained", str(tmp_path / "pretrain")] + train_args(tiny_data, tmp_path, p))
    init = load_file(tmp_path / "vit_init/model.safetensors")
    from vitinspect.model import load_trained

    started = load_trained(tmp_path / "vit_init").state_dict()
    assert len(init) == len(started)
    for k, v in pretrained.items():
        assert torch.equal(started[f"vit.{k}"], v), k
    assert {k for k in started if not k.startswith("vit.")} == {"classifier.weight", "classifier.bias"}


def test_labelled_subset_is_stratified_and_seeded():
    from vitinspect.dataset import labelled_subset

    labels = np.array([0] * 5 + [1] * 100 + [2] * 95)
    keep = labelled_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[keep]).tolist() == [1, 10, 10]
    assert np.array_equal(keep, labelled_subset(labels, 0.1, seed=3))
    assert not np.array_equal(keep, labelled_subset(labels, 0.1, seed=4))
    assert len(labelled_subset(labels, 1.0, 0)) == 200


@pytest.mark.slow
def test_pretrain_costs_only_when_used(built_project, tmp_path):
    """Default: pretrain.* edits rerun only the placeholder stage; switching source reruns pretrain and what follows."""
    proj = tmp_path / "proj"
    shutil.copytree(built_project, proj, symlinks=True)
    assert "up to date" in run("dvc status", proj).stdout
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["pretrain"]["epochs"] = 5
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(re.findall(r"Running stage '([^']+)'", run("dvc repro", proj).stdout)) == {"pretrain"}
    assert "up to date" in run("dvc status", proj).stdout
    run("git add -A && git commit -qm 'pretrain epochs'", proj)

    out = run("dvc exp run -S model.source=pretrain -S pretrain.epochs=2", proj).stdout
    assert set(re.findall(r"Running stage '([^']+)'", out)) == {"pretrain", "train", "evaluate", "attention", "audit"}
    assert (proj / "models/pretrain/model.safetensors").exists()
    assert (proj / "dvclive/pretrain/plots/metrics/reconstruction_loss.tsv").read_text().count("\n") == 3
    assert json.loads((proj / "metrics/audit.json").read_text())["model"]["source"] == "pretrain"
