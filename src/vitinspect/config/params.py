"""``params.yaml``, validated once, before any stage works: the one place the project imports params from.

:func:`load_params` reads the file (:mod:`vitinspect.config.yaml_file`: duplicate keys and alias bombs refused),
builds the frozen dataclasses of :mod:`vitinspect.config.sections` from it (:mod:`vitinspect.config.schema`: unknown keys,
omitted keys dvc.yaml tracks, types, ranges; other omitted keys take their defaults), then checks the rules that relate several keys (here, sizes from
:mod:`vitinspect.config.sizing` included) and raises :class:`ParamsError` with one line that names the key, e.g.
``params.yaml: data.passed_ratio must be in (0, 1), got 1.5``. What other modules import from those
modules is re-exported here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vitinspect.core.errors import ParamsError
from vitinspect.config.yaml_file import MAX_VALUES, read_params_file, read_yaml
from vitinspect.config.schema import build
from vitinspect.core.text import short
from vitinspect.config.sections import (BLENDER_DEVICES, CLASSES, DATA_SOURCES, HEAD_FUSIONS, INPUTS, LAYOUTS, MAX_BATCH, MAX_EPOCHS,
                                 MAX_IMAGE_SIZE, MAX_PARTS, MAX_PROBES, MAX_SEED, METHODS, MIN_FALSE_ALARM_RATE, ON_BAD_PART,
                                 RENDERERS, SCHEDULES, SOURCES, STEMS, STRATEGIES, Attention, Audit, Baseline, BaselineCnn, BaselineGrid,
                                 Blender, BundleSection, Data,
                                 Decoder, Defect, Evaluate, Finetune, Folders, Grid, Lora, Lot, LotFolders, Model, Nsoartc,
                                 Params, Pretrain, Split, Train)
from vitinspect.config.sizing import available_memory, memory_estimate, resolve_workers, split_counts
from vitinspect.data import blender_rig  # by module: tests replace blender_rig.bpy_available
from vitinspect.data.layout import class_counts, terminal_pitch
from vitinspect.evaluation.gate import too_few
from vitinspect.data.views import VIEW_PAIRS, VIEWS


# The keys dvc.yaml names (whole sections, single keys, and the two folder paths it interpolates): DVC fails on
# one that params.yaml lacks only after it has removed the stage's outputs, so they must be written out. Every
# other omitted key takes its default (a `data.folders: {path: myparts}` section is enough). tests/unit/config
# checks this list against dvc.yaml.
TRACKED_KEYS = frozenset({
    "data", "nsoartc", "model", "finetune", "train", "pretrain", "evaluate", "attention", "audit", "bundle", "baseline", "lot", "gate",
    "data.folders.path", "lot.folders.path", "data.good_class", "data.grid", "data.num_proc", "data.views",
    "evaluate.target_escape_rate", "evaluate.threshold", "model.heads", "model.hidden_size", "model.layers", "model.mlp_size",
    "model.patch_size", "model.source", "nsoartc.eps", "nsoartc.gain", "nsoartc.min_unit_space", "nsoartc.window", "train.threads",
})


def params_from_dict(data: dict, source: str = "params.yaml", required: frozenset = TRACKED_KEYS) -> Params:
    """Validate a params mapping and return the typed :class:`Params`; omitted keys outside ``required`` take their
    defaults."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: must be a mapping of sections, got {type(data).__name__}")
    params = build(Params, data, "", source, required)
    _cross_checks(params, source)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; every stage calls this before any work."""
    path = Path(path)
    return params_from_dict(read_params_file(path), source=path.name)


def _cross_checks(p: Params, source: str) -> None:
    """Rules that relate several keys."""

    def fail(msg):
        raise ParamsError(f"{source}: {msg}")

    d = p.data
    total = d.split.train + d.split.val + d.split.test
    if abs(total - 1.0) > 1e-6:
        fail(f"data.split fractions must sum to 1, got {total:g}")
    if "center" not in d.views:
        fail("data.views must include 'center' (the standard view of the RT method)")
    if not any(a in d.views and b in d.views for a, b in VIEW_PAIRS):
        fail("data.views needs an opposite pair of side views: left+right or top+bottom")
    if d.source == "render" and "passed" not in d.classes:
        fail("data.classes must include 'passed' and at least one defect class (data.source render)")
    if d.good_class not in d.classes:
        fail(f"data.good_class ({short(d.good_class)}) must be one of data.classes {short(list(d.classes))}")
    if d.source == "render":
        unknown = [c for c in d.classes if c not in CLASSES]
        if unknown:
            fail(f"data.classes has unknown value {short(unknown[0])}; data.source render makes only {list(CLASSES)} "
                 "(your own classes come with data.source: folders)")
        if d.good_class != "passed":
            fail(f"data.good_class must be 'passed' with data.source render, got {short(d.good_class)}")
    else:
        _check_folder_path(d.folders.path, "data.folders.path", fail)
    if p.lot.source == "folders":
        _check_folder_path(p.lot.folders.path, "lot.folders.path", fail)
    for path in p.attention.extra_images:  # the attention stage opens them after DVC removed its outputs
        if "\n" in path or len(path) > 4096 or not Path(path).is_file():
            fail(f"attention.extra_images entry {short(path)} is missing or not a regular file")
    if d.renderer == "blender" and d.source == "render":
        _check_blender(d, fail)
    if d.image_size < 16:
        fail(f"data.image_size must be >= 16, got {d.image_size}")
    if d.jitter_px >= d.image_size / 4:
        fail(f"data.jitter_px ({d.jitter_px:g}) must be under a quarter of data.image_size ({d.image_size}): "
             "the terminals would leave the view")
    if p.nsoartc.window > d.image_size:
        fail(f"nsoartc.window ({p.nsoartc.window}) must be <= data.image_size ({d.image_size})")
    if p.bundle.shift_px >= d.image_size:
        fail(f"bundle.shift_px ({p.bundle.shift_px}) must be under data.image_size ({d.image_size}): "
             "a probe shifted that far shows no part at all")
    if p.lot.seed == d.seed:
        fail(f"lot.seed ({p.lot.seed}) must differ from data.seed: the lot would repeat the training parts")
    m = p.model
    if m.source in ("scratch", "pretrain"):
        if d.image_size % m.patch_size:
            fail(f"data.image_size ({d.image_size}) must be divisible by model.patch_size ({m.patch_size})")
        if m.hidden_size % m.heads:
            fail(f"model.heads ({m.heads}) must divide model.hidden_size ({m.hidden_size})")
    if m.stem == "conv" and m.source != "scratch":
        fail(f"model.stem conv needs model.source scratch (a {m.source} encoder comes with its own patchify stem), got {m.source}")
    if m.stem == "conv" and (m.patch_size < 2 or m.patch_size & (m.patch_size - 1)):
        fail(f"model.stem conv needs model.patch_size a power of two >= 2 (one stride-2 convolution per halving), got {m.patch_size}")
    if p.train.shift_px >= d.image_size / 4:
        fail(f"train.shift_px ({p.train.shift_px}) must be under a quarter of data.image_size ({d.image_size}): "
             "the terminals would leave the view")
    c = p.baseline.cnn
    if c.enabled and c.shift_px >= d.image_size / 4:
        fail(f"baseline.cnn.shift_px ({c.shift_px}) must be under a quarter of data.image_size ({d.image_size}): "
             "the terminals would leave the view")
    if c.enabled and 2 ** len(c.widths) > d.image_size:
        fail(f"baseline.cnn.widths has {len(c.widths)} blocks, each halving the image: data.image_size ({d.image_size}) "
             f"must be at least {2 ** len(c.widths)}; list fewer widths")
    if p.gate.shift_px >= d.image_size / 4:
        fail(f"gate.shift_px ({p.gate.shift_px}) must be under a quarter of data.image_size ({d.image_size}): "
             "the terminals would leave the view")
    if m.source in ("scratch", "pretrain") and p.finetune.last_blocks > m.layers:
        fail(f"finetune.last_blocks ({p.finetune.last_blocks}) must be <= model.layers ({m.layers})")
    if m.source == "pretrain":
        q = p.pretrain
        if q.seed == d.seed:
            fail(f"pretrain.seed ({q.seed}) must differ from data.seed: the unlabeled parts would repeat the labelled ones, test split included")
        if q.seed == p.lot.seed:
            fail(f"pretrain.seed ({q.seed}) must differ from lot.seed: the unlabeled parts would repeat the lot's")
        if q.decoder.hidden_size % q.decoder.heads:
            fail(f"pretrain.decoder.heads ({q.decoder.heads}) must divide pretrain.decoder.hidden_size ({q.decoder.hidden_size})")
        if int((d.image_size // m.patch_size) ** 2 * (1 - q.mask_ratio)) < 1:
            fail(f"pretrain.mask_ratio ({q.mask_ratio}) leaves no visible patch of {(d.image_size // m.patch_size) ** 2}")
    pitch = terminal_pitch(d.image_size, d.grid.rows, d.grid.cols)
    if d.source == "folders" and d.image_size / max(d.grid.rows, d.grid.cols) < 4:
        fail(f"data.grid ({d.grid.rows} x {d.grid.cols}) is too dense for data.image_size={d.image_size}: the peer's "
             "RT cells would be under 4 px; lower data.grid.rows/cols or raise data.image_size")
    if d.source == "render" and pitch < 4:
        fail(f"data.grid ({d.grid.rows} x {d.grid.cols}) is too dense for data.image_size={d.image_size}: "
             f"terminals {pitch:.2g} px apart, fewer than 4; lower data.grid.rows/cols or raise data.image_size")
    counts = split_counts(d) if d.source == "render" else {}
    for split in ("val", "test") if counts else ():
        smallest = min(counts[split], key=counts[split].get)
        if counts[split][smallest] < 1:
            fail(f"data.split leaves class {smallest!r} empty in {split} (per split, the fewest parts of a class: "
                 + ", ".join(f"{s} {min(c.values())}" for s, c in counts.items())
                 + "); raise data.split.val/test, data.n_images or data.passed_ratio")
    problem = too_few(counts["train"][d.good_class], d.grid.rows, d.grid.cols) if counts else None
    if problem:
        fail(problem)
    need, have = memory_estimate(p), available_memory()
    if need > have:
        fail(f"these params need about {need / 2**30:.1f} GiB of memory (data.n_images x data.image_size^2 x views, "
             f"model size, batch x tokens^2), more than the {have / 2**30:.1f} GiB here; lower data.n_images, "
             f"data.image_size or the model/batch sizes")


def _check_blender(d: Data, fail) -> None:
    """bpy importable, and every camera of data.views sees every post (geometry only, bpy not imported)."""
    if not blender_rig.bpy_available():
        fail(blender_rig.INSTALL)
    msg = blender_rig.check_cameras(d)
    if msg:
        fail(f"data.blender: {msg}")


def _check_folder_path(value: str, key: str, fail) -> None:
    """A folder of parts: relative to the project (or absolute), existing, a directory."""
    if "\n" in value or len(value) > 4096:
        fail(f"{key} must be a folder path, got {short(value)}")
    path = Path(value)
    if not path.is_dir():
        fail(f"{key} {short(value)} is not a folder" + (" (it does not exist)" if not path.exists() else ""))


def defaults_dict() -> dict:
    """The default params as plain YAML-ready data (tuples become lists)."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(Params()))


