"""How much of a ViT fine-tuning can change, and how much it did.

``count_parameters`` answers the first (total, trainable, by group);
``weight_change`` the second, per tensor, from the initial and final state dicts.
Groups follow the ViT's structure: embeddings; each encoder block split into
attention, MLP and norms; the final norm; the head.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import torch

from vitinspect.core.errors import VitinspectError
from vitinspect.model.strategies import apply_strategy

PEFT_PREFIX = "base_model.model."
# transformers 5 names blocks vit.layers.N (attention.{q,k,v,o}_proj, mlp.fc1/fc2);
# older releases vit.encoder.layer.N (attention.*, intermediate.*, output.*). Both are grouped.
_BLOCK = re.compile(r"vit\.(?:layers|encoder\.layer)\.(\d+)\.(.*)")


def group_of(name: str) -> str:
    """The group of a parameter name of ViTForImageClassification (PEFT-wrapped names too).

    e.g. ``vit.layers.3.attention.q_proj.weight`` -> ``block_03.attention``.
    """
    name = name.removeprefix(PEFT_PREFIX)
    if name.startswith("vit.embeddings."):
        return "embeddings"
    if name.startswith("classifier."):
        return "head"
    if name.startswith("vit.layernorm."):
        return "final_norm"
    if name.startswith("vit.pooler."):
        return "pooler"
    m = _BLOCK.match(name)
    if m:
        block, rest = m.groups()
        if rest.startswith("attention."):
            part = "attention"
        elif rest.startswith(("mlp.", "intermediate.", "output.")):
            part = "mlp"
        else:  # layernorm_before / layernorm_after
            part = "norms"
        return f"block_{int(block):02d}.{part}"
    return "other"


def count_parameters(model) -> dict:
    """Total, trainable and frozen counts, the trainable %, and the same per group.

    Counts what ``model.parameters()`` holds: for a PEFT model that includes the
    adapters and the copies of ``modules_to_save``, as PEFT itself counts.
    """
    groups: dict[str, dict[str, int]] = {}
    total = trainable = 0
    for name, p in model.named_parameters():
        n = p.numel()
        g = groups.setdefault(group_of(name), {"total": 0, "trainable": 0})
        g["total"] += n
        total += n
        if p.requires_grad:
            g["trainable"] += n
            trainable += n
    for g in groups.values():
        g["frozen"] = g["total"] - g["trainable"]
    return {
        "total": total,
        "trainable": trainable,
        "frozen": total - trainable,
        "trainable_pct": round(100.0 * trainable / total, 4) if total else 0.0,
        "groups": dict(sorted(groups.items())),
    }


def weight_change(initial_state: dict, final_state: dict, tolerance: float = 1e-6) -> dict[str, dict]:
    """Per tensor: relative change ||W - W0|| / ||W0||, cosine(W, W0), share of elements moved > tolerance.

    Both arguments map names to tensors of the same shapes (e.g. ``state_dict()``).
    Relative change and cosine are None where W0 is all zeros (a bias started at 0).
    """
    missing = sorted(set(initial_state) ^ set(final_state))
    if missing:
        raise ValueError(f"state dicts differ in tensor {missing[0]!r}")
    out = {}
    for name in sorted(initial_state):
        w0 = initial_state[name].detach().double().flatten()
        w1 = final_state[name].detach().double().flatten()
        if w0.shape != w1.shape:
            raise ValueError(f"tensor {name!r} changed shape: {tuple(w0.shape)} -> {tuple(w1.shape)}")
        delta = w1 - w0
        n0, n1 = float(w0.norm()), float(w1.norm())
        out[name] = {
            "group": group_of(name),
            "numel": int(w0.numel()),
            "relative_change": float(delta.norm()) / n0 if n0 > 0 else None,
            "cosine": float(w0 @ w1) / (n0 * n1) if n0 > 0 and n1 > 0 else None,
            "moved_share": float((delta.abs() > tolerance).double().mean()),
            "abs_change": float(delta.norm()),
        }
    return out


def by_group(changes: dict[str, dict]) -> dict[str, dict]:
    """Aggregate :func:`weight_change` per group: mean relative change (over tensors where defined),
    element-weighted moved share, and the group's own relative change ||dW_group|| / ||W0_group||."""
    acc: dict[str, dict] = {}
    for c in changes.values():
        g = acc.setdefault(c["group"], {"rel": [], "moved": 0.0, "numel": 0, "d2": 0.0, "w2": 0.0})
        if c["relative_change"] is not None:
            g["rel"].append(c["relative_change"])
            g["w2"] += (c["abs_change"] / c["relative_change"]) ** 2 if c["relative_change"] > 0 else 0.0
        g["d2"] += c["abs_change"] ** 2
        g["moved"] += c["moved_share"] * c["numel"]
        g["numel"] += c["numel"]
    return {
        name: {
            "mean_relative_change": round(float(np.mean(g["rel"])), 6) if g["rel"] else None,
            "moved_share": round(g["moved"] / g["numel"], 6),
            "numel": g["numel"],
        }
        for name, g in sorted(acc.items())
    }


