"""The inspection bundle: one directory a user copies to a line PC to judge new parts.

Layout (``bundle.json`` says which files belong to it)::

    bundle.json        views, classes, image size, NSOARTC settings, operating point, OOD calibration,
                       the data settings (for `vitinspect render`), the OOD figures measured when it was built
    unit_space.npz     per-pixel mean/std of the raw RT channels over passed training parts (and the std floor)
    features.npz       class means and shared precision of the model's pooled features (OOD guard)
    gate.npz           the unit-space gate (evaluation.gate): good parts' mean and shrunk precision of the cell
                       features, its threshold; bundle.json's ``gate`` says the same threshold
    check_parts.npz    a few test parts' views with the probabilities and OOD scores the bundle gave them
                       when it was built: each engine must give them back when the bundle is opened
    vit/               the trained ViT (save_pretrained + image processor): transformers.pipeline() loads it
    model.onnx         the same network for onnxruntime: composite (N, H, W, 3) 0..255 -> (proba, features)
    manifest.json      the SHA-256 of every other file

The bundle proves itself before anything is judged (:func:`load`): every value of bundle.json and
of the .npz files is checked against the schema (:mod:`vitinspect.deploy.bundle_schema`: types, ranges,
finite numbers; here, classes that match vit/config.json's ``id2label``), then every file against its
SHA-256 in manifest.json. Any
problem is one line naming the file and the value. (The engines' own checks, ONNX input names and
the check parts, are in :mod:`vitinspect.deploy.engine`.)

This module reads and writes that format and imports no torch, so the ONNX engine can load a
bundle on a machine without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitinspect.composite.nsoartc import UnitSpace
from vitinspect.core.errors import VitinspectError
from vitinspect.core.text import short
from vitinspect.deploy.bundle_schema import FORMAT, BadValue, check_array, check_content, fail
from vitinspect.deploy.ood_guard import Calibration, FeatureSpace
from vitinspect.evaluation.gate import Gate, from_arrays

MANIFEST = "bundle.json"
HASHES = "manifest.json"
UNIT_SPACE = "unit_space.npz"
FEATURES = "features.npz"
CHECK_PARTS = "check_parts.npz"
GATE = "gate.npz"
MODEL_DIR = "vit"
ONNX = "model.onnx"
# What every bundle holds (manifest.json may list more files under vit/).
REQUIRED = (MANIFEST, UNIT_SPACE, FEATURES, GATE, CHECK_PARTS, f"{MODEL_DIR}/config.json", ONNX)
MAX_JSON_BYTES = 16 << 20  # bundle.json and manifest.json are a few KB; refuse to parse a huge file
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckParts:
    """Views (M, V, H, W) uint8 of a few test parts, and what the bundle gave them when it was built."""

    views: np.ndarray
    proba: np.ndarray  # (M, K)
    ood_score: np.ndarray  # (M,)
    gate_score: np.ndarray  # (M,) the gate's MD


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
    check: CheckParts | None = None  # always set by load()
    gate: Gate | None = None  # always set by load(); a part passes when the gate accepts it

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR


def manifest(*, views, classes, image_size, input_name, nsoartc, operating_point, calibration: Calibration,
             data: dict, report: dict, gate: Gate) -> dict:
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
        "gate": gate.info(),
        "data": data,
        "report": report,
        "files": [UNIT_SPACE, FEATURES, GATE, CHECK_PARTS, MODEL_DIR, ONNX, HASHES],
    }


def write(path: Path, content: dict, unit: UnitSpace, features: FeatureSpace, model_dir: Path, write_onnx,
          check: CheckParts, gate: Gate) -> None:
    """Fill the (empty, temporary) directory ``path``: ``write_onnx(target_file)`` exports the network;
    manifest.json (the hashes) last."""
    shutil.copytree(model_dir, path / MODEL_DIR)
    with open(path / UNIT_SPACE, "wb") as fh:
        np.savez(fh, mean=unit.mean, std=unit.std, n=np.int64(unit.n), **({} if unit.floor is None else {"floor": unit.floor}))
    with open(path / FEATURES, "wb") as fh:
        np.savez(fh, means=features.means, precision=features.precision)
    with open(path / GATE, "wb") as fh:
        np.savez(fh, **gate.arrays())
    with open(path / CHECK_PARTS, "wb") as fh:
        np.savez(fh, views=check.views.astype(np.uint8), proba=check.proba.astype(np.float64),
                 ood_score=check.ood_score.astype(np.float64), gate_score=check.gate_score.astype(np.float64))
    write_onnx(path / ONNX)
    (path / MANIFEST).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    write_hashes(path, path / HASHES)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(path: Path) -> dict[str, str]:
    """relative posix path -> SHA-256 of every file under the bundle directory ``path`` but manifest.json."""
    def ours(p: Path) -> bool:  # not manifest.json, not a hidden temporary of an atomic write
        rel = p.relative_to(path)
        return p.is_file() and rel.as_posix() != HASHES and not any(part.startswith(".") for part in rel.parts)

    files = sorted(p for p in Path(path).rglob("*") if ours(p))
    return {p.relative_to(path).as_posix(): sha256(p) for p in files}


def write_hashes(path: Path, target: Path) -> None:
    """manifest.json of the bundle directory ``path``, written to ``target`` (the real one, or a temporary file)."""
    Path(target).write_text(json.dumps({"format": 1, "sha256": file_hashes(path)}, indent=2, sort_keys=True) + "\n")


def _npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise VitinspectError(f"{path}: missing from the bundle; rebuild it (dvc repro)") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise VitinspectError(f"{path}: not a readable .npz ({type(exc).__name__}); rebuild the bundle (dvc repro)") from None


def _field(z: dict, name: str):
    if name not in z:
        fail(name, "missing", show=False)
    return z[name]


def read_unit_space(z: dict, s: int) -> UnitSpace:
    mean = check_array("mean", _field(z, "mean"), (3, s, s))
    std = check_array("std", _field(z, "std"), (3, s, s))
    if np.any(std < 0):
        fail("std", "must be >= 0", float(std.min()))
    n = _field(z, "n")
    if n.shape != () or n.dtype.kind not in "iu" or int(n) < 1:
        fail("n", "must be a count >= 1", n.tolist() if n.size < 5 else n.shape)
    floor = None
    if "floor" in z:  # nsoartc.std_floor; a bundle from before it has none
        floor = check_array("floor", z["floor"], (3,))
        if np.any(floor < 0):
            fail("floor", "must be >= 0", float(floor.min()))
    return UnitSpace(mean, std, int(n), floor)


def read_features(z: dict, k: int) -> FeatureSpace:
    means = check_array("means", _field(z, "means"), (None, None))
    if not 1 <= len(means) <= k:
        fail("means", f"must hold 1..{k} class means (one per class seen in training)", means.shape)
    d = means.shape[1]
    precision = check_array("precision", _field(z, "precision"), (d, d))
    return FeatureSpace(means, precision)


def read_check_parts(z: dict, n_views: int, s: int, k: int) -> CheckParts:
    views = check_array("views", _field(z, "views"), (None, n_views, s, s), kind="u")
    if not 1 <= len(views) <= 64:
        fail("views", "must hold 1..64 check parts", views.shape)
    proba = check_array("proba", _field(z, "proba"), (len(views), k))
    if np.any(proba < 0) or np.any(proba > 1):
        fail("proba", "must be probabilities in [0, 1]", show=False)
    ood = check_array("ood_score", _field(z, "ood_score"), (len(views),))
    gate = check_array("gate_score", _field(z, "gate_score"), (len(views),))
    return CheckParts(views, proba, ood, gate)


def read_gate(path: Path, m: dict, image_size: int) -> Gate:
    """gate.npz, checked (:func:`vitinspect.evaluation.gate.from_arrays`), and the same threshold as bundle.json's."""
    gate = from_arrays(_npz(path), path)
    said = m.get("gate", {}).get("threshold") if isinstance(m.get("gate"), dict) else None
    if said != gate.threshold:
        raise VitinspectError(f"{path}: threshold {gate.threshold!r} differs from bundle.json's gate.threshold {short(said)}; "
                              "rebuild the bundle (dvc repro)")
    if max(gate.rows, gate.cols) > image_size:
        raise VitinspectError(f"{path}: a {gate.rows} x {gate.cols} grid does not fit {image_size} px images; rebuild the bundle (dvc repro)")
    return gate


