"""The CNN peer: a plain convolutional classifier on the ViT's own ``pixel_values``, as a transformers model.

A quality engineer's first question is whether a ViT beats a plain CNN on the same input. This is that CNN:
blocks of conv 3x3 -> BatchNorm -> ReLU -> 2x2 max-pool (one block per entry of ``widths``, each halving the
image), a global average pool, optional dropout and a linear head. It is a :class:`PreTrainedModel` so the
HF Trainer trains it exactly as it trains the ViT (:mod:`vitinspect.model.cnn_run`), and ``save_pretrained`` /
``from_pretrained`` write and read it (config.json + model.safetensors, no pickle).

Pure: imports nothing of the project but its errors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from vitinspect.core.errors import VitinspectError

MODEL_TYPE = "vitinspect_cnn"


class CnnPeerConfig(PreTrainedConfig):
    """``widths``: output channels of each conv block; ``image_size``: the side the model was trained on (S);
    ``input_name``: the dataset column it reads (``nsoartc`` or ``raw``); labels as transformers keeps them."""

    model_type = MODEL_TYPE

    def __init__(self, widths=(16, 32, 64, 128), num_channels: int = 3, dropout: float = 0.0, image_size: int = 64,
                 input_name: str = "nsoartc", **kwargs):
        super().__init__(**kwargs)
        self.widths = [int(w) for w in widths]
        self.num_channels = int(num_channels)
        self.dropout = float(dropout)
        self.image_size = int(image_size)
        self.input_name = str(input_name)


class CnnPeer(PreTrainedModel):
    """(B, 3, S, S) pixel_values -> (B, K) logits; with ``labels`` (B,) also the mean cross-entropy ``loss``."""

    config_class = CnnPeerConfig
    base_model_prefix = "cnn"
    main_input_name = "pixel_values"

    def __init__(self, config: CnnPeerConfig):
        super().__init__(config)
        layers, channels = [], config.num_channels
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(channels, config.num_labels)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        """He initialisation for the convolutions (ReLU follows), BatchNorm at identity, a small head."""
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> ImageClassifierOutput:
        x = self.features(pixel_values)
        logits = self.classifier(self.dropout(x.mean(dim=(2, 3))))
        loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


def build_cnn(widths, image_size: int, labels: list[str], seed: int, dropout: float = 0.0,
              input_name: str = "nsoartc") -> CnnPeer:
    """A freshly initialised CNN peer for ``labels``; the same seed gives the same weights."""
    if 2 ** len(widths) > image_size:
        raise VitinspectError(f"baseline.cnn.widths: {len(widths)} blocks halve a {image_size} px image below 1 px; list fewer")
    torch.manual_seed(seed)
    config = CnnPeerConfig(widths=widths, dropout=dropout, image_size=image_size, input_name=input_name,
                           num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)})
    return CnnPeer(config)


def save_cnn(model: CnnPeer, directory: str | Path) -> None:
    """config.json and model.safetensors in ``directory`` (the caller makes it atomic)."""
    model.save_pretrained(str(directory), safe_serialization=True)


def load_cnn(directory: str | Path) -> CnnPeer:
    """The CNN peer :func:`save_cnn` wrote, in eval mode; one line naming ``directory`` when it is not one."""
    directory = Path(directory)
    if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
        raise VitinspectError(f"{directory}: no CNN peer here (config.json and model.safetensors); run dvc repro baseline")
    try:
        model = CnnPeer.from_pretrained(str(directory), use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VitinspectError(f"{directory}: not a CNN peer the baseline stage wrote: {first[:200]}") from None
    return model.eval()
