"""Parameter counts against published figures; weight change under each strategy."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from vitinspect.explain.audit import by_group, count_parameters, group_of, meta_model, reference_config, weight_change
from vitinspect.model.strategies import apply_strategy
from vitinspect.config.params import Params


@pytest.mark.parametrize("name,published", [("google/vit-base-patch16-224", 86_567_656), ("google/vit-large-patch16-224", 304_326_632)])
def test_counts_match_published_figures_with_1000_labels(name, published):
    counts = count_parameters(meta_model(reference_config(name, 1000)))
    assert counts["total"] == published
    assert counts["trainable"] == published and counts["trainable_pct"] == 100.0
    assert sum(g["total"] for g in counts["groups"].values()) == published


def test_lora_count_equals_peft_print_trainable_parameters(capsys):
    ft = dataclasses.replace(Params().finetune, strategy="lora")
    model = apply_strategy(meta_model(reference_config("google/vit-base-patch16-224", 101)), ft)
    model.print_trainable_parameters()
    printed = capsys.readouterr().out
    ours = count_parameters(model)
    assert f"trainable params: {ours['trainable']:,}" in printed
    assert f"all params: {ours['total']:,}" in printed


def test_local_config_json_is_used(tmp_path):
    cfg = reference_config("google/vit-base-patch16-224", 10)
    cfg.num_hidden_layers = 2
    cfg.to_json_file(tmp_path / "config.json")
    assert reference_config(str(tmp_path), 10).num_hidden_layers == 2


def test_groups():
    assert group_of("vit.layers.3.attention.q_proj.weight") == "block_03.attention"
    assert group_of("vit.encoder.layer.3.attention.attention.query.weight") == "block_03.attention"
    assert group_of("vit.layers.0.mlp.fc1.bias") == "block_00.mlp"
    assert group_of("vit.encoder.layer.0.output.dense.bias") == "block_00.mlp"
    assert group_of("vit.layers.1.layernorm_before.weight") == "block_01.norms"
    assert group_of("base_model.model.classifier.weight") == "head"
    assert group_of("vit.embeddings.cls_token") == "embeddings"
    assert group_of("vit.layernorm.bias") == "final_norm"


def test_weight_change_arithmetic():
    w0 = {"a": torch.tensor([3.0, 4.0]), "b": torch.zeros(2)}
    w1 = {"a": torch.tensor([3.0, 4.0 + 5.0]), "b": torch.ones(2)}
    ch = weight_change(w0, w1, tolerance=1e-6)
    assert ch["a"]["relative_change"] == pytest.approx(1.0)
    assert ch["a"]["moved_share"] == 0.5
    assert ch["a"]["cosine"] == pytest.approx((9 + 36) / (5 * (9 + 81) ** 0.5))
    assert ch["b"]["relative_change"] is None and ch["b"]["moved_share"] == 1.0


def trained_change(trained, strategy):
    out = trained(strategy)
    return weight_change(load_file(out / "vit_init" / "model.safetensors"), load_file(out / "vit" / "model.safetensors"))


def test_head_strategy_moves_only_the_head(trained):
    changes = trained_change(trained, "head")
    for name, c in changes.items():
        if c["group"] == "head":
            assert c["moved_share"] > 0, name
        else:
            assert c["abs_change"] == 0.0 and c["moved_share"] == 0.0, name


def test_full_strategy_moves_every_tensor(trained):
    changes = trained_change(trained, "full")
    assert all(c["abs_change"] > 0 for c in changes.values())
    groups = by_group(changes)
    assert all(g["moved_share"] > 0 for g in groups.values())


def test_lora_moves_only_its_targets_and_the_head(trained):
    changes = trained_change(trained, "lora")
    moved = {n for n, c in changes.items() if c["abs_change"] > 0}
    assert moved and all(("q_proj.weight" in n or "v_proj.weight" in n or "query.weight" in n or "value.weight" in n or n.startswith("classifier.")) for n in moved), moved
    assert any("classifier" not in n for n in moved)
