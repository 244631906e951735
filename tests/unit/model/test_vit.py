"""The ViT builder, the pretrained loader and the fine-tuning strategies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from conftest import replace
from vitinspect.core.errors import VitinspectError
from vitinspect.model.strategies import apply_strategy, count_trainable, plain_model
from vitinspect.model.prediction import to_pixel_values
from vitinspect.model.vit import InputSpec, build_scratch, load_pretrained

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]


def test_default_model_is_about_160k_parameters():
    from vitinspect.config.params import Params

    p = Params()
    model = build_scratch(p.model, p.data.image_size, CLASSES, seed=0)
    _, total = count_trainable(model)
    assert 140_000 < total < 170_000  # 162,115 with the default conv stem (150,787 with transformers' patchify one)
    assert model.config._attn_implementation == "eager"


def test_same_seed_same_initial_weights(tiny_params):
    a = build_scratch(tiny_params.model, 32, CLASSES, seed=3).state_dict()
    b = build_scratch(tiny_params.model, 32, CLASSES, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("strategy", ["full", "head", "last_blocks", "lora"])
def test_strategy_trains_what_it_says(tiny_params, strategy):
    ft = replace(tiny_params.finetune, strategy=strategy, last_blocks=1)
    model = apply_strategy(build_scratch(tiny_params.model, 32, CLASSES, seed=0), ft)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    trainable, total = count_trainable(model)
    if strategy == "full":
        assert trainable == total
    elif strategy == "head":
        assert names and all(n.startswith("classifier.") for n in names)
        assert trainable == (32 + 1) * len(CLASSES)
    elif strategy == "last_blocks":
        last = tiny_params.model.layers - 1
        assert all(n.startswith(("classifier.", f"vit.layers.{last}.")) for n in names)
        assert any(n.startswith(f"vit.layers.{last}.") for n in names)
    else:
        assert all("lora_" in n or "classifier" in n for n in names)
        assert any("lora_" in n for n in names)
        assert model.get_nb_trainable_parameters()[0] == trainable
        merged = plain_model(model)
        assert isinstance(merged, ViTForImageClassification)
        assert not any("lora_" in n for n, _ in merged.named_parameters())


def test_pretrained_loads_a_local_directory_and_replaces_its_head(tmp_path):
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=10)
    torch.manual_seed(0)
    src = ViTForImageClassification(cfg)
    src.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "size": {"height": 48, "width": 48},
        "image_mean": [0.4, 0.4, 0.4], "image_std": [0.2, 0.2, 0.2], "do_resize": True, "do_normalize": True, "do_rescale": True}))
    model, spec = load_pretrained(str(tmp_path / "ckpt"), CLASSES)
    assert model.classifier.out_features == len(CLASSES)
    assert model.config.id2label == dict(enumerate(CLASSES))
    assert spec == InputSpec(48, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2))
    assert torch.equal(model.vit.embeddings.patch_embeddings.projection.weight, src.vit.embeddings.patch_embeddings.projection.weight)
    assert model.config._attn_implementation == "eager"


def test_pretrained_errors_name_the_path(tmp_path):
    with pytest.raises(VitinspectError, match="no checkpoint at .*nowhere.*allow_download"):
        load_pretrained(str(tmp_path / "nowhere"), CLASSES)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(VitinspectError, match="not a ViT"):
        load_pretrained(str(tmp_path / "bert"), CLASSES)


def test_pixel_values_from_grey_and_rgb():
    grey = np.full((2, 16, 16), 255, np.uint8)
    rgb = np.zeros((2, 16, 16, 3), np.uint8)
    g = to_pixel_values(grey, InputSpec(16))
    r = to_pixel_values(rgb, InputSpec(32))
    assert g.shape == (2, 3, 16, 16) and torch.allclose(g, torch.ones_like(g))
    assert r.shape == (2, 3, 32, 32) and torch.allclose(r, -torch.ones_like(r))
