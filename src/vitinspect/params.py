"""The typed schema of ``params.yaml``, validated once, before any stage works.

Every section is a frozen dataclass. :func:`load_params` reads the file, checks
every key against the schema (unknown keys, missing keys, types, ranges and
cross-field rules) and raises :class:`ParamsError` with one line that names the
key, e.g. ``params.yaml: data.passed_ratio must be in (0, 1), got 1.5``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vitinspect.errors import VitinspectError
from vitinspect.views import VIEW_PAIRS, VIEWS

CLASSES = ("passed", "tilt_x", "tilt_y", "retracted")
STRATEGIES = ("full", "head", "last_blocks", "lora")
INPUTS = ("nsoartc", "raw")
SOURCES = ("scratch", "pretrained", "pretrain")
METHODS = ("rollout", "last_layer", "gradient")
HEAD_FUSIONS = ("mean", "max", "min")
DATA_SOURCES = ("render", "folders")
LAYOUTS = ("auto", "labels", "subfolders")
ON_BAD_PART = ("error", "skip")
RENDERERS = ("2d", "blender")
BLENDER_DEVICES = ("auto", "cpu", "gpu")


class ParamsError(VitinspectError):
    """A value in params.yaml is missing, of the wrong type or out of range."""


# A params file holds a few hundred values; more than this after expanding YAML aliases is an alias bomb.
MAX_VALUES = 10_000
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 4, 40, 40


def short(value) -> str:
    """repr of a value for a message, bounded whatever its size (never format a huge value)."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- checks
# A check takes the value and returns an error fragment, or None when fine.


def positive(v):
    return None if v > 0 else f"must be positive, got {short(v)}"


def non_negative(v):
    return None if v >= 0 else f"must be >= 0, got {short(v)}"


def open_unit(v):
    return None if 0 < v < 1 else f"must be in (0, 1), got {short(v)}"


def one_of(choices):
    def check(v):
        return None if v in choices else f"must be one of {list(choices)}, got {short(v)}"

    return check


def each_one_of(choices):
    def check(values):
        bad = [v for v in values if v not in choices]
        if bad:
            return f"has unknown value {short(bad[0])}; allowed: {list(choices)}"
        if len(set(values)) != len(values):
            return f"has duplicates: {short(list(values))}"
        if not values:
            return "must not be empty"
        return None

    return check


def class_names(values):
    """The data's class names: two or more distinct names that can be folder names and CSV cells."""
    if len(values) < 2:
        return f"must name at least two classes, got {short(list(values))}"
    if len(set(values)) != len(values):
        return f"has duplicates: {short(list(values))}"
    bad = [v for v in values if not v or v != v.strip() or "/" in v or "\\" in v or v.startswith(".") or len(v) > 64
           or not v.isprintable()]
    return f"has a name that cannot be a class folder: {short(bad[0])}" if bad else None


def ordered_range(lo: float, hi: float):
    def check(v):
        a, b = v
        if not (lo <= a <= b <= hi):
            return f"must be [low, high] with {lo} <= low <= high <= {hi}, got {short(list(v))}"
        return None

    return check


def auto_or_positive_int(v):
    if v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 and float(v).is_integer()):
        return None
    return f"must be 'auto' or an integer >= 1, got {short(v)}"


def resolve_workers(value, cores: int | None = None) -> int:
    """A ``num_proc``/``threads`` value ('auto' or an int) -> how many to use: 'auto' is the cores this
    process may run on."""
    if value != "auto":
        return int(value)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


# Sizes are bounded: generous (ten to a hundred times what this project runs) but finite, so that a typo
# such as `lot.n_parts: 1e12` is refused at validate instead of running until memory or the disk is gone.
MAX_PARTS = 1_000_000  # parts of a data set, lot, pretraining set or `vitinspect render --n`: 12 GB of 64 px views
MAX_IMAGE_SIZE = 1024  # px: at patch 8 a ViT sees 16,384 tokens, whose attention (tokens^2) no CPU holds
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1  # numpy's legacy seeding and scikit-learn's random_state take 32-bit seeds
MAX_PROBES = 10_000  # OOD probes per kind: 8 kinds of them are judged by the bundle stage
# The OOD guard's false-alarm target: below one in a million no validation split this pipeline can make
# (data.n_images <= MAX_PARTS) measures it, and near 1e-16 the per-component rate 1 - (1 - a)^(1/3) rounds
# to 0 and the bundle stage cannot compute its threshold.
MIN_FALSE_ALARM_RATE = 1e-6


