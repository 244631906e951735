"""vitinspect: a DVC pipeline for visual inspection of connector terminals with a Vision Transformer.

Importing the package (any of its modules) first makes the run offline: nothing reaches a model or
dataset hub or an analytics server. It happens here, before any module of the package imports
transformers, datasets or huggingface_hub, which read these variables once, when first imported.
A user who sets one of them keeps their value.
"""

import os

__version__ = "0.1.0"

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_name, _value)
