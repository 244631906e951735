"""The ViT: built from ``ViTConfig`` or loaded from a local checkpoint, with a fine-tuning strategy.

Attentions are needed later (attention stage), and SDPA returns none, so every
model here is built or loaded with ``attn_implementation="eager"``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import ViTConfig, ViTForImageClassification

from vitinspect.errors import VitinspectError

EAGER = "eager"
# finetune.lora.targets may use the classic ViT names; transformers 5 calls them *_proj.
LORA_ALIASES = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "attention_output": "o_proj"}


@dataclass(frozen=True)
class InputSpec:
    """How images become ``pixel_values``: side length and per-channel mean/std on [0, 1]."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def scratch_config(model_params, image_size: int, labels: list[str]) -> ViTConfig:
    """The ViTConfig of ``model.source: scratch``."""
    m = model_params
    return ViTConfig(
        image_size=image_size,
        patch_size=m.patch_size,
        num_channels=3,
        hidden_size=m.hidden_size,
        num_hidden_layers=m.layers,
        num_attention_heads=m.heads,
        intermediate_size=m.mlp_size,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={c: i for i, c in enumerate(labels)},
        attn_implementation=EAGER,
    )


def build_scratch(model_params, image_size: int, labels: list[str], seed: int) -> ViTForImageClassification:
    """A freshly initialised ViT; the same seed gives the same weights."""
    torch.manual_seed(seed)
    model = ViTForImageClassification(scratch_config(model_params, image_size, labels))
    assert model.config._attn_implementation == EAGER, "attentions need eager attention"
    return model


def load_pretrained(path: str, labels: list[str], allow_download: bool = False) -> tuple[ViTForImageClassification, InputSpec]:
    """A ViT checkpoint from a local directory or the HF cache, with a new head for ``labels``.

    Never downloads unless ``allow_download``. Raises a one-line VitinspectError
    naming the path when the weights are missing or are not a ViT.
    """
    from transformers import AutoConfig, AutoImageProcessor

    how = "" if allow_download else " (set model.allow_download: true to fetch it, or give a local directory)"
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VitinspectError(f"model.name_or_path: no checkpoint at {path!r}{how}: {first}") from None
    if config.model_type != "vit":
        raise VitinspectError(f"model.name_or_path: {path!r} is a {config.model_type!r} checkpoint, not a ViT")
    try:
        with quiet_transformers():  # the new head's "newly initialised" report is expected, not news
            model = ViTForImageClassification.from_pretrained(
                path,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={c: i for i, c in enumerate(labels)},
                ignore_mismatched_sizes=True,
                attn_implementation=EAGER,
                local_files_only=not allow_download,
                use_safetensors=True,
            )
    except Exception as exc:  # missing, truncated or disagreeing with its config: one story for the user
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise VitinspectError(f"model.name_or_path: cannot load ViT weights (safetensors) from {path!r}{how}: {first}") from None
    size = int(config.image_size)
    spec = InputSpec(size)
    try:
        proc = AutoImageProcessor.from_pretrained(path, local_files_only=not allow_download)
        s = proc.size
        height = s.get("height") if isinstance(s, dict) else getattr(s, "height", None)
        spec = InputSpec(int(height or size), tuple(float(v) for v in proc.image_mean), tuple(float(v) for v in proc.image_std))
    except OSError:
        pass  # no preprocessor_config.json: the ViT defaults (mean = std = 0.5) at the config's size
    except Exception as exc:
        raise VitinspectError(f"model.name_or_path: {path!r} has a malformed image processor config ({type(exc).__name__})") from None
    if not (1 <= spec.size <= 8192 and len(spec.mean) == 3 and len(spec.std) == 3 and all(v > 0 for v in spec.std)):
        raise VitinspectError(f"model.name_or_path: {path!r} has a malformed image processor config "
                              "(size 1..8192, image_mean and image_std of 3 numbers, std > 0)")
    return model, spec


