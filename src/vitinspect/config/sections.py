"""The sections of ``params.yaml`` as frozen dataclasses: every key, its type, its default and its range check.

A key is one line, ``name: type = _f(default, check)``; :mod:`vitinspect.config.schema` holds the checks and the walker
that builds these classes from the parsed file, and :mod:`vitinspect.config.params` (the place to import them from)
adds the rules that relate several keys. A new section is a class here and a field of :class:`Params`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitinspect.config.schema import (auto_or_positive_int, bounded, count, each_one_of, non_negative, odd_at_least_3, one_of, open_unit,
                               ordered_range, positive, positive_at_most, positive_list, short)
from vitinspect.config.schema import checked as _f
from vitinspect.composite.nsoartc import INPUTS
from vitinspect.data.views import VIEWS

CLASSES = ("passed", "tilt_x", "tilt_y", "retracted")
STRATEGIES = ("full", "head", "last_blocks", "lora")
SOURCES = ("scratch", "pretrained", "pretrain")
METHODS = ("rollout", "last_layer", "gradient")
HEAD_FUSIONS = ("mean", "max", "min")
DATA_SOURCES = ("render", "folders")
LAYOUTS = ("auto", "labels", "subfolders")
ON_BAD_PART = ("error", "skip")
RENDERERS = ("2d", "blender")
BLENDER_DEVICES = ("auto", "cpu", "gpu")
# model.stem: transformers' patchify convolution, log2(patch) stride-2 convs (vitinspect.model.stem), or auto: conv
# for a scratch model whose patch size is a power of two, else the encoder's own patchify stem (vitinspect.model.stem.resolve)
STEMS = ("auto", "patch", "conv")
CROPS = ("auto", "none")
# transformers' lr_scheduler_type names train.schedule may take: cosine (today's), linear (warmup, then a straight
# decay to 0: with a large train.warmup_ratio the triangular one-cycle), cosine_with_min_lr (decays to a tenth of train.lr).
SCHEDULES = ("cosine", "linear", "cosine_with_min_lr")


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


def class_names(values):
    """The data's class names: two or more distinct names that can be folder names and CSV cells."""
    if len(values) < 2:
        return f"must name at least two classes, got {short(list(values))}"
    if len(set(values)) != len(values):
        return f"has duplicates: {short(list(values))}"
    bad = [v for v in values if not v or v != v.strip() or "/" in v or "\\" in v or v.startswith(".") or len(v) > 64
           or not v.isprintable()]
    return f"has a name that cannot be a class folder: {short(bad[0])}" if bad else None


