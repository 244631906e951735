"""MAE pretraining: the encoder that train loads is the one pretrained, loss falls, and the default pays nothing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, load_stage, tiny_dict, train_args, write_params
from vitinspect.config.params import ParamsError, params_from_dict

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]


def test_pretrain_seed_must_differ_from_the_data_seed():
    d = tiny_dict(model={"source": "pretrain"}, pretrain={"seed": 0})
    with pytest.raises(ParamsError, match="pretrain.seed .0. must differ from data.seed"):
        params_from_dict(d)
    params_from_dict(tiny_dict(model={"source": "scratch"}, pretrain={"seed": 0}))  # only checked when used


def test_tiny_mae_loss_falls_and_every_encoder_tensor_reaches_the_classifier(tmp_path, tiny_params):
    """A few steps of the real Trainer loop; then the pretrained path loads each encoder tensor, bit for bit."""
    from vitinspect.model.prediction import to_pixel_values
    from vitinspect.model.vit import InputSpec, load_pretrained
    from vitinspect.model.pretraining import UnlabeledImages, build_mae, encoder_as_vit, mae_config, make_mae_trainer, reconstruct, unlabeled_views

    q = tiny_params.pretrain
    views = unlabeled_views(tiny_params.data, 64, q.seed)
    images = views[:, 0]  # the centre view (raw); the composite path is covered by the stage test
    mae = build_mae(mae_config(tiny_params.model, 32, q), q.seed)
    init = {k: v.clone() for k, v in mae.vit.state_dict().items()}
    held_out = to_pixel_values(unlabeled_views(tiny_params.data, 16, q.seed + 1)[:, 0], InputSpec(32))
    before = reconstruct(mae, held_out, seed=0)[-1]  # the same mask before and after
    trainer = make_mae_trainer(mae, UnlabeledImages(images), InputSpec(32), dataclasses.replace(q, epochs=4, device="cpu"), tmp_path / "t")
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    after = reconstruct(mae, held_out, seed=0)[-1]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert after < 0.9 * before, (before, after)

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


def test_mae_starts_with_positions_and_learns_more_than_the_mean_pixel(tiny_params, tmp_path):
    """transformers 5 leaves ViTMAE's position tables at zero when built from a config; without them every
    masked patch gets the same prediction. build_mae sets the sin-cos tables, and the loss on held-out parts
    then falls below what the best position-blind prediction (the mean pixel of each image) scores."""
    from vitinspect.model.prediction import to_pixel_values
    from vitinspect.model.vit import InputSpec
    from vitinspect.model.pretraining import UnlabeledImages, build_mae, make_mae_trainer, mae_config, reconstruct, sincos_table, unlabeled_views

    q = tiny_params.pretrain
    mae = build_mae(mae_config(tiny_params.model, 32, q), q.seed)
    n = mae.vit.embeddings.patch_embeddings.num_patches
    assert torch.equal(mae.vit.embeddings.position_embeddings, sincos_table(n, tiny_params.model.hidden_size))
    assert torch.equal(mae.decoder.decoder_pos_embed, sincos_table(n, q.decoder.hidden_size))
    assert len({tuple(r) for r in mae.decoder.decoder_pos_embed[0, 1:].tolist()}) == n  # every patch its own position
    assert mae.decoder.mask_token.abs().sum() > 0 and mae.vit.embeddings.cls_token.abs().sum() > 0

    images = unlabeled_views(tiny_params.data, 96, q.seed)[:, 0]  # raw centre views: structure a position can predict
    held_out = to_pixel_values(unlabeled_views(tiny_params.data, 16, q.seed + 1)[:, 0], InputSpec(32))
    make_mae_trainer(mae, UnlabeledImages(images), InputSpec(32), dataclasses.replace(q, epochs=20, device="cpu"), tmp_path).train()
    patches = mae.patchify(held_out)
    blind = float(((patches - patches.mean(dim=(1, 2), keepdim=True)) ** 2).mean())  # one value per image, all patches
    # Measured: 0.074 against 0.158 (with the position tables zeroed, as transformers leaves them: 0.166).
    assert reconstruct(mae, held_out, seed=0)[-1] < 0.7 * blind


def test_encoder_copy_refuses_a_mismatch(tiny_params):
    from vitinspect.model.pretraining import build_mae, encoder_as_vit, mae_config

    mae = build_mae(mae_config(tiny_params.model, 32, tiny_params.pretrain), 0)
    mae.vit.layers[0].mlp.fc1 = torch.nn.Linear(tiny_params.model.hidden_size, 8)  # a different shape
    with pytest.raises(RuntimeError, match="shape mismatch"):
        encoder_as_vit(mae)


def stage_args(d, out):
    return ["--unit-space", str(d / "unit.npz"), "--out", str(out / "pretrain"), "--live", str(out / "live_pt"), "--figure", str(out / "pretrain.png"),
            "--run-info", str(out / "logs" / "pretrain_run.json")]


def test_scratch_writes_constant_placeholders_without_torch(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outs = []
    for epochs in (3, 7):  # pretrain.* changes do not change the placeholders
        p = write_params(tmp_path / f"p{epochs}.yaml", pretrain={"epochs": epochs})
        code = ("import sys, runpy; sys.argv = ['pretrain.py'] + sys.argv[1:]; sys.path.insert(0, %r); "
                "runpy.run_path(sys.argv[0].replace('pretrain.py', %r), run_name='__main__'); "
                "assert 'torch' not in sys.modules, 'placeholder imported torch'" % (str(ROOT / "stages"), str(ROOT / "stages" / "pretrain.py")))
        out = tmp_path / f"o{epochs}"
        proc = subprocess.run([sys.executable, "-c", code, "--params", str(p), *stage_args(tiny_data, out)],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append({f.relative_to(out).as_posix(): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()})
    assert outs[0] == outs[1] and "pretrain/placeholder.json" in outs[0] and "pretrain.png" in outs[0]
    assert not any(k.startswith("logs/") for k in outs[0])  # no timings: nothing ran


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
    assert json.loads((tmp_path / "logs/pretrain_run.json").read_text())["images_per_second"] > 0
    assert sorted(f.name for f in (tmp_path / "pretrain").iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    pretrained = ViTModel.from_pretrained(tmp_path / "pretrain", add_pooling_layer=False).state_dict()
    assert len(pretrained) == len(load_file(tmp_path / "pretrain/model.safetensors"))  # every saved tensor, nothing else

    load_stage("train").main(["--pretrained", str(tmp_path / "pretrain")] + train_args(tiny_data, tmp_path, p))
    init = load_file(tmp_path / "vit_init/model.safetensors")
    from vitinspect.model.vit import load_trained

    started = load_trained(tmp_path / "vit_init").state_dict()
    assert len(init) == len(started)
    for k, v in pretrained.items():
        assert torch.equal(started[f"vit.{k}"], v), k
    assert {k for k in started if not k.startswith("vit.")} == {"classifier.weight", "classifier.bias"}


def test_labelled_subset_is_stratified_and_seeded():
    from vitinspect.data.arrow import labelled_subset

    labels = np.array([0] * 5 + [1] * 100 + [2] * 95)
    keep = labelled_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[keep]).tolist() == [1, 10, 10]
    assert np.array_equal(keep, labelled_subset(labels, 0.1, seed=3))
    assert not np.array_equal(keep, labelled_subset(labels, 0.1, seed=4))
    assert len(labelled_subset(labels, 1.0, 0)) == 200


def _record(name, f1, params=None):
    """A study record and the report files committed with it, as ``figures_of`` reads them."""
    per = {c: {"f1": f1, "recall": f1} for c in CLASSES}
    audit = {"model": {"source": "pretrain"},
             "relative_change_by_group": {"block_00.attention": {"mean_relative_change": 0.1 if "pt" in name else 1.0},
                                          "block_00.mlp": {"mean_relative_change": 0.2}}}
    att = {"model_input": "nsoartc", "methods": {"gradient": {"nsoartc": {"relevance_mass": 0.1, "pointing_game": 0.2, "baseline": 0.02}}},
           "token_norms": {"max_over_median": 2.0, "high_norm_share": 0.01, "high_norm_in_mask": 0.0, "mask_patch_share": 0.1}}
    p = {"data": {"n_images": 3000, "split": {"train": 0.7}}, "pretrain": {"n_parts": 10, "input": "nsoartc", "epochs": 1, "mask_ratio": 0.75}}
    files = {"reports/evaluation.json": {"test": {"argmax": {"accuracy": f1, "macro_f1": f1, "per_class": per}}},
             "reports/attention.json": att, "reports/audit.json": audit}
    return {"rev": name, "params": params or p, "files": files,
            "metrics": {"metrics/audit.json": {"strategy": "full", "total_parameters": 150_000, "trainable_pct": 100.0}}}


def test_pretrained_sections_answer_with_numbers(monkeypatch, tmp_path):
    from vitinspect.study import runs
    from vitinspect.study.pretrained import PT_BEGIN, pretrained_sections
    from vitinspect.study.report import splice_marked

    f1 = {"study-pt-head-s0": 0.8, "study-pt-head-s1": 0.82, "study-head-s0": 0.3, "study-head-s1": 0.35, "study-base-s0": 0.9,
          "study-pt-full-s0": 0.93, "study-pt-lora-s0": 0.7, "study-frac0.1-s0": 0.5, "study-pt-frac0.1-s0": 0.7,
          "study-frac0.3-s0": 0.7, "study-pt-frac0.3-s0": 0.8, "study-pt-big-s0": 0.9}
    records = {n: _record(n, v) for n, v in f1.items()}
    monkeypatch.setattr(runs, "at_revision", lambda rev, path, kinds=(dict,): records[rev]["files"].get(path))
    text = "\n".join(pretrained_sections(records, tmp_path, "fig"))
    assert "beats head-only from scratch by more than the seed spread" in text
    assert "0.810 ± 0.010 (n=2)" in text and "4 of 4 seed pairs" in text
    assert "+0.200 at 0.1" in text and (tmp_path / "pt_label_efficiency.png").exists()
    assert "## F5 from a pretrained start" in text and "1.0% of the larger model's patch tokens" in text
    assert "b0 0.10/0.20" in text and "moves the blocks by 0.15" in text
    # The existing sections stay; the block is replaced, not repeated.
    old = "# The study\n\n## F1: x\n\nkept\n\n## All runs\n\n| a |\n"
    block = pretrained_sections(records, tmp_path, "fig")
    once = splice_marked(old, block)
    twice = splice_marked(once, block)
    assert once == twice and "kept" in once and once.index(PT_BEGIN) < once.index("## All runs")


def test_label_fraction_trains_on_a_stratified_share(tiny_data, tmp_path, monkeypatch):
    """train.label_fraction gathers its share of the mapped training images; the Trainer sees exactly those parts."""
    from vitinspect.data.arrow import columns, labelled_subset
    from vitinspect.core.storage import load_dataset_dir

    monkeypatch.chdir(tmp_path)
    p = write_params(tmp_path / "params.yaml", train={"epochs": 1, "label_fraction": 0.5})
    from vitinspect.model import training_run

    stage = load_stage("train")
    seen = []

    class Recording(training_run.ImageDataset):
        def __init__(self, images, labels, convert):
            seen.append(np.asarray(labels).copy())
            super().__init__(images, labels, convert)

    monkeypatch.setattr(training_run, "ImageDataset", Recording)
    stage.main(train_args(tiny_data, tmp_path, p))
    labels = columns(load_dataset_dir(tiny_data / "nsoartc")["train"], ["label"])["label"]
    keep = labelled_subset(labels, 0.5, 0)
    assert len(keep) < len(labels)
    assert np.array_equal(seen[0], labels[keep])  # the training set: the stratified half, every class kept
    assert set(seen[0]) == set(labels)