def load_trained(path: str | Path) -> ViTForImageClassification:
    """A model saved by the train stage, eager attention, in eval mode."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise VitinspectError(f"{path}: no trained model (config.json missing); run dvc repro")
    try:
        with quiet_transformers():  # its load report table would come before our one line
            model, info = ViTForImageClassification.from_pretrained(
                path, attn_implementation=EAGER, local_files_only=True, use_safetensors=True, output_loading_info=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise VitinspectError(f"{path}: not a loadable ViT checkpoint: {first}") from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(map(str, info.get(kind) or []))
        if keys:  # a config that disagrees with the weights: loading would leave random weights in place
            raise VitinspectError(f"{path}: not a loadable ViT checkpoint: config.json disagrees with model.safetensors "
                                  f"({len(keys)} {kind.replace('_', ' ')}, e.g. {keys[0][:80]})")
    return model.eval()


@contextmanager
def quiet_transformers():
    """transformers' own warnings and load reports off for a moment (errors still raise)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def to_pixel_values(images: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 images (N, H, W) grey or (N, H, W, 3) RGB -> float (N, 3, size, size), normalised.

    Grey images are repeated over the three channels so one model takes either representation.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[-1] != spec.size:
        x = torch.nn.functional.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def apply_strategy(model: ViTForImageClassification, finetune_params):
    """Freeze or wrap ``model`` for ``finetune.strategy``; returns the model to train.

    full: everything; head: the classifier only; last_blocks: the last N encoder
    blocks and the classifier; lora: PEFT LoRA on the targets plus the classifier.
    """
    f = finetune_params
    if f.strategy == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if f.strategy == "lora":
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        targets = [t if t in names else LORA_ALIASES.get(t, t) for t in f.lora.targets]
        cfg = LoraConfig(r=f.lora.rank, lora_alpha=f.lora.alpha, lora_dropout=f.lora.dropout,
                         target_modules=targets, modules_to_save=["classifier"])
        try:
            return get_peft_model(model, cfg)
        except ValueError as exc:
            raise VitinspectError(f"params.yaml: finetune.lora.targets {list(f.lora.targets)} match no module: {exc}") from None
    n_layers = model.config.num_hidden_layers
    if f.strategy == "last_blocks" and f.last_blocks > n_layers:
        raise VitinspectError(f"params.yaml: finetune.last_blocks ({f.last_blocks}) exceeds the model's {n_layers} blocks")
    keep = ("classifier.",)
    if f.strategy == "last_blocks":
        keep += tuple(f"vit.layers.{i}." for i in range(n_layers - f.last_blocks, n_layers))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(keep))
    return model


def plain_model(model) -> ViTForImageClassification:
    """The plain ViT to save: LoRA adapters merged into the weights, other models as they are."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return model
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def count_trainable(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def trained_input(model, path) -> tuple[str, InputSpec]:
    """The representation (``nsoartc`` or ``raw``) and the InputSpec a trained model was saved with."""
    import json

    name = getattr(model.config, "vitinspect_input", None)
    if name not in ("nsoartc", "raw"):
        raise VitinspectError(f"{path}: config.json lacks vitinspect_input; retrain with this version (dvc repro)")
    proc = Path(path) / "preprocessor_config.json"
    try:
        cfg = json.loads(proc.read_text())
        size, mean, std = cfg["size"]["height"], cfg["image_mean"], cfg["image_std"]
        numbers = [*mean, *std]
        if (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 8192 or len(mean) != 3 or len(std) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e6 for v in numbers)
                or not all(v > 0 for v in std)):
            raise ValueError("out of range")
        spec = InputSpec(size, tuple(float(v) for v in mean), tuple(float(v) for v in std))
    except (OSError, KeyError, TypeError, ValueError):
        raise VitinspectError(f"{proc}: missing or malformed image processor config (size.height 1..8192, "
                              "image_mean and image_std of 3 numbers, std > 0); rerun train (dvc repro -f -s train)") from None
    return name, spec


def check_compatible(model, classes: list[str], image_size: int, path) -> None:
    """The model must predict the data set's classes, in order, and have been trained on its image size."""
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if names != list(classes):
        raise VitinspectError(f"{path}: the model predicts {names} but the data has classes {list(classes)}; rerun train (dvc repro)")
    trained = getattr(model.config, "vitinspect_image_size", None)
    if trained is not None and trained != image_size:
        raise VitinspectError(f"{path}: the model was trained on {trained} px images but the data has {image_size} px; rerun train (dvc repro)")


@torch.no_grad()
def predict_proba(model, pixel_values: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, 3, S, S) -> (N, K) class probabilities, in batches, float32."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(pixel_values), batch_size):
        logits = model(pixel_values=pixel_values[i:i + batch_size].to(device)).logits
        out.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def model_and_test_split(data_dir, model_dir, names: list[str]):
    """The trained model and the test split it is checked against, decoded once.

    Returns (model, input_name, spec, classes, cols): ``cols`` holds the named
    columns plus the model's own input column.
    """
    from vitinspect.dataset import columns, label_names
    from vitinspect.storage import load_dataset_dir

    test = load_dataset_dir(data_dir)["test"]
    classes = label_names(test)
    model = load_trained(model_dir)
    input_name, spec = trained_input(model, model_dir)
    cols = columns(test, list(dict.fromkeys([*names, input_name])))
    check_compatible(model, classes, cols[input_name].shape[1], model_dir)
    return model, input_name, spec, classes, cols
