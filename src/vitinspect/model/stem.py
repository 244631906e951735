"""``model.stem: conv``: a convolutional stem in front of transformers' own ViT (Xiao et al. 2021, "Early
convolutions help transformers see better"; the tokenizer of Compact Convolutional Transformers).

log2(patch_size) stride-2 3x3 convolutions (64 px, patch 8: three, 64 -> 32 -> 16 -> 8) give the token grid of
the patchify stem, with a GroupNorm and a GELU between them; channel widths double up to ``hidden_size``
(3 -> hidden/4 -> hidden/2 -> hidden at patch 8). It replaces ``vit.embeddings.patch_embeddings.projection``,
so the model stays a ``ViTForImageClassification``: the CLS token, position embeddings, encoder, eager
attentions, LoRA targets and the ONNX export are transformers' own. The stem is recorded in ``config.json``
(``vitinspect_stem``) and :func:`vitinspect.model.vit.load_trained` rebuilds it before loading the weights;
``pipeline()`` and a bare ``from_pretrained`` do not know it.
"""

from __future__ import annotations

import torch
from transformers import ViTForImageClassification

STEMS = ("patch", "conv")
CONFIG_KEY = "vitinspect_stem"


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

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int):
        super().__init__()
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
        return self.convs(x)


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
        emb.projection = ConvStem(config.num_channels, config.hidden_size, config.patch_size)


def model_class(stem: str):
    """The class that builds or loads a model with ``stem``: transformers' own unless it is ``conv``."""
    if stem not in STEMS:
        raise ValueError(f"unknown {CONFIG_KEY} {stem!r} (known: {', '.join(STEMS)})")
    return ConvStemViTForImageClassification if stem == "conv" else ViTForImageClassification
