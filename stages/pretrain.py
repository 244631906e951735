"""Stage `pretrain`: masked-autoencoder pretraining on unlabeled parts, for ``model.source: pretrain``.

Under any other source it writes constant placeholders, in a fraction of a second and without
importing torch, so the default pipeline never pays for pretraining and ``train`` (which depends on
``models/pretrain``) does not rerun when only ``pretrain.*`` changes. Runs unchanged under
``torchrun --nproc_per_node N`` (DDP); only rank 0 writes.
"""

from __future__ import annotations

import json
import os

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.core.errors import VitinspectError
from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, write_json

PLACEHOLDER = "placeholder.json"
NOTE = {"pretrained": False, "why": "model.source is not 'pretrain': nothing was pretrained (set model.source: pretrain)"}


def write_placeholders(out: str, live: str, figure: str) -> None:
    """The same bytes every time: downstream stages see no change."""
    from PIL import Image, ImageDraw

    text = json.dumps(NOTE, indent=2, sort_keys=True) + "\n"
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / PLACEHOLDER).write_text(text)
    with atomic_path(live, is_dir=True) as tmp:
        curve = tmp / "plots" / "metrics"
        curve.mkdir(parents=True)
        (curve / "reconstruction_loss.tsv").write_text("step\treconstruction_loss\n")  # an empty curve
    img = Image.new("L", (360, 24), 255)
    ImageDraw.Draw(img).text((6, 6), "no pretraining: model.source is not 'pretrain'", fill=0)
    with atomic_path(figure) as tmp:
        img.save(tmp, format="PNG")


def load_unit_space(path: str):
    import numpy as np

    try:
        with np.load(path) as z:
            return z["mean"], z["std"]
    except (OSError, KeyError, ValueError) as exc:
        raise VitinspectError(f"{path}: cannot read the unit space ({type(exc).__name__}); rerun nsoartc (dvc repro)") from None


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--unit-space", required=True, help="nsoartc's unit space (.npz): the composites train sees")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="pretrained encoder (save_pretrained ViTModel)")
    ap.add_argument("--live", required=True, type=runtime.output_path, help="dvclive directory: reconstruction loss per epoch")
    # dvclive/pretrain is a cached out (not cache: false): DVC saves no run cache for a stage with an uncached
    # output that is not a plot or metric, and the run cache is what lets every fine-tuning experiment reuse one pretraining.
    ap.add_argument("--figure", required=True, type=runtime.output_path, help="PNG: masked inputs and reconstructions")
    ap.add_argument("--run-info", required=True, type=runtime.output_path,
                    help="JSON: images/s, wall time, device (varies run to run: a log, not a DVC out)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    if params.model.source != "pretrain":
        write_placeholders(args.out, args.live, args.figure)
        print(f"pretrain: skipped (model.source is {params.model.source!r}); placeholders written")
        return

    import tempfile
    import time

    from dvclive import Live

    from vitinspect.visualization.figures import mae_panels
    from vitinspect.model.prediction import to_pixel_values
    from vitinspect.model.vit import InputSpec
    from vitinspect.model.pretraining import (
        LossLog,
        UnlabeledImages,
        as_representation,
        build_mae,
        encoder_as_vit,
        mae_config,
        make_mae_trainer,
        reconstruct,
        unlabeled_views,
    )
    from vitinspect.core.storage import save_figure

    q, d = params.pretrain, params.data
    mean, std = load_unit_space(args.unit_space) if q.input == "nsoartc" else (None, None)
    start = time.perf_counter()
    images = as_representation(unlabeled_views(d, q.n_parts, q.seed), d.views, q.input, mean, std, params.nsoartc)
    render_s = time.perf_counter() - start
    spec = InputSpec(d.image_size)
    mae = build_mae(mae_config(params.model, d.image_size, q), q.seed)

    rank_zero = int(os.environ.get("RANK", "0")) == 0
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_mae_trainer(mae, UnlabeledImages(images), spec, q, scratch)
        live = Live(args.live, save_dvc_exp=False, dvcyaml=False, report=None) if rank_zero else None
        log = LossLog(live)
        if rank_zero:
            trainer.add_callback(log)
        start = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - start
    if not rank_zero:
        return
    live.end()
    original, masked, recon, pasted, loss = reconstruct(mae, to_pixel_values(images[:6], spec), q.seed)
    encoder = encoder_as_vit(mae.float())
    encoder.config.vitinspect_pretrain = {"input": q.input, "n_parts": q.n_parts, "epochs": q.epochs, "mask_ratio": q.mask_ratio,
                                          "norm_pix_loss": q.norm_pix_loss, "reconstruction_loss": log.losses}
    from transformers import ViTImageProcessorPil

    proc = ViTImageProcessorPil(size={"height": spec.size, "width": spec.size}, image_mean=list(spec.mean),
                                image_std=list(spec.std), do_resize=True, do_normalize=True, do_rescale=True)
    with all_or_nothing():
        save_figure(mae_panels(original, masked, recon, pasted,
                               f"MAE on {q.input}, mask ratio {q.mask_ratio}: loss {loss:.4f} on these parts"), args.figure)
        with atomic_path(args.out, is_dir=True) as tmp:
            encoder.save_pretrained(tmp, safe_serialization=True)
            proc.save_pretrained(tmp)
        write_json(args.run_info, {  # timings vary run to run: a log beside the outputs, not one of them
            "images_per_second": round(float(result.metrics["train_samples_per_second"]), 1),
            "render_seconds": round(render_s, 1), "train_seconds": round(train_s, 1),
            "device": str(trainer.args.device), "bf16": bool(trainer.args.bf16), "world_size": int(trainer.args.world_size)})
    print(f"pretrain: {q.n_parts} {q.input} parts x {q.epochs} epochs, reconstruction loss {log.losses[0]:.4f} -> {log.losses[-1]:.4f}; "
          f"{result.metrics['train_samples_per_second']:.0f} img/s, {train_s:.0f} s (+{render_s:.0f} s rendering)")


if __name__ == "__main__":
    runtime.run_stage(main)
