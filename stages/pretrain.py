"""Stage `pretrain`: masked-autoencoder pretraining on unlabeled parts, for ``model.source: pretrain``.

Under any other source it writes constant placeholders, in a fraction of a second and without
importing torch, so the default pipeline never pays for pretraining and ``train`` (which depends on
``models/pretrain``) does not rerun when only ``pretrain.*`` changes. Runs unchanged under
``torchrun --nproc_per_node N`` (DDP); only rank 0 writes.
"""

from __future__ import annotations

import os

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, save_figure, write_json
from vitinspect.model.no_pretraining import CURVE, EMPTY_CURVE, PLACEHOLDER, placeholder_figure, placeholder_note


def write_placeholders(out: str, live: str, figure: str) -> None:
    """The same bytes every time: downstream stages see no change."""
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / PLACEHOLDER).write_text(placeholder_note())
    with atomic_path(live, is_dir=True) as tmp:
        (tmp / CURVE).parent.mkdir(parents=True)
        (tmp / CURVE).write_text(EMPTY_CURVE)  # an empty curve
    with atomic_path(figure) as tmp:
        placeholder_figure().save(tmp, format="PNG")


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

    # Only here: these imports (torch, transformers, scipy) took 8 s on this 2-core machine, which the skipped stage never pays.
    from dvclive import Live

    from vitinspect.composite.nsoartc import load_unit_space
    from vitinspect.model.pretraining import pretrain_mae, pretrained_encoder
    from vitinspect.model.vit import image_processor
    from vitinspect.visualization.figures import mae_panels

    q = params.pretrain
    runtime.set_threads(params.train.threads)
    space = load_unit_space(args.unit_space) if q.input == "nsoartc" else None
    rank_zero = int(os.environ.get("RANK", "0")) == 0
    live = Live(args.live, save_dvc_exp=False, dvcyaml=False, report=None) if rank_zero else None
    run = pretrain_mae(params.data, q, params.model, params.nsoartc, space, live)
    if not rank_zero:
        return
    live.end()
    encoder, (original, masked, recon, pasted, loss) = pretrained_encoder(run, q)
    with all_or_nothing():
        save_figure(mae_panels(original, masked, recon, pasted,
                               f"MAE on {q.input}, mask ratio {q.mask_ratio}: loss {loss:.4f} on these parts"), args.figure)
        with atomic_path(args.out, is_dir=True) as tmp:
            encoder.save_pretrained(tmp, safe_serialization=True)
            image_processor(run.spec).save_pretrained(tmp)
        write_json(args.run_info, run.info)  # timings vary run to run: a log beside the outputs, not one of them
    print(f"pretrain: {q.n_parts} {q.input} parts x {q.epochs} epochs, reconstruction loss {run.losses[0]:.4f} -> {run.losses[-1]:.4f}; "
          f"{run.metrics['train_samples_per_second']:.0f} img/s, {run.train_seconds:.0f} s (+{run.render_seconds:.0f} s rendering)")


if __name__ == "__main__":
    runtime.run_stage(main)
