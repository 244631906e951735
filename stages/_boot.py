"""The start every stage script shares: ``from _boot import runtime, stage_parser`` is its first import.

``python stages/<name>.py`` puts stages/ first on sys.path, so this file is found without the package.
It imports nothing but the standard library before vitinspect, so a Python that lacks the package (dvc
run outside the venv) gets one line naming the fix, not a traceback; and vitinspect comes before any
third-party import, since importing it sets the offline environment that transformers reads once.
"""

from __future__ import annotations

import argparse
import sys

try:
    from vitinspect.core import runtime
except ModuleNotFoundError:
    sys.exit(f"error: {sys.executable} cannot import vitinspect; run `source .venv/bin/activate` first (or `make repro`)")


def stage_parser(description: str | None) -> argparse.ArgumentParser:
    """The stage's argument parser, holding the arguments every stage takes (``--params``). Outputs are
    the stage's own arguments, each with ``type=runtime.output_path`` (inside the project)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--params", default="params.yaml")
    return ap


__all__ = ["runtime", "stage_parser"]
