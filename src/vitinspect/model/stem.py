"""``model.stem: conv``: a convolutional stem in front of transformers' own ViT (Xiao et al. 2021, "Early
convolutions help transformers see better"; the tokenizer of Compact Convolutional Transformers).

log2(patch_size) stride-2 3x3 convolutions (64 px, patch 8: three, 64 -> 32 -> 16 -> 8) give the token grid of
the patchify stem, with a GroupNorm and a GELU between them; channel widths double up to ``hidden_size``
(3 -> hidden/4 -> hidden/2 -> hidden at patch 8). It replaces ``vit.embeddings.patch_embeddings.projection``,
so the model stays a ``ViTForImageClassification``: the CLS token, position embeddings, encoder, eager
attentions, LoRA targets and the ONNX export are transformers' own. The stem is recorded in ``config.json``
(``vitinspect_stem``) and :func:`vitinspect.model.vit.load_trained` rebuilds it before loading the weights;
``pipeline()`` and a bare ``from_pretrained`` do not know it.

``model.crop: auto`` (with the conv stem) adds a crop to where the parts are: a box of the input frame, found by
:func:`part_box` from the unit space of the good training parts (where they vary; never a box typed for one
renderer), cut out of every input and resized back to the frame's size before the first convolution, so the
token grid covers the parts instead of empty background. It is part of the model (``vitinspect_crop`` in
``config.json``: top, bottom, left, right in px of the input frame), so every stage, the ONNX bundle and
``inspect`` feed the whole frame as before; attention maps are over the box (:func:`crop_of` places them).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import ViTForImageClassification

STEMS = ("patch", "conv")
CONFIG_KEY = "vitinspect_stem"
CROP_KEY = "vitinspect_crop"
CROPS = ("auto", "none")
PART_FRACTION = 0.25  # a pixel is where the parts are when its unit-space std reaches this share of the frame's 99th percentile


def conv_count(patch_size: int) -> int | None:
    """log2(patch_size): the number of stride-2 convolutions, or None when patch_size is not a power of two >= 2."""
    if patch_size < 2 or patch_size & (patch_size - 1):
        return None
    return patch_size.bit_length() - 1


def stem_widths(hidden_size: int, n_convs: int) -> list[int]:
    """Output channels of each convolution: halving back from ``hidden_size``, at least 8 (3 -> 16 -> 32 -> 64)."""
    return [max(8, hidden_size >> (n_convs - 1 - i)) if i < n_convs - 1 else hidden_size for i in range(n_convs)]


class ConvStem(torch.nn.Module):
    """(B, C, S, S) -> (B, hidden, S / patch, S / patch), like the patchify convolution it replaces.

    ``weight`` is the first convolution's: transformers' ViT reads ``projection.weight.dtype`` to cast its input."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int, image_size: int | None = None, crop=None):
        super().__init__()
        self.size, self.crop = image_size, tuple(crop) if crop else None
        n = conv_count(patch_size)
        if n is None:
            raise ValueError(f"a conv stem needs a patch size that is a power of two >= 2, got {patch_size}")
        layers, c = [], in_channels
        for i, width in enumerate(stem_widths(hidden_size, n)):
            layers.append(torch.nn.Conv2d(c, width, kernel_size=3, stride=2, padding=1))
            if i < n - 1:
                layers += [torch.nn.GroupNorm(8 if width % 8 == 0 else 1, width), torch.nn.GELU()]
            c = width
        self.convs = torch.nn.Sequential(*layers)

    @property
    def weight(self) -> torch.Tensor:
        return self.convs[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop:
            top, bottom, left, right = self.crop
            x = torch.nn.functional.interpolate(x[..., top:bottom, left:right], size=(self.size, self.size), mode="bilinear",
                                                align_corners=False)
        return self.convs(x)


def part_box(std: np.ndarray, patch_size: int, fraction: float = PART_FRACTION) -> tuple[int, int, int, int] | None:
    """The box of the frame where the parts are: (top, bottom, left, right) px, bottom and right exclusive, or None
    for the whole frame.

    std: (C, S, S) the unit space's per-pixel standard deviation over the good training parts. A pixel is part
    when, in any channel, its std is above ``fraction`` x that channel's 99th percentile over the frame (where
    the parts vary; empty background varies by noise only). The box holds every such pixel with a margin of
    a twentieth of the frame (at least 2 px) for parts that sit elsewhere in the lot, is at least
    ``patch_size`` px high and wide, and is None when it would cover nearly the whole frame (nothing to gain)
    or when no pixel stands out (a flat unit space)."""
    std = np.asarray(std, dtype=np.float64)
    size = std.shape[-1]
    top99 = np.quantile(std.reshape(len(std), -1), 0.99, axis=1)
    if not np.all(np.isfinite(top99)) or not np.any(top99 > 0):
        return None
    # strictly above, with a hair of tolerance: a unit space floored at this share (nsoartc.std_floor) has its
    # background exactly at the floor, which is not part
    on = np.any(std > fraction * (1 + 1e-4) * np.where(top99 > 0, top99, np.inf)[:, None, None], axis=0)
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    if not len(rows):
        return None
    margin = max(2, round(size / 20))

    def span(lo: int, hi: int) -> tuple[int, int]:
        lo, hi = max(lo - margin, 0), min(hi + margin + 1, size)
        if hi - lo < patch_size:  # at least one token's width: grown about its centre, inside the frame
            lo = max(min(lo - (patch_size - (hi - lo)) // 2, size - patch_size), 0)
            hi = lo + patch_size
        return lo, hi

    (top, bottom), (left, right) = span(rows[0], rows[-1]), span(cols[0], cols[-1])
    if (bottom - top) * (right - left) >= 0.9 * size * size:
        return None
    return int(top), int(bottom), int(left), int(right)


def crop_of(config) -> tuple[int, int, int, int] | None:
    """The crop box a model's config records (None: the whole frame)."""
    crop = getattr(config, CROP_KEY, None)
    if not crop:
        return None
    size = config.image_size
    try:
        top, bottom, left, right = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise ValueError(f"{CROP_KEY} must be [top, bottom, left, right] px, got {str(crop)[:60]}") from None
    if not (0 <= top < bottom <= size and 0 <= left < right <= size):
        raise ValueError(f"{CROP_KEY} {[top, bottom, left, right]} is not a box inside the {size} px frame")
    return int(top), int(bottom), int(left), int(right)


def resolve(stem: str, source: str, patch_size: int) -> str:
    """The stem ``model.stem`` builds: ``auto`` is ``conv`` for a scratch model whose patch size is a power of two
    (the default recipe: it learns on Blender parts where the patchify stem stays at chance in 2 of 3 seeds,
    docs/training.md), else ``patch`` (a pretrained or MAE-pretrained encoder keeps its own patchify stem)."""
    if stem != "auto":
        return stem
    return "conv" if source == "scratch" and conv_count(patch_size) is not None else "patch"


def stem_of(config) -> str:
    """The stem a config records (``patch`` when it records none: transformers' own)."""
    return getattr(config, CONFIG_KEY, None) or "patch"


class ConvStemViTForImageClassification(ViTForImageClassification):
    """transformers' ViTForImageClassification with :class:`ConvStem` as its patch projection (only for a config
    whose ``vitinspect_stem`` is ``conv``). ``from_pretrained`` on this class rebuilds the stem, then loads
    every tensor, transformers' name conversions included."""

    def __init__(self, config):
        super().__init__(config)
        emb = self.vit.embeddings.patch_embeddings
        emb.projection = ConvStem(config.num_channels, config.hidden_size, config.patch_size, config.image_size, crop_of(config))


def model_class(stem: str):
    """The class that builds or loads a model with ``stem``: transformers' own unless it is ``conv``."""
    if stem not in STEMS:
        raise ValueError(f"unknown {CONFIG_KEY} {stem!r} (known: {', '.join(STEMS)})")
    return ConvStemViTForImageClassification if stem == "conv" else ViTForImageClassification