__all__ = [  # this module's own, then what it re-exports from the modules it was split into
    "Params", "ParamsError", "load_params", "params_from_dict", "defaults_dict", "TRACKED_KEYS", "CLASSES", "VIEWS", "VIEW_PAIRS",
    # sections: the sections and the choices and bounds of their keys
    "Attention", "Audit", "Baseline", "BaselineGrid", "Blender", "BundleSection", "Data", "Decoder", "Defect", "Evaluate",
    "Finetune", "Folders", "Grid", "Lora", "Lot", "LotFolders", "Model", "Nsoartc", "Pretrain", "Split", "Train",
    "BLENDER_DEVICES", "DATA_SOURCES", "HEAD_FUSIONS", "INPUTS", "LAYOUTS", "METHODS", "ON_BAD_PART", "RENDERERS",
    "SCHEDULES", "SOURCES", "STEMS", "STRATEGIES", "MAX_BATCH", "MAX_EPOCHS", "MAX_IMAGE_SIZE", "MAX_PARTS", "MAX_PROBES", "MAX_SEED",
    "MIN_FALSE_ALARM_RATE",
    # schema, sizing, safe_yaml
    "short", "resolve_workers", "class_counts", "split_counts", "memory_estimate", "available_memory", "read_yaml",
    "MAX_VALUES",
]
