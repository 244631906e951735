"""Stage `prepare`: the parts data set and a gallery of it: rendered (``data.source: render``) or read from
the user's image folders (``data.source: folders``, vitinspect.data.user_parts)."""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.config.params import load_params, resolve_workers
from vitinspect.data.parts_dataset import make_parts, plan_parts
from vitinspect.core.storage import all_or_nothing, figure_alongside, save_dataset, scratch_dir


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", required=True, type=runtime.output_path, help="dataset directory")
    ap.add_argument("--gallery", required=True, type=runtime.output_path, help="PNG: one row per class, every view")
    args = ap.parse_args(argv)

    p = load_params(args.params).data
    num_proc = resolve_workers(p.num_proc)
    plan = plan_parts(p)
    firsts = plan.firsts()

    def draw():  # in a process of its own where the stage may use two (figure_alongside)
        from vitinspect.visualization.figures import gallery

        return gallery(plan.columns(firsts), p.classes, p.views, mask=p.source == "render" and p.renderer == "blender")

    # The gallery is drawn beside the chunks (forked before their workers start), not after them.
    with scratch_dir(args.out) as scratch, all_or_nothing(), figure_alongside(draw, args.gallery, background=num_proc > 1):
        ds, meta = make_parts(plan, scratch, num_proc)
        save_dataset(ds, args.out, views=list(p.views), classes=list(p.classes), **meta)
    sizes = ", ".join(f"{k}={len(v)}" for k, v in ds.items())
    source = f"from {p.folders.path}" + (f", {len(meta['skipped'])} skipped" if meta.get("skipped") else "") if meta else "rendered"
    print(f"prepare: {sum(len(v) for v in ds.values())} parts {source} ({sizes}) in {num_proc} processes -> {args.out}")


if __name__ == "__main__":
    runtime.run_stage(main)
