"""The ViT and its saved format: built from ``ViTConfig`` or loaded from a local checkpoint; what the
train stage writes (``save_model``) and what every later stage reads (``load_trained``, ``trained_input``).

Attentions are needed later (attention stage), and SDPA returns none, so every
model here is built or loaded with ``attn_implementation="eager"``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import ViTConfig, ViTForImageClassification

from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import atomic_path
from vitinspect.model.stem import CONFIG_KEY, CROP_KEY, STEMS, model_class, resolve, stem_of

EAGER = "eager"

@dataclass(frozen=True)
class InputSpec:
    """How images become ``pixel_values``: side length and per-channel mean/std on [0, 1]."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def encoder_kwargs(model_params, image_size: int) -> dict:
    """The ViT encoder's size from ``model.*``: shared by the classifier and the MAE that pretrains it."""
    m = model_params
    return {"image_size": image_size, "patch_size": m.patch_size, "num_channels": 3, "hidden_size": m.hidden_size,
            "num_hidden_layers": m.layers, "num_attention_heads": m.heads, "intermediate_size": m.mlp_size}


def scratch_config(model_params, image_size: int, labels: list[str], crop=None) -> ViTConfig:
    """The ViTConfig of ``model.source: scratch``; with ``model.stem: conv`` it records ``vitinspect_stem``
    (:mod:`vitinspect.model.stem`), which :func:`load_trained` reads back, and ``crop`` (a box of the frame, from
    :func:`vitinspect.model.stem.part_box`), when given, as ``vitinspect_crop``: only a conv stem crops."""
    m = model_params
    stem = resolve(getattr(m, "stem", "patch"), getattr(m, "source", "scratch"), m.patch_size)
    crop = list(crop) if crop and stem == "conv" and getattr(m, "crop", "none") == "auto" else None
    return ViTConfig(
        **encoder_kwargs(model_params, image_size),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={c: i for i, c in enumerate(labels)},
        attn_implementation=EAGER,
        **({CONFIG_KEY: stem} if stem != "patch" else {}),  # the patchify stem's config stays transformers' own
        **({CROP_KEY: [int(v) for v in crop]} if crop else {}),
    )


def build_scratch(model_params, image_size: int, labels: list[str], seed: int, crop=None) -> ViTForImageClassification:
    """A freshly initialised ViT (with ``model.stem: conv``, its convolutional stem, and with ``model.crop: auto`` the
    ``crop`` box); the same seed gives the same weights."""
    torch.manual_seed(seed)
    config = scratch_config(model_params, image_size, labels, crop)
    model = model_class(stem_of(config))(config)
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


def saved_stem(path: Path) -> str:
    """The stem ``config.json`` records (``patch`` when none, or when the file is unreadable: from_pretrained then says why)."""
    try:
        stem = json.loads((Path(path) / "config.json").read_text()).get(CONFIG_KEY, "patch")
    except (OSError, ValueError, AttributeError):
        return "patch"
    if stem not in STEMS:
        raise VitinspectError(f"{path}/config.json: unknown {CONFIG_KEY} {str(stem)[:40]!r} (known: {', '.join(STEMS)})")
    return stem


def load_trained(path: str | Path) -> ViTForImageClassification:
    """A model saved by the train stage, eager attention, in eval mode: the one call that loads every stem
    (``vitinspect_stem: conv`` in config.json rebuilds the convolutional stem first; every tensor must match)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise VitinspectError(f"{path}: no trained model (config.json missing); run dvc repro")
    cls = model_class(saved_stem(path))
    try:
        with quiet_transformers():  # its load report table would come before our one line
            model, info = cls.from_pretrained(
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


def load_weights(path: str | Path) -> dict:
    """The state dict of a saved model (safetensors only), or a one-line error naming the file."""
    from safetensors.torch import load_file

    try:
        return load_file(f"{path}/model.safetensors")
    except (OSError, ValueError) as exc:
        raise VitinspectError(f"{path}/model.safetensors: cannot read weights ({exc})") from None


def save_model(model, spec: InputSpec, input_name: str, image_size: int, path: str | Path) -> None:
    """save_pretrained (safetensors) plus an image processor, atomically, loadable by ``pipeline``.

    ``config.json`` also records the representation the model takes (``vitinspect_input``) and the
    image size of the data it learnt from (``vitinspect_image_size``): :func:`trained_input` and
    :func:`check_compatible` read them back.
    """
    model.config.vitinspect_input = input_name
    model.config.vitinspect_image_size = image_size
    with atomic_path(path, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        image_processor(spec).save_pretrained(tmp)


def image_processor(spec: InputSpec):
    """The image processor saved beside every model and encoder: resize to ``spec.size`` px, rescale to
    [0, 1], normalise by ``spec.mean`` and ``spec.std`` (what :func:`trained_input` reads back)."""
    from transformers import ViTImageProcessorPil as ViTImageProcessor  # no torchvision needed

    return ViTImageProcessor(size={"height": spec.size, "width": spec.size}, image_mean=list(spec.mean),
                             image_std=list(spec.std), do_resize=True, do_normalize=True, do_rescale=True)


def trained_input(model, path) -> tuple[str, InputSpec]:
    """The representation (``nsoartc`` or ``raw``) and the InputSpec a trained model was saved with."""
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
                              "image_mean and image_std of 3 numbers, std > 0); rerun train (dvc repro train; validate runs first)") from None
    return name, spec


def check_compatible(model, classes: list[str], image_size: int, path) -> None:
    """The model must predict the data set's classes, in order, and have been trained on its image size."""
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if names != list(classes):
        raise VitinspectError(f"{path}: the model predicts {names} but the data has classes {list(classes)}; rerun train (dvc repro)")
    trained = getattr(model.config, "vitinspect_image_size", None)
    if trained is not None and trained != image_size:
        raise VitinspectError(f"{path}: the model was trained on {trained} px images but the data has {image_size} px; rerun train (dvc repro)")
