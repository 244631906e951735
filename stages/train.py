"""Stage `train`: fine-tune (or train from scratch) the ViT with the HF Trainer.

Runs unchanged under ``torchrun --nproc_per_node N`` (DDP); only rank 0 writes outputs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
import time
from pathlib import Path

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import torch

from vitinspect.data.arrow import MappedImages, columns, label_names, labelled_subset
from vitinspect.core.errors import VitinspectError
from vitinspect.model.strategies import apply_strategy, count_trainable, plain_model
from vitinspect.model.prediction import to_pixel_values
from vitinspect.model.vit import InputSpec, build_scratch, load_pretrained, save_model
from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, load_dataset_dir, write_json
from vitinspect.model.training import (
    EpochLog,
    ImageDataset,
    balanced_weights,
    discard_foreign_checkpoints,
    diverged,
    fingerprint,
    make_trainer,
    resume_point,
)


def _blocks(images):
    """A MappedImages column's Arrow chunks, or a gathered array as one block (to hash without a copy), one
    after another: fingerprint() hashes each before the next is read, so pages read are released as it goes."""
    return images.blocks() if hasattr(images, "blocks") else iter([images])


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory")
    ap.add_argument("--pretrained", default="models/pretrain", help="the pretrain stage's encoder (read when model.source is pretrain)")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="trained model directory (save_pretrained)")
    ap.add_argument("--init", required=True, type=runtime.output_path, help="initial weights directory, for the audit")
    ap.add_argument("--checkpoints", required=True, type=runtime.output_path,
                    help="per-epoch checkpoints of an unfinished run, for resume (not a DVC out; removed once the run is saved)")
    ap.add_argument("--live", required=True, type=runtime.output_path, help="dvclive directory")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: final-epoch figures (deterministic on CPU)")
    ap.add_argument("--run-info", required=True, type=runtime.output_path,
                    help="JSON: images/s, wall time, device, resumed (varies run to run: a log, not a DVC out)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    t, m = params.train, params.model
    threads = runtime.set_threads(t.threads)
    ds = load_dataset_dir(args.data)
    classes = label_names(ds["train"])
    column = "nsoartc" if t.input == "nsoartc" else "raw"
    # Images stay in the memory-mapped Arrow files (uint8); each batch is converted on its own.
    train_cols, val_cols = columns(ds["train"], ["label"]), columns(ds["val"], ["label"])
    train_cols[column], val_cols[column] = MappedImages(ds["train"], column), MappedImages(ds["val"], column)
    if t.label_fraction < 1:  # label efficiency: a stratified share of the labelled parts, gathered (it is a fraction)
        keep = labelled_subset(train_cols["label"], t.label_fraction, t.seed)
        train_cols = {"label": train_cols["label"][keep], column: train_cols[column][keep]}
    image_size = train_cols[column].shape[1]

    if m.source == "scratch":
        if image_size % m.patch_size:
            raise VitinspectError(f"{args.data}: images are {image_size} px, not divisible by model.patch_size={m.patch_size}")
        model, spec = build_scratch(m, image_size, classes, t.seed), InputSpec(image_size)
    else:
        torch.manual_seed(t.seed)  # the fresh head's initialisation
        path = args.pretrained if m.source == "pretrain" else m.name_or_path
        model, spec = load_pretrained(path, classes, m.allow_download and m.source == "pretrained")
    rank_zero = int(os.environ.get("RANK", "0")) == 0  # set by torchrun; 0 in a plain run
    # The training code too: this script and every vitinspect module loaded by now.
    code = [Path(f).read_bytes() for f in sorted({__file__, *(m.__file__ for n, m in sys.modules.items() if n.startswith("vitinspect."))})]
    if m.source == "pretrain":  # checkpoints of another pretraining are not resumed either
        code.append((Path(args.pretrained) / "model.safetensors").read_bytes())
    key = fingerprint(dataclasses.asdict(t), dataclasses.asdict(m), dataclasses.asdict(params.finetune),
                      classes, _blocks(train_cols[column]), train_cols["label"], _blocks(val_cols[column]), val_cols["label"], *code)
    ckpt = Path(args.checkpoints)
    if rank_zero:
        discard_foreign_checkpoints(ckpt, key)  # other params, data or code: start afresh
        resume_point(ckpt)  # removes checkpoints cut by a kill or a full disk; refuses planted pickles
        # The initial weights, before any step (and before LoRA wraps the model): the audit measures how far training moved them.
        save_model(model, spec, t.input, image_size, args.init)

    model = apply_strategy(model, params.finetune)
    trainable, total = count_trainable(model)
    convert = functools.partial(to_pixel_values, spec=spec)
    train_ds = ImageDataset(train_cols[column], train_cols["label"], convert)
    val_ds = ImageDataset(val_cols[column], val_cols["label"], convert)
    weights = balanced_weights(train_cols["label"], len(classes)) if t.class_weighting == "balanced" else None

    from dvclive import Live

    trainer = make_trainer(model, train_ds, val_ds, classes, t, ckpt, class_weights=weights, good=params.data.good_class)
    trainer.accelerator.wait_for_everyone()  # under DDP every rank must see the same checkpoints
    resume = resume_point(ckpt)  # the highest-numbered complete one, passed explicitly
    live = None
    if trainer.is_world_process_zero():
        live = Live(args.live, save_dvc_exp=False, dvcyaml=False, report=None)
        trainer.add_callback(EpochLog(live))

    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except OSError as exc:  # disk full or read-only while writing a checkpoint: the next run removes the partial one
        raise VitinspectError(f"{exc.filename or args.checkpoints}: cannot write ({exc.strerror or exc})") from None
    wall = time.perf_counter() - start
    bad = diverged(trainer.state.log_history)
    if bad:
        raise VitinspectError(f"params.yaml: train.lr={t.lr:g}: training diverged ({bad['key']} is {bad['value']} at epoch "
                              f"{bad['epoch']:g}), so no model or metrics are written; lower train.lr")

    if trainer.is_world_process_zero():
        live.end()
        last = [e for e in trainer.state.log_history if "eval_loss" in e][-1]
        summary = {
            "input": t.input,
            "strategy": params.finetune.strategy,
            "parameters": {"total": total, "trainable": trainable},
            "epochs": int(round(last["epoch"])),
            "val": {k[5:]: round(float(v), 6) for k, v in last.items() if k.startswith("eval_") and "runtime" not in k and "per_second" not in k},
            # The last epoch's mean training loss, from the log (a resumed run's result.training_loss covers fewer steps).
            "train_loss": round(float([e["loss"] for e in trainer.state.log_history if "loss" in e][-1]), 6),
        }
        info = {
            "images_per_second": round(float(result.metrics["train_samples_per_second"]), 1),
            "wall_seconds": round(wall, 1),
            "device": str(trainer.args.device),
            "bf16": bool(trainer.args.bf16),
            "world_size": int(trainer.args.world_size),
            "resumed": bool(resume),
            "threads": threads,
        }
        with all_or_nothing():
            save_model(plain_model(model), spec, t.input, image_size, args.out)
            write_json(args.metrics, summary)
            write_json(args.run_info, info)
        shutil.rmtree(ckpt, ignore_errors=True)  # the run is saved: nothing left to resume
        print(f"train: {t.input}, {params.finetune.strategy}, {trainable}/{total} trainable; "
              f"val macro-F1 {summary['val']['macro_f1']:.3f} (defects {summary['val']['macro_f1_defects']:.3f}), "
              f"{params.data.good_class} recall {summary['val'].get('recall_' + params.data.good_class, float('nan')):.3f}; "
              f"{info['images_per_second']} img/s, {wall:.0f} s")


if __name__ == "__main__":
    runtime.run_stage(main)