def reference_config(name_or_path: str, num_labels: int):
    """A ViTConfig for a reference model: a local config.json (file or directory) when given,
    else the published architecture of google/vit-{base,large,huge}-patch{16,32}-*, nothing downloaded."""
    from pathlib import Path

    from transformers import ViTConfig

    p = Path(name_or_path)
    if p.exists():
        cfg = ViTConfig.from_json_file(str(p if p.is_file() else p / "config.json"))
    else:
        m = re.search(r"vit-(base|large|huge)-patch(\d+)-(\d+)", name_or_path)
        if not m:
            raise ValueError(f"unknown reference model {name_or_path!r}: give a google/vit-<base|large|huge>-patch<P>-<S> name or a local config.json")
        size, patch, image = m.group(1), int(m.group(2)), int(m.group(3))
        dims = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096), "huge": (1280, 32, 16, 5120)}[size]
        cfg = ViTConfig(hidden_size=dims[0], num_hidden_layers=dims[1], num_attention_heads=dims[2],
                        intermediate_size=dims[3], patch_size=patch, image_size=image)
    cfg.num_labels = num_labels
    cfg.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    return cfg


def meta_model(config):
    """ViTForImageClassification on the ``meta`` device: shapes only, no memory, no weights."""
    from transformers import ViTForImageClassification

    with torch.device("meta"):
        return ViTForImageClassification(config)


def headline(result: dict) -> dict:
    """The audit's metric columns: strategy, total parameters, trainable share. Per-group counts and
    changes stay in the full result."""
    m = result["model"]
    return {"strategy": m["strategy"], "total_parameters": m["total"], "trainable_pct": m["trainable_pct"]}


def reference_table(names, n_labels: int, finetune, strategies) -> list[dict]:
    """Total counts for 1000 and our labels, and the trainable count under each of ``strategies``.

    ``finetune`` holds the strategy settings (last_blocks, lora); each reference model is built on the
    ``meta`` device from its config alone, so no weights are needed.
    """
    rows = []
    for name in names:
        try:
            cfg_ours = reference_config(name, n_labels)
            total_1000 = count_parameters(meta_model(reference_config(name, 1000)))["total"]
        except (OSError, ValueError) as exc:
            raise VitinspectError(f"params.yaml: audit.reference_models entry {name!r}: {exc}") from None
        row = {"model": name, "total_1000_labels": total_1000, "total_our_labels": count_parameters(meta_model(cfg_ours))["total"], "trainable": {}}
        for strategy in strategies:
            ft = dataclasses.replace(finetune, strategy=strategy, last_blocks=min(finetune.last_blocks, cfg_ours.num_hidden_layers))
            c = count_parameters(apply_strategy(meta_model(cfg_ours), ft))
            row["trainable"][strategy] = {"trainable": c["trainable"], "trainable_pct": c["trainable_pct"]}
        rows.append(row)
    return rows
