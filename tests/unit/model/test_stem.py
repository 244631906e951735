"""model.stem conv: the token grid, the parameter count, and a tiny model through everything a ViT goes through
here (a training step, save and load_trained, attentions, LoRA / last blocks, the audit's groups, ONNX)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from vitinspect.core.errors import VitinspectError
from vitinspect.explain.audit import count_parameters, group_of
from vitinspect.model.stem import ConvStem, ConvStemViTForImageClassification, conv_count, resolve, stem_widths
from vitinspect.model.strategies import apply_strategy, plain_model
from vitinspect.model.vit import InputSpec, build_scratch, load_trained, save_model

CLASSES = ["passed", "tilt_x", "tilt_y"]


def conv_model(tiny_params, **model):
    m = dataclasses.replace(tiny_params.model, stem="conv", **model)
    return build_scratch(m, 32, CLASSES, seed=0)


@pytest.mark.parametrize("patch,n", [(2, 1), (4, 2), (8, 3), (16, 4), (1, None), (6, None), (12, None)])
def test_one_stride_2_convolution_per_halving(patch, n):
    assert conv_count(patch) == n


def test_the_token_grid_is_the_patchify_stems_and_the_count_is_known():
    stem = ConvStem(3, 64, 8)
    assert stem_widths(64, 3) == [16, 32, 64]
    assert stem(torch.zeros(2, 3, 64, 64)).shape == (2, 64, 8, 8)  # the grid of an 8 px patch at 64 px
    assert torch.nn.Conv2d(3, 64, 8, 8)(torch.zeros(1, 3, 64, 64)).shape[-2:] == (8, 8)
    # 3x3 convs 3->16->32->64 with biases, GroupNorm(16) and GroupNorm(32) affine: 448 + 32 + 4,640 + 64 + 18,496.
    assert sum(p.numel() for p in stem.parameters()) == 23_680
    assert stem.weight is stem.convs[0].weight  # what transformers' ViT reads the input dtype from
    with pytest.raises(ValueError, match="power of two"):
        ConvStem(3, 64, 6)


def test_auto_is_conv_from_scratch_and_the_encoders_own_stem_otherwise(tiny_params):
    assert tiny_params.model.stem == "auto"
    assert build_scratch(tiny_params.model, 32, CLASSES, seed=0).config.vitinspect_stem == "conv"
    assert resolve("auto", "scratch", 8) == "conv" and resolve("auto", "scratch", 6) == "patch"
    assert resolve("auto", "pretrain", 8) == "patch" and resolve("auto", "pretrained", 16) == "patch"
    assert resolve("patch", "scratch", 8) == "patch" and resolve("conv", "scratch", 8) == "conv"


def test_a_patch_stem_config_records_no_stem(tiny_params):
    model = build_scratch(dataclasses.replace(tiny_params.model, stem="patch"), 32, CLASSES, seed=0)
    assert type(model).__name__ == "ViTForImageClassification"
    assert not hasattr(model.config, "vitinspect_stem")


def test_a_conv_stem_model_trains_saves_loads_and_gives_attentions(tiny_params, tmp_path):
    model = conv_model(tiny_params)
    assert isinstance(model, ConvStemViTForImageClassification) and model.config.vitinspect_stem == "conv"
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    before = model.vit.embeddings.patch_embeddings.projection.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    model(pixel_values=x, labels=y).loss.backward()
    opt.step()
    assert not torch.equal(before, model.vit.embeddings.patch_embeddings.projection.weight)  # the stem learns
    save_model(model, InputSpec(32), "nsoartc", 32, tmp_path / "vit")
    assert json.loads((tmp_path / "vit" / "config.json").read_text())["vitinspect_stem"] == "conv"
    loaded = load_trained(tmp_path / "vit")
    model.eval()
    with torch.no_grad():
        a, b = model(pixel_values=x), loaded(pixel_values=x, output_attentions=True)
    assert torch.equal(a.logits, b.logits)
    assert len(b.attentions) == tiny_params.model.layers and b.attentions[0].shape == (4, 2, 17, 17)  # 16 patches + CLS


def test_an_unknown_saved_stem_is_one_line(tiny_params, tmp_path):
    save_model(conv_model(tiny_params), InputSpec(32), "nsoartc", 32, tmp_path / "vit")
    cfg = tmp_path / "vit" / "config.json"
    cfg.write_text(cfg.read_text().replace('"vitinspect_stem": "conv"', '"vitinspect_stem": "hybrid"'))
    with pytest.raises(VitinspectError, match=r"config.json: unknown vitinspect_stem 'hybrid'"):
        load_trained(tmp_path / "vit")


def test_strategies_and_the_audit_see_the_stem(tiny_params):
    model = conv_model(tiny_params)
    names = [n for n, _ in model.named_parameters() if "projection" in n]
    assert names and {group_of(n) for n in names} == {"embeddings"}
    assert "other" not in count_parameters(model)["groups"]
    last = apply_strategy(conv_model(tiny_params), dataclasses.replace(tiny_params.finetune, strategy="last_blocks"))
    assert not any(p.requires_grad for n, p in last.named_parameters() if "projection" in n)
    lora = apply_strategy(conv_model(tiny_params), dataclasses.replace(tiny_params.finetune, strategy="lora"))
    merged = plain_model(lora)
    assert isinstance(merged, ConvStemViTForImageClassification)
    assert set(merged.state_dict()) == set(conv_model(tiny_params).state_dict())


@pytest.mark.parametrize("crop", [None, (8, 24, 4, 28)])  # model.crop's slice and resize are in the graph too
def test_the_onnx_export_matches_torch(tiny_params, tmp_path, crop):
    ort = pytest.importorskip("onnxruntime")
    from vitinspect.deploy.exported_net import InspectionNet, export_onnx, run

    model = build_scratch(dataclasses.replace(tiny_params.model, stem="conv", crop="auto"), 32, CLASSES, seed=0, crop=crop)
    assert (model.config.to_dict().get("vitinspect_crop") is None) == (crop is None)
    save_model(model, InputSpec(32), "nsoartc", 32, tmp_path / "vit")
    net = InspectionNet(load_trained(tmp_path / "vit"), InputSpec(32))
    export_onnx(net, 32, tmp_path / "net.onnx")
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    proba, _ = run(net, images)
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["proba"], {"images": images.astype(np.float32)})[0]
    np.testing.assert_allclose(got, proba, atol=1e-5)