def count(hi: int, why: str = ""):
    """A positive count of at most ``hi``."""
    def check(v):
        if v <= 0:
            return f"must be positive, got {short(v)}"
        return None if v <= hi else f"must be at most {hi:,}{f' ({why})' if why else ''}, got {short(v)}"

    return check


def bounded(lo: float, hi: float):
    """A number in [lo, hi]."""
    def check(v):
        return None if lo <= v <= hi else f"must be in [{lo:g}, {hi:g}], got {short(v)}"

    return check


def positive_at_most(hi: float):
    def check(v):
        return None if 0 < v <= hi else f"must be in (0, {hi:g}], got {short(v)}"

    return check


def seed_value(v):
    return None if 0 <= v <= MAX_SEED else f"must be an integer in [0, {MAX_SEED}] (a 32-bit seed), got {short(v)}"


def odd_at_least_3(v):
    return None if v >= 3 and v % 2 == 1 else f"must be an odd integer >= 3, got {short(v)}"


def _f(default, check=None):
    """A dataclass field with a default and an optional range check."""
    factory = (lambda: list(default)) if isinstance(default, list) else None
    meta = {"check": check} if check else {}
    if factory:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Grid:
    rows: int = _f(2, positive)
    cols: int = _f(6, positive)


@dataclass(frozen=True)
class Defect:
    tilt: tuple[float, float] = _f((0.15, 0.45), ordered_range(0.0, 1.0))
    retract: tuple[float, float] = _f((0.3, 0.6), ordered_range(0.0, 1.0))


@dataclass(frozen=True)
class Split:
    train: float = _f(0.7, open_unit)
    val: float = _f(0.15, open_unit)
    test: float = _f(0.15, open_unit)


@dataclass(frozen=True)
class Folders:
    """``data.source: folders``: where the user's parts are and how they are laid out (see docs/own-parts.md)."""

    path: str = _f("parts")
    layout: str = _f("auto", one_of(LAYOUTS))
    on_bad_part: str = _f("error", one_of(ON_BAD_PART))


def _pair(v):
    return None if all(abs(x) <= 100 for x in v) else f"must be [x, y] pitches within 100 of the grid centre, got {short(list(v))}"


@dataclass(frozen=True)
class Blender:
    """``data.renderer: blender``: Cycles settings and the rig (see docs/blender.md)."""

    samples: int = _f(8, positive)
    denoise: bool = _f(False)
    device: str = _f("auto", one_of(BLENDER_DEVICES))
    threads: int = _f(1, positive)
    angle: float = _f(20.0, lambda v: None if 0 < v <= 60 else f"must be in (0, 60] degrees, got {short(v)}")
    aim: tuple[float, float] = _f((0.0, 0.0), _pair)
    rotation: float = _f(1.0, lambda v: None if 0 <= v <= 10 else f"must be in [0, 10] degrees, got {short(v)}")