def check_model_config(path: Path, classes: list[str], input_name: str, image_size: int) -> None:
    """vit/config.json must predict ``classes`` in order, from the bundle's input and image size."""
    try:
        cfg = json.loads(_read_json_text(path))
    except ValueError as exc:
        raise VitinspectError(f"{path}: not valid JSON ({str(exc)[:80]}); rebuild the bundle (dvc repro)") from None
    if not isinstance(cfg, dict):
        raise VitinspectError(f"{path}: must be a JSON object (got {type(cfg).__name__})")
    labels = cfg.get("id2label")
    if not isinstance(labels, dict):
        raise VitinspectError(f"{path}: id2label must be an object of class names (got {short(labels)})")
    names = [labels.get(str(i)) for i in range(len(labels))]
    if names != list(classes):
        raise VitinspectError(f"{path}: id2label {short(names)} does not match bundle.json classes {short(list(classes))}")
    if cfg.get("num_labels", len(names)) != len(names):
        raise VitinspectError(f"{path}: num_labels {short(cfg.get('num_labels'))} does not match id2label's {len(names)} classes")
    if cfg.get("vitinspect_input", input_name) != input_name:
        raise VitinspectError(f"{path}: vitinspect_input {short(cfg.get('vitinspect_input'))} does not match bundle.json "
                              f"input {input_name!r}")
    if cfg.get("vitinspect_image_size", image_size) != image_size:
        raise VitinspectError(f"{path}: vitinspect_image_size {short(cfg.get('vitinspect_image_size'))} does not match "
                              f"bundle.json image_size {image_size}")


