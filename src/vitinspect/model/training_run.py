"""One run of the train stage: its data, its first model, its resume fingerprint, the Trainer's run, its report.

Images stay in the memory-mapped Arrow files (uint8, :class:`vitinspect.data.arrow.MappedImages`); each batch
is converted on its own. Checkpoints of an unfinished run are resumed only when everything that decides
the weights is the same (:func:`resume_fingerprint`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from dvclive import Live

from vitinspect.composite.nsoartc import load_unit_space
from vitinspect.core.errors import VitinspectError
from vitinspect.data.arrow import MappedImages, columns, label_names, labelled_subset
from vitinspect.evaluation.metrics import collapsed, one_class_macro_f1
from vitinspect.model.augment import shifted
from vitinspect.model.prediction import to_pixel_values
from vitinspect.model.strategies import apply_strategy, count_trainable
from vitinspect.model.stem import part_box, resolve
from vitinspect.model.training import EpochLog, ImageDataset, balanced_weights, diverged, fingerprint, make_trainer, resume_point
from vitinspect.model.vit import InputSpec, build_scratch, load_pretrained


@dataclasses.dataclass
class TrainingData:
    """What the model learns from: the class names, the image column (``nsoartc`` or ``raw``), and the train
    and val splits as {"label": (N,) int, column: (N, S, S[, 3]) uint8 images}; ``image_size`` is S."""

    classes: list[str]
    column: str
    train: dict
    val: dict

    @property
    def image_size(self) -> int:
        return self.train[self.column].shape[1]


def training_data(ds, train_params) -> TrainingData:
    """The train and val splits of nsoartc's DatasetDict ``ds`` in ``train.input``'s representation, images
    memory-mapped. With ``train.label_fraction`` < 1 (label efficiency), a stratified share of the labelled
    training parts (:func:`vitinspect.data.arrow.labelled_subset`, seeded by ``train.seed``), gathered."""
    t = train_params
    column = "nsoartc" if t.input == "nsoartc" else "raw"
    train, val = columns(ds["train"], ["label"]), columns(ds["val"], ["label"])
    train[column], val[column] = MappedImages(ds["train"], column), MappedImages(ds["val"], column)
    if t.label_fraction < 1:
        keep = labelled_subset(train["label"], t.label_fraction, t.seed)
        train = {"label": train["label"][keep], column: train[column][keep]}
    return TrainingData(label_names(ds["train"]), column, train, val)


def initial_model(model_params, seed: int, data: TrainingData, pretrained_dir: str, where: str, unit_space: str | None = None):
    """The model before any step and its InputSpec: a scratch ViT sized by ``model.*`` (seeded), or a
    pretrained encoder (``model.source`` pretrain: ``pretrained_dir``; pretrained: ``model.name_or_path``)
    with a fresh head for the classes, initialised after ``torch.manual_seed(seed)``. ``where``: the data
    directory, named when its image size does not fit ``model.patch_size``. ``unit_space``: the nsoartc stage's
    unit space (.npz), where a scratch model with the conv stem and ``model.crop: auto`` finds its crop box
    (:func:`vitinspect.model.stem.part_box`); without it the model sees the whole frame."""
    m = model_params
    if m.source == "scratch":
        if data.image_size % m.patch_size:
            raise VitinspectError(f"{where}: images are {data.image_size} px, not divisible by model.patch_size={m.patch_size}")
        crop = None
        if unit_space is not None and m.crop == "auto" and resolve(m.stem, m.source, m.patch_size) == "conv":
            crop = part_box(load_unit_space(unit_space, data.image_size).std, m.patch_size)
        return build_scratch(m, data.image_size, data.classes, seed, crop), InputSpec(data.image_size)
    torch.manual_seed(seed)  # the fresh head's initialisation
    path = pretrained_dir if m.source == "pretrain" else m.name_or_path
    return load_pretrained(path, data.classes, m.allow_download and m.source == "pretrained")


def blocks(images):
    """A MappedImages column's Arrow chunks, or a gathered array as one block (to hash without a copy), one
    after another: fingerprint() hashes each before the next is read, so pages read are released as it goes."""
    return images.blocks() if hasattr(images, "blocks") else iter([images])


def resume_fingerprint(train_params, model_params, finetune_params, data: TrainingData, stage_file: str,
                       pretrained_dir: str) -> str:
    """The hash (:func:`vitinspect.model.training.fingerprint`) that decides whether checkpoints may be resumed:
    the train, model and finetune sections, the classes, every training and validation image and label, the
    training code (``stage_file`` and every vitinspect module loaded by now, in path order) and, with
    ``model.source`` pretrain, the pretrained weights (checkpoints of another pretraining are not resumed)."""
    loaded = (mod.__file__ for name, mod in sys.modules.items() if name.startswith("vitinspect."))
    code = [Path(f).read_bytes() for f in sorted({stage_file, *loaded})]
    if model_params.source == "pretrain":
        code.append((Path(pretrained_dir) / "model.safetensors").read_bytes())
    c = data.column
    return fingerprint(dataclasses.asdict(train_params), dataclasses.asdict(model_params), dataclasses.asdict(finetune_params),
                       data.classes, blocks(data.train[c]), data.train["label"], blocks(data.val[c]), data.val["label"], *code)


@dataclasses.dataclass
class TrainingRun:
    """A finished run: the trained model (strategy applied), the Trainer and its train() result, the dvclive
    Live of process zero (None elsewhere), wall seconds, whether it resumed, trainable and total parameters."""

    model: object
    trainer: object
    result: object
    live: Live | None
    wall_seconds: float
    resumed: bool
    trainable: int
    total: int


def run_training(model, spec: InputSpec, data: TrainingData, train_params, finetune_params, good: str, checkpoints: Path,
          live_dir: str, section: str = "train") -> TrainingRun:
    """Apply the fine-tuning strategy, then train with the HF Trainer (an evaluation, a log line, a dvclive
    step in ``live_dir`` and a checkpoint in ``checkpoints`` per epoch), resuming from the highest-numbered
    complete checkpoint. Raises a one-line VitinspectError when a checkpoint cannot be written or the loss
    diverges (no model or metrics are written then); ``section``: the params section ``train_params`` is, named
    in that line (the CNN peer's is baseline.cnn)."""
    t = train_params
    model = apply_strategy(model, finetune_params)
    trainable, total = count_trainable(model)
    convert = functools.partial(to_pixel_values, spec=spec)
    c = data.column
    train_ds = ImageDataset(data.train[c], data.train["label"], shifted(convert, t.shift_px))  # val is never shifted
    val_ds = ImageDataset(data.val[c], data.val["label"], convert)
    weights = balanced_weights(data.train["label"], len(data.classes)) if t.class_weighting == "balanced" else None

    trainer = make_trainer(model, train_ds, val_ds, data.classes, t, checkpoints, class_weights=weights, good=good)
    trainer.accelerator.wait_for_everyone()  # under DDP every rank must see the same checkpoints
    resume = resume_point(checkpoints)  # the highest-numbered complete one, passed explicitly
    live = None
    if trainer.is_world_process_zero():
        live = Live(live_dir, save_dvc_exp=False, dvcyaml=False, report=None)
        trainer.add_callback(EpochLog(live))

    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except OSError as exc:  # disk full or read-only while writing a checkpoint: the next run removes the partial one
        raise VitinspectError(f"{exc.filename or checkpoints}: cannot write ({exc.strerror or exc})") from None
    wall = time.perf_counter() - start
    # Under DDP with train.best_on_val every rank loads the best checkpoint at the end of train(): no rank may go
    # on (rank 0 removes the checkpoints once the model is saved) before all have.
    trainer.accelerator.wait_for_everyone()
    bad = diverged(trainer.state.log_history)
    if bad:
        raise VitinspectError(f"params.yaml: {section}.lr={t.lr:g}: training diverged ({bad['key']} is {bad['value']} at epoch "
                              f"{bad['epoch']:g}), so no model or metrics are written; lower {section}.lr")
    return TrainingRun(model, trainer, result, live, wall, bool(resume), trainable, total)


def training_report(run: TrainingRun, input_name: str, strategy: str, threads: int, val_labels=None, n_classes: int = 0,
                    best_on_val: bool = False) -> tuple[dict, dict]:
    """(metrics/train.json: the final epoch's val figures, train loss, epochs and parameter counts, the same
    bytes every run on CPU; logs/train_run.json: images/s, wall seconds, device, bf16, world size, resumed,
    threads, which vary run to run). With ``best_on_val`` the val figures are the best epoch's (the weights
    saved; the first of equal macro-F1s, as the Trainer keeps it), and ``best_epoch`` says which. Given the val
    labels, ``collapsed``: whether val macro-F1 is at or below that of predicting one class
    (:func:`vitinspect.evaluation.metrics.one_class_macro_f1`)."""
    history, args = run.trainer.state.log_history, run.trainer.args
    evals = [e for e in history if "eval_loss" in e]
    last = evals[-1]
    if best_on_val:
        last = max(evals, key=lambda e: (e.get("eval_macro_f1", float("-inf")), -e["epoch"]))
    summary = {
        "input": input_name,
        "strategy": strategy,
        "parameters": {"total": run.total, "trainable": run.trainable},
        "epochs": int(round(last["epoch"])),
        "val": {k[5:]: round(float(v), 6) for k, v in last.items() if k.startswith("eval_") and "runtime" not in k and "per_second" not in k},
        # The last epoch's mean training loss, from the log (a resumed run's result.training_loss covers fewer steps).
        "train_loss": round(float([e["loss"] for e in history if "loss" in e][-1]), 6),
    }
    if best_on_val:
        summary["epochs"] = int(round(evals[-1]["epoch"]))
        summary["best_epoch"] = int(round(last["epoch"]))
    if val_labels is not None:
        summary["collapsed"] = collapsed(summary["val"].get("macro_f1", 0.0), val_labels, n_classes)
    info = {
        "images_per_second": round(float(run.result.metrics["train_samples_per_second"]), 1),
        "wall_seconds": round(run.wall_seconds, 1),
        "device": str(args.device),
        "bf16": bool(args.bf16),
        "world_size": int(args.world_size),
        "resumed": run.resumed,
        "threads": threads,
    }
    return summary, info


def collapse_line(summary: dict, val_labels, n_classes: int) -> str | None:
    """The train stage's one line about a collapsed run (None when it learnt more than one class)."""
    if not summary.get("collapsed"):
        return None
    return (f"train: collapsed: val macro-F1 {summary['val'].get('macro_f1', 0.0):.3f} is at or below "
            f"{one_class_macro_f1(val_labels, n_classes):.3f}, that of predicting one class for every part; "
            "the model has not learnt (metrics/train.json: collapsed true; see docs/training.md)")
