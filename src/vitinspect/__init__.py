"""vitinspect: a DVC pipeline for visual inspection of connector terminals with a Vision Transformer."""

__version__ = "0.1.0"
