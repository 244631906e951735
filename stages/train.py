"""Stage `train`: fine-tune (or train from scratch) the ViT with the HF Trainer.

Runs unchanged under ``torchrun --nproc_per_node N`` (DDP); only rank 0 writes outputs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, load_dataset_dir, write_json
from vitinspect.model.strategies import plain_model
from vitinspect.model.training import discard_foreign_checkpoints, resume_point
from vitinspect.model.training_run import (collapse_line, initial_model, resume_fingerprint, run_training, training_data,
                                           training_report)
from vitinspect.model.vit import save_model


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory")
    ap.add_argument("--pretrained", default="models/pretrain", help="the pretrain stage's encoder (read when model.source is pretrain)")
    ap.add_argument("--unit-space", default=None, help="nsoartc's unit space (.npz): where a conv-stem model's crop box comes from (model.crop)")
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
    t, m, good = params.train, params.model, params.data.good_class
    threads = runtime.set_threads(t.threads)
    data = training_data(load_dataset_dir(args.data), t)
    model, spec = initial_model(m, t.seed, data, args.pretrained, args.data, args.unit_space)
    key = resume_fingerprint(t, m, params.finetune, data, __file__, args.pretrained)
    ckpt = Path(args.checkpoints)
    if int(os.environ.get("RANK", "0")) == 0:  # set by torchrun; 0 in a plain run
        discard_foreign_checkpoints(ckpt, key)  # other params, data or code: start afresh
        resume_point(ckpt)  # removes checkpoints cut by a kill or a full disk; refuses planted pickles
        # The initial weights, before any step (and before LoRA wraps the model): the audit measures how far training moved them.
        save_model(model, spec, t.input, data.image_size, args.init)

    run = run_training(model, spec, data, t, params.finetune, good, ckpt, args.live)
    if run.trainer.is_world_process_zero():
        run.live.end()
        summary, info = training_report(run, t.input, params.finetune.strategy, threads, data.val["label"], len(data.classes),
                                        t.best_on_val)
        with all_or_nothing():
            save_model(plain_model(run.model), spec, t.input, data.image_size, args.out)
            write_json(args.metrics, summary)
            write_json(args.run_info, info)
        shutil.rmtree(ckpt, ignore_errors=True)  # the run is saved: nothing left to resume
        print(f"train: {t.input}, {params.finetune.strategy}, {run.trainable}/{run.total} trainable; "
              f"val macro-F1 {summary['val']['macro_f1']:.3f} (defects {summary['val']['macro_f1_defects']:.3f}), "
              f"{good} recall {summary['val'].get('recall_' + good, float('nan')):.3f}; "
              f"{info['images_per_second']} img/s, {run.wall_seconds:.0f} s")
        if summary["collapsed"]:
            print(collapse_line(summary, data.val["label"], len(data.classes)))


if __name__ == "__main__":
    runtime.run_stage(main)