def _read_json_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise VitinspectError(f"{path}: {path.stat().st_size:,} bytes, more than a bundle's JSON can be; rebuild the bundle")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise VitinspectError(f"{path}: missing from the bundle; rebuild it (dvc repro)") from None
    except UnicodeDecodeError:
        raise VitinspectError(f"{path}: not UTF-8 text; rebuild the bundle (dvc repro)") from None
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def read_hashes(path: Path) -> dict[str, str]:
    """manifest.json -> relative path -> SHA-256, checked: relative paths inside the bundle, every required file."""
    f = path / HASHES
    try:
        m = json.loads(_read_json_text(f))
    except ValueError as exc:
        raise VitinspectError(f"{f}: not valid JSON ({str(exc)[:80]}); rebuild the bundle (dvc repro)") from None
    hashes = m.get("sha256") if isinstance(m, dict) else None
    if not isinstance(hashes, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in hashes.items()):
        raise VitinspectError(f"{f}: sha256 must map file names to SHA-256 hex digests")
    for rel in hashes:
        if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel:
            raise VitinspectError(f"{f}: names a file outside the bundle: {short(rel)}")
    missing = [r for r in REQUIRED if r not in hashes]
    if missing:
        raise VitinspectError(f"{f}: does not list {missing[0]}; rebuild the bundle (dvc repro)")
    return hashes


def verify_hashes(path: Path, hashes: dict[str, str], skip: tuple[str, ...] = ()) -> None:
    """Every listed file present with its SHA-256: one line naming the first that is not."""
    for rel, digest in sorted(hashes.items()):
        if rel in skip:
            continue
        f = path / rel
        if not f.is_file():
            raise VitinspectError(f"{f}: missing from the bundle (manifest.json lists it); restore the bundle or rebuild it (dvc repro)")
        if sha256(f) != digest:
            raise VitinspectError(f"{f}: SHA-256 differs from manifest.json: the file was changed after the bundle was "
                                  "built; restore the bundle or rebuild it (dvc repro)")


def load(path: str | Path, skip_hashes: tuple[str, ...] = ()) -> Bundle:
    """Read a bundle directory and prove it: schema of every value, then every file's SHA-256.

    Any problem is a one-line VitinspectError naming the file (and the value). ``skip_hashes``: files
    whose hash is not checked (``vitinspect export`` rewrites model.onnx).
    """
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise VitinspectError(f"{mf}: no inspection bundle here (bundle.json missing); run dvc repro, or give --bundle DIR")
    where = mf
    try:
        try:
            m = json.loads(_read_json_text(mf))
        except ValueError as exc:
            raise VitinspectError(f"{mf}: not valid JSON ({str(exc)[:80]}); rebuild the bundle (dvc repro)") from None
        check_content(m)
        s, classes, views = m["image_size"], m["classes"], m["views"]
        where = path / UNIT_SPACE
        unit = read_unit_space(_npz(where), s)
        where = path / FEATURES
        features = read_features(_npz(where), len(classes))
        where = path / CHECK_PARTS
        check = read_check_parts(_npz(where), len(views), s, len(classes))
        where = mf
    except BadValue as bad:
        key, what = bad.args
        raise VitinspectError(f"{where}: {key} {what}") from None
    gate = read_gate(path / GATE, m, s)
    check_model_config(path / MODEL_DIR / "config.json", classes, m["input"], s)
    verify_hashes(path, read_hashes(path), skip_hashes)
    ns = m["nsoartc"]
    return Bundle(path, list(views), list(classes), s, m["input"], ns["window"], float(ns["gain"]), float(ns["eps"]),
                  unit, features, Calibration.from_dict(m["ood"]), dict(m["operating_point"]), dict(m["data"]),
                  dict(m.get("report", {})), check, gate)
