"""The inspection bundle: one directory a user copies to a line PC to judge new parts.

Layout (``bundle.json`` says which files belong to it)::

    bundle.json        views, classes, image size, NSOARTC settings, operating point, OOD calibration,
                       the data settings (for `vitinspect render`), the OOD figures measured when it was built
    unit_space.npz     per-pixel mean/std of the raw RT channels over passed training parts
    features.npz       class means and shared precision of the model's pooled features (OOD guard)
    vit/               the trained ViT (save_pretrained + image processor): transformers.pipeline() loads it
    model.onnx         the same network for onnxruntime: composite (N, H, W, 3) 0..255 -> (proba, features)

This module reads and writes that format and imports no torch, so the ONNX engine can load a
bundle on a machine without it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitinspect.errors import VitinspectError
from vitinspect.nsoartc import UnitSpace
from vitinspect.ood import Calibration, FeatureSpace

FORMAT = 1
MANIFEST = "bundle.json"
UNIT_SPACE = "unit_space.npz"
FEATURES = "features.npz"
MODEL_DIR = "vit"
ONNX = "model.onnx"


@dataclass(frozen=True)
class Bundle:
    """Everything ``inspect`` needs, loaded. ``path`` is the bundle directory."""

    path: Path
    views: list[str]
    classes: list[str]
    image_size: int
    input_name: str  # "nsoartc" (composite) or "raw" (centre view)
    window: int
    gain: float
    eps: float
    unit: UnitSpace
    features: FeatureSpace
    calibration: Calibration
    operating_point: dict  # {"class": "passed", "threshold": float | None, "source": str}
    data: dict  # the params.yaml data section the model learnt from
    report: dict  # OOD figures measured when the bundle was built

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR


def manifest(*, views, classes, image_size, input_name, nsoartc, operating_point, calibration: Calibration,
             data: dict, report: dict) -> dict:
    """The content of bundle.json."""
    return {
        "format": FORMAT,
        "views": list(views),
        "classes": list(classes),
        "image_size": int(image_size),
        "input": input_name,
        "nsoartc": {"window": int(nsoartc.window), "gain": float(nsoartc.gain), "eps": float(nsoartc.eps)},
        "operating_point": operating_point,
        "ood": calibration.to_dict(),
        "data": data,
        "report": report,
        "files": [UNIT_SPACE, FEATURES, MODEL_DIR, ONNX],
    }


def write(path: Path, content: dict, unit: UnitSpace, features: FeatureSpace, model_dir: Path, write_onnx) -> None:
    """Fill the (empty, temporary) directory ``path``: ``write_onnx(target_file)`` exports the network."""
    shutil.copytree(model_dir, path / MODEL_DIR)
    with open(path / UNIT_SPACE, "wb") as fh:
        np.savez(fh, mean=unit.mean, std=unit.std, n=np.int64(unit.n))
    with open(path / FEATURES, "wb") as fh:
        np.savez(fh, means=features.means, precision=features.precision)
    write_onnx(path / ONNX)
    (path / MANIFEST).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def load(path: str | Path) -> Bundle:
    """Read a bundle directory; any problem is a one-line VitinspectError naming the file."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise VitinspectError(f"{mf}: no inspection bundle here (bundle.json missing); run dvc repro, or give --bundle DIR")
    try:
        m = json.loads(mf.read_text())
        if m.get("format") != FORMAT:
            raise VitinspectError(f"{mf}: bundle format {m.get('format')!r}, this vitinspect reads {FORMAT}; rebuild it (dvc repro)")
        with np.load(path / UNIT_SPACE) as u:
            unit = UnitSpace(u["mean"], u["std"], int(u["n"]))
        with np.load(path / FEATURES) as f:
            features = FeatureSpace(f["means"], f["precision"])
        s = int(m["image_size"])
        if unit.mean.shape != (3, s, s):
            raise VitinspectError(f"{path / UNIT_SPACE}: shape {unit.mean.shape} does not match image_size {s}")
        return Bundle(path, list(m["views"]), list(m["classes"]), s, str(m["input"]), int(m["nsoartc"]["window"]),
                      float(m["nsoartc"]["gain"]), float(m["nsoartc"]["eps"]), unit, features,
                      Calibration.from_dict(m["ood"]), dict(m["operating_point"]), dict(m["data"]), dict(m.get("report", {})))
    except VitinspectError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise VitinspectError(f"{path}: not a readable inspection bundle ({type(exc).__name__}: {first})") from None