def seed_value(v):
    return None if 0 <= v <= MAX_SEED else f"must be an integer in [0, {MAX_SEED}] (a 32-bit seed), got {short(v)}"


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

    samples: int = _f(8, count(4096, "Cycles' own default for a final render, minutes per view; 8 suffice here"))
    denoise: bool = _f(False)
    device: str = _f("auto", one_of(BLENDER_DEVICES))
    threads: int = _f(1, count(1024, "Blender's own limit on render threads"))
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
    std_floor: float = _f(0.25, lambda v: None if 0 <= v <= 1 else f"must be in [0, 1] (a fraction of the unit space's 99th-percentile std), got {short(v)}")


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
    crop: str = _f("auto", one_of(CROPS))  # auto: the conv stem crops to where the unit space says the parts are (model.stem)
    stem: str = _f("auto", one_of(STEMS))  # conv: model.source scratch, model.patch_size a power of two (cross-checks)


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
    epochs: int = _f(30, count(MAX_EPOCHS))
    batch_size: int = _f(32, count(MAX_BATCH))
    lr: float = _f(1e-3, positive_at_most(1e6))  # finite; a rate that diverges is train's one-line error (tested at 1e6)
    weight_decay: float = _f(0.05, non_negative)
    warmup_ratio: float = _f(0.2, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    seed: int = _f(0, seed_value)
    class_weighting: str = _f("none", one_of(("none", "balanced")))
    device: str = _f("auto", one_of(("auto", "cpu", "cuda")))
    threads: object = _f(2, auto_or_positive_int)
    label_fraction: float = _f(1.0, lambda v: None if 0 < v <= 1 else f"must be in (0, 1], got {v!r}")
    label_smoothing: float = _f(0.1, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    shift_px: int = _f(2, lambda v: None if 0 <= v <= 64 else f"must be an integer in [0, 64] px, got {short(v)}")  # < image_size / 4: a cross-check
    schedule: str = _f("cosine", one_of(SCHEDULES))
    best_on_val: bool = _f(True)


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
class Gate:
    """The unit-space gate (vitinspect.evaluation.gate): the share of good parts it may reject, which sets its
    threshold from good parts alone."""

    false_reject_rate: float = _f(0.01, lambda v: None if MIN_FALSE_ALARM_RATE <= v <= 0.5 else
                                  f"must be in [{MIN_FALSE_ALARM_RATE:g}, 0.5] (the share of good parts the gate may "
                                  f"reject), got {short(v)}")
    # how far a good part may move and still pass: the gate learns the good parts with copies moved by every integer
    # (dx, dy) within +-shift_px (the renderer's data.jitter_px, 2 px at the defaults); < data.image_size / 4: a cross-check
    shift_px: int = _f(2, lambda v: None if 0 <= v <= 64 else f"must be an integer in [0, 64] px, got {short(v)}")


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


@dataclass(frozen=True)
class BaselineGrid:
    C: list[float] = _f([1.0, 3.0, 10.0, 30.0, 100.0], positive_list)
    gamma: list[float] = _f([0.01, 0.03, 0.1, 0.3], positive_list)


def widths_value(v):
    """The CNN peer's blocks: 1 to 8 channel counts, each in [1, 4096] (eight 2x2 pools take 256 px to 1)."""
    if not 1 <= len(v) <= 8:
        return f"must list 1 to 8 block widths (one conv block each), got {short(list(v))}"
    bad = [w for w in v if not 1 <= w <= 4096]
    return f"must hold channel counts in [1, 4096], got {short(bad[0])}" if bad else None


@dataclass(frozen=True)
class BaselineCnn:
    """The CNN peer (vitinspect.model.cnn_run): a plain conv net trained by train's machinery on nsoartc's split.
    The keys the Trainer reads are train's (same names, same meaning); its own seed, so the ViT's train.seed never
    reruns it."""

    enabled: bool = _f(True)
    input: str = _f("nsoartc", one_of(INPUTS))
    widths: list[int] = _f([16, 32, 64, 128], widths_value)
    dropout: float = _f(0.0, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    epochs: int = _f(30, count(MAX_EPOCHS))
    batch_size: int = _f(64, count(MAX_BATCH))
    lr: float = _f(2e-3, positive_at_most(1e6))
    weight_decay: float = _f(0.05, non_negative)
    warmup_ratio: float = _f(0.1, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    label_smoothing: float = _f(0.1, lambda v: None if 0 <= v < 1 else f"must be in [0, 1), got {short(v)}")
    shift_px: int = _f(2, lambda v: None if 0 <= v <= 64 else f"must be an integer in [0, 64] px, got {short(v)}")  # < image_size / 4: a cross-check
    schedule: str = _f("cosine", one_of(SCHEDULES))
    class_weighting: str = _f("none", one_of(("none", "balanced")))
    best_on_val: bool = _f(False)
    seed: int = _f(0, seed_value)
    device: str = _f("auto", one_of(("auto", "cpu", "cuda")))
    threads: object = _f(2, auto_or_positive_int)


@dataclass(frozen=True)
class Baseline:
    grid: BaselineGrid = field(default_factory=BaselineGrid)
    class_weight: str = _f("none", one_of(("none", "balanced")))
    seed: int = _f(0, seed_value)
    cnn: BaselineCnn = field(default_factory=BaselineCnn)


@dataclass(frozen=True)
class BundleSection:
    """params.yaml's bundle section (the inspection bundle itself is :class:`vitinspect.deploy.bundle.Bundle`)."""

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
    gate: Gate = field(default_factory=Gate)
    lot: Lot = field(default_factory=Lot)
    attention: Attention = field(default_factory=Attention)
    audit: Audit = field(default_factory=Audit)
    baseline: Baseline = field(default_factory=Baseline)
    bundle: BundleSection = field(default_factory=BundleSection)
