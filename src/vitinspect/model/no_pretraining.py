"""What the pretrain stage writes when ``model.source`` is not ``pretrain``: constant placeholders.

The same bytes every time, so downstream stages see no change; made without torch, so skipping
pretraining costs a fraction of a second.
"""

from __future__ import annotations

import json

from PIL import Image, ImageDraw

PLACEHOLDER = "placeholder.json"  # the file in the encoder's directory
CURVE = "plots/metrics/reconstruction_loss.tsv"  # the dvclive curve, relative to its directory
EMPTY_CURVE = "step\treconstruction_loss\n"
NOTE = {"pretrained": False, "why": "model.source is not 'pretrain': nothing was pretrained (set model.source: pretrain)"}


def placeholder_note() -> str:
    """The text of ``PLACEHOLDER``: :data:`NOTE` as sorted, indented JSON with a final newline."""
    return json.dumps(NOTE, indent=2, sort_keys=True) + "\n"


def placeholder_figure() -> Image.Image:
    """The pretrain figure's stand-in: a 360 x 24 px greyscale image saying why there is nothing to show."""
    img = Image.new("L", (360, 24), 255)
    ImageDraw.Draw(img).text((6, 6), "no pretraining: model.source is not 'pretrain'", fill=0)
    return img