@dataclass(frozen=True)
class Data:
    source: str = _f("render", one_of(DATA_SOURCES))
    folders: Folders = field(default_factory=Folders)
    good_class: str = _f("passed")
    seed: int = _f(0, seed_value)
    n_images: int = _f(3000, count(MAX_PARTS, "a million parts is hours of work; more is a typo"))
    image_size: int = _f(64, count(MAX_IMAGE_SIZE, "tokens^2 attention"))
    views: list[str] = _f(["center", "left", "right"], each_one_of(VIEWS))
    classes: list[str] = _f(list(CLASSES), class_names)
    passed_ratio: float = _f(0.02, open_unit)
    split: Split = field(default_factory=Split)
    grid: Grid = field(default_factory=Grid)
    defect: Defect = field(default_factory=Defect)
    jitter_px: float = _f(2.0, non_negative)  # < image_size / 4: a cross-check
    lighting: float = _f(0.15, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    noise: float = _f(0.02, bounded(0.0, 1.0))  # the std of pixel noise, image in [0, 1]
    blur: float = _f(0.6, bounded(0.0, 32.0))  # px; a Gaussian kernel of 8 sigma per side
    renderer: str = _f("2d", one_of(RENDERERS))
    blender: Blender = field(default_factory=Blender)
    num_proc: object = _f("auto", auto_or_positive_int)


@dataclass(frozen=True)
class Nsoartc:
    window: int = _f(5, odd_at_least_3)
    gain: float = _f(24.0, positive)
    eps: float = _f(1e-6, lambda v: None if 0 < v <= 0.1 else f"must be in (0, 0.1] (a guard, far below the data's std), got {short(v)}")
    min_unit_space: int = _f(10, count(MAX_PARTS))


@dataclass(frozen=True)
class Model:
    source: str = _f("scratch", one_of(SOURCES))
    name_or_path: str = _f("google/vit-base-patch16-224")
    allow_download: bool = _f(False)
    patch_size: int = _f(8, count(MAX_IMAGE_SIZE))
    hidden_size: int = _f(64, count(8192))  # ViT-H is 1280
    layers: int = _f(4, count(256))
    heads: int = _f(4, count(256))
    mlp_size: int = _f(128, count(32768))


@dataclass(frozen=True)
class Lora:
    rank: int = _f(8, count(1024))
    alpha: float = _f(16.0, positive)
    dropout: float = _f(0.0, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    targets: list[str] = _f(["query", "value"], lambda v: None if v else "must not be empty")


@dataclass(frozen=True)
class Finetune:
    strategy: str = _f("full", one_of(STRATEGIES))
    last_blocks: int = _f(1, count(256))
    lora: Lora = field(default_factory=Lora)


@dataclass(frozen=True)
class Train:
    input: str = _f("nsoartc", one_of(INPUTS))
    epochs: int = _f(10, count(MAX_EPOCHS))
    batch_size: int = _f(64, count(MAX_BATCH))
    lr: float = _f(1e-3, positive_at_most(1e6))  # finite; a rate that diverges is train's one-line error (tested at 1e6)
    weight_decay: float = _f(0.05, non_negative)
    warmup_ratio: float = _f(0.1, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    seed: int = _f(0, seed_value)
    class_weighting: str = _f("none", one_of(("none", "balanced")))
    device: str = _f("auto", one_of(("auto", "cpu", "cuda")))
    threads: object = _f("auto", auto_or_positive_int)
    label_fraction: float = _f(1.0, lambda v: None if 0 < v <= 1 else f"must be in (0, 1], got {v!r}")


@dataclass(frozen=True)
class Decoder:
    hidden_size: int = _f(32, count(8192))
    layers: int = _f(1, count(256))
    heads: int = _f(2, count(256))
    mlp_size: int = _f(64, count(32768))


@dataclass(frozen=True)
class Pretrain:
    """Masked-autoencoder pretraining on unlabeled parts (used when model.source is 'pretrain')."""

    n_parts: int = _f(2000, count(MAX_PARTS))
    seed: int = _f(1, seed_value)
    input: str = _f("nsoartc", one_of(INPUTS))
    epochs: int = _f(8, count(MAX_EPOCHS))
    batch_size: int = _f(64, count(MAX_BATCH))
    lr: float = _f(1.5e-3, positive_at_most(10.0))
    weight_decay: float = _f(0.05, non_negative)
    warmup_ratio: float = _f(0.05, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {v!r}")
    mask_ratio: float = _f(0.75, open_unit)
    norm_pix_loss: bool = _f(False)
    decoder: Decoder = field(default_factory=Decoder)
    device: str = _f("auto", one_of(("auto", "cpu", "cuda")))


def threshold_value(v):
    if v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1):
        return None
    return f"must be 'auto' or a number in [0, 1], got {v!r}"


def unit_interval_half_open(v):
    return None if 0 <= v < 1 else f"must be in [0, 1), got {v!r}"


@dataclass(frozen=True)
class Evaluate:
    batch_size: int = _f(256, count(MAX_BATCH))
    threshold: object = _f("auto", threshold_value)
    target_escape_rate: float = _f(0.005, unit_interval_half_open)


@dataclass(frozen=True)
class LotFolders:
    path: str = _f("parts")


@dataclass(frozen=True)
class Lot:
    source: str = _f("render", one_of(DATA_SOURCES))
    folders: LotFolders = field(default_factory=LotFolders)
    seed: int = _f(1000, seed_value)
    n_parts: int = _f(2000, count(MAX_PARTS, "a million parts is hours of work; more is a typo"))
    passed_ratio: float = _f(0.9, open_unit)


@dataclass(frozen=True)
class Attention:
    methods: list[str] = _f(list(METHODS), each_one_of(METHODS))
    head_fusion: str = _f("mean", one_of(HEAD_FUSIONS))
    discard_ratio: float = _f(0.0, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    panels: int = _f(2, lambda v: None if 0 <= v <= 1000 else f"must be in [0, 1000], got {short(v)}")
    extra_images: list[str] = _f([])


@dataclass(frozen=True)
class Audit:
    reference_models: list[str] = _f(
        ["google/vit-base-patch16-224", "google/vit-large-patch16-224"],
    )
    tolerance: float = _f(1e-6, non_negative)


def positive_list(values):
    if not values:
        return "must not be empty"
    bad = [v for v in values if not v > 0]
    return f"must hold positive numbers, got {bad[0]!r}" if bad else None


@dataclass(frozen=True)
class BaselineGrid:
    C: list[float] = _f([1.0, 3.0, 10.0, 30.0, 100.0], positive_list)
    gamma: list[float] = _f([0.01, 0.03, 0.1, 0.3], positive_list)


@dataclass(frozen=True)
class Baseline:
    grid: BaselineGrid = field(default_factory=BaselineGrid)
    class_weight: str = _f("none", one_of(("none", "balanced")))
    seed: int = _f(0, seed_value)


@dataclass(frozen=True)
class Bundle:
    false_alarm_rate: float = _f(0.005, lambda v: None if MIN_FALSE_ALARM_RATE <= v < 1 else
                                 f"must be in [{MIN_FALSE_ALARM_RATE:g}, 1) (below one in a million no validation split "
                                 f"measures it), got {short(v)}")
    pixel_clip: float = _f(25.0, positive)
    shift_px: int = _f(10, positive)  # < data.image_size: a cross-check
    probes_per_kind: int = _f(40, lambda v: None if 2 <= v <= MAX_PROBES else
                              f"must be an integer in [2, {MAX_PROBES:,}] (two kinds take half of it), got {short(v)}")
    onnx_opset: int = _f(17, lambda v: None if 14 <= v <= 21 else f"must be an ONNX opset in [14, 21], got {v!r}")


@dataclass(frozen=True)
class Params:
    data: Data = field(default_factory=Data)
    nsoartc: Nsoartc = field(default_factory=Nsoartc)
    model: Model = field(default_factory=Model)
    finetune: Finetune = field(default_factory=Finetune)
    train: Train = field(default_factory=Train)
    pretrain: Pretrain = field(default_factory=Pretrain)
    evaluate: Evaluate = field(default_factory=Evaluate)
    lot: Lot = field(default_factory=Lot)
    attention: Attention = field(default_factory=Attention)
    audit: Audit = field(default_factory=Audit)
    baseline: Baseline = field(default_factory=Baseline)
    bundle: Bundle = field(default_factory=Bundle)


# --------------------------------------------------------------------------- building


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, key: str, source: str):
    """Convert a YAML value to the annotated type ``tp`` or raise ParamsError."""

    def fail(msg):
        raise ParamsError(f"{source}: {key} {msg}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"must be a mapping, got {short(value)}")
        return _build(tp, value, key, source)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail(f"must be a list, got {short(value)}")
        args = typing.get_args(tp)
        if origin is tuple:
            if len(value) != len(args):
                fail(f"must be a list of {len(args)} values, got {short(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        return [_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is object:  # a value whose check decides (e.g. evaluate.threshold: auto or a number)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if tp is bool:
        if not isinstance(value, bool):
            fail(f"must be true or false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"must be an integer, got {short(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
            try:
                value = float(value)
            except ValueError:
                fail(f"must be a number, got {short(value)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(f"must be a finite number, got {short(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            fail(f"must be a non-empty string, got {short(value)}")
        return value
    raise TypeError(f"unsupported schema type {_type_name(tp)} for {key}")  # pragma: no cover


def _build(cls, data: dict, prefix: str, source: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in data if k not in names), key=str)
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) and len(unknown[0]) <= 40 else short(unknown[0])
        where = f"{prefix}.{name}" if prefix else name
        raise ParamsError(f"{source}: unknown key {where} (allowed: {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            raise ParamsError(f"{source}: missing key {key}")
        value = _convert(data[f.name], hints[f.name], key, source)
        check = f.metadata.get("check")
        if check is not None:
            msg = check(value)
            if msg:
                raise ParamsError(f"{source}: {key} {msg}")
        kwargs[f.name] = value
    return cls(**kwargs)


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
    pitch = 0.8 * d.image_size / max(d.grid.rows, d.grid.cols, 3)  # render.Geometry.pitch
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
    need, have = memory_estimate(p), available_memory()
    if need > have:
        fail(f"these params need about {need / 2**30:.1f} GiB of memory (data.n_images x data.image_size^2 x views, "
             f"model size, batch x tokens^2), more than the {have / 2**30:.1f} GiB here; lower data.n_images, "
             f"data.image_size or the model/batch sizes")


def _check_blender(d: Data, fail) -> None:
    """bpy importable, and every camera of data.views sees every post (geometry only, bpy not imported)."""
    from vitinspect.blender_rig import INSTALL, bpy_available, check_cameras

    if not bpy_available():
        fail(INSTALL)
    msg = check_cameras(d)
    if msg:
        fail(f"data.blender: {msg}")


def _check_folder_path(value: str, key: str, fail) -> None:
    """A folder of parts: relative to the project (or absolute), existing, a directory."""
    if "\n" in value or len(value) > 4096:
        fail(f"{key} must be a folder path, got {short(value)}")
    path = Path(value)
    if not path.is_dir():
        fail(f"{key} {short(value)} is not a folder" + (" (it does not exist)" if not path.exists() else ""))


def class_counts(d: Data) -> dict[str, int]:
    """Exact class sizes: round(passed_ratio * n) passed, the rest split evenly (first defect classes get one more)."""
    n_passed = int(round(d.passed_ratio * d.n_images))
    defects = [c for c in d.classes if c != "passed"]
    base, extra = divmod(d.n_images - n_passed, len(defects))
    counts = {c: base + (i < extra) for i, c in enumerate(defects)}
    return {"passed": n_passed, **counts} if "passed" in d.classes else counts


def split_counts(d: Data) -> dict[str, dict[str, int]]:
    """Parts per split and class that ``prepare`` makes: each class cut at round(cumulative fraction x n)."""
    out = {"train": {}, "val": {}, "test": {}}
    for c, n in class_counts(d).items():
        cut_train = int(round(d.split.train * n))
        cut_val = int(round((d.split.train + d.split.val) * n))
        out["train"][c], out["val"][c], out["test"][c] = cut_train, cut_val - cut_train, n - cut_val
    return out


def memory_estimate(p: Params) -> int:
    """Rough peak bytes of the largest stage: a chunk of data arrays per process (uint8 views, float RT channels), training
    state (weights, gradients, AdamW moments) and attention matrices of one batch. An order of magnitude,
    to refuse at once what numpy or torch would fail to allocate after minutes."""
    d, m = p.data, p.model
    # prepare and nsoartc hold one chunk of parts per process (dataset.chunk_size: 256 at 64 px, fewer
    # for larger images), train and evaluate one batch: the data set itself stays in the Arrow files.
    chunk = max(4, min(256, 256 * 64 * 64 // d.image_size ** 2))
    pixels = min(d.n_images, chunk) * resolve_workers(d.num_proc) * d.image_size ** 2
    data = pixels * (len(d.views) * 5 + 40) + d.n_images * 200  # + per-part records (class, split, id, label) in Python
    if m.source in ("scratch", "pretrain"):
        weights = m.layers * (4 * m.hidden_size ** 2 + 2 * m.hidden_size * m.mlp_size) + 3 * m.patch_size ** 2 * m.hidden_size
        tokens = (d.image_size // m.patch_size) ** 2 + 1
        batch = max(p.train.batch_size, p.evaluate.batch_size)
        activations = 3 * batch * m.layers * (m.heads * tokens ** 2 + tokens * (4 * m.hidden_size + m.mlp_size)) * 4
        return data + 16 * weights + activations
    return data


def available_memory() -> int:
    """Physical memory of this machine, bytes (a large constant where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 50


def params_from_dict(data: dict, source: str = "params.yaml") -> Params:
    """Validate a params mapping and return the typed :class:`Params`."""
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: must be a mapping of sections, got {type(data).__name__}")
    params = _build(Params, data, "", source)
    _cross_checks(params, source)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; every stage calls this before any work."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8") from None
    return params_from_dict(read_yaml(text, path), source=path.name)


def read_yaml(text: str, path: str | Path = "params.yaml"):
    """Parse YAML as DVC does, but refuse duplicate keys (yaml.safe_load keeps the last one silently)
    and documents that expand to more than MAX_VALUES values (alias bombs) before building them."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def _check_nodes(root, path) -> None:
    """Walk the composed YAML graph (aliases followed, so counted expanded), bounded by MAX_VALUES."""
    seen = 0
    stack = [(root, "")]
    while stack:
        node, where = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ParamsError(f"{path}: expands to more than {MAX_VALUES:,} values (YAML aliases?); write the values out")
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                name = f"{where}.{key}" if where else str(key)
                if key is not None and key != "<<":
                    if key in keys:
                        raise ParamsError(f"{path}: duplicate key {name if len(name) <= 80 else name[:77] + '...'} (line {key_node.start_mark.line + 1}); "
                                          "keep one (DVC refuses duplicates too)")
                    keys.add(key)
                stack.append((key_node, where))
                stack.append((value_node, name))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node.value))


def defaults_dict() -> dict:
    """The default params as plain YAML-ready data (tuples become lists)."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(Params()))


__all__ = [
    "Params",
    "ParamsError",
    "load_params",
    "params_from_dict",
    "defaults_dict",
    "CLASSES",
    "VIEWS",
    "VIEW_PAIRS",
]

