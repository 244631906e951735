"""Stage `prepare`: render the synthetic connector parts and a gallery of them."""

from __future__ import annotations

from _boot import cli, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.dataset import SPLITS, chunk_ranges, chunk_size, from_chunks, parts_features, run_chunks
from vitinspect.params import load_params, resolve_workers
from vitinspect.render import plan, render_parts
from vitinspect.storage import all_or_nothing, figure_alongside, save_dataset, scratch_dir


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", required=True, type=cli.output_path, help="dataset directory")
    ap.add_argument("--gallery", required=True, type=cli.output_path, help="PNG: one row per class, every view")
    args = ap.parse_args(argv)

    p = load_params(args.params).data
    num_proc = resolve_workers(p.num_proc)
    import datasets  # after the params check: a bad params.yaml is refused before the heavy imports
    labels, splits = plan(p)
    features = parts_features(p.classes, p.views, p.image_size)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in p.classes if (labels == c).any()]

    def draw():  # in a process of its own where the stage may use two (figure_alongside)
        from vitinspect.figures import gallery

        return gallery(render_parts(p, firsts, labels), p.classes, p.views)

    # The gallery is drawn beside the chunks (forked before their workers start), not after them.
    with scratch_dir(args.out) as scratch, all_or_nothing(), figure_alongside(draw, args.gallery, background=num_proc > 1):
        # Each split in chunks of parts, rendered by num_proc processes and written as Arrow files as they
        # go; the chunks depend on the image size only, so the saved bytes never depend on num_proc.
        jobs, paths = [], {s: [] for s in SPLITS}
        for s in SPLITS:
            idx = np.flatnonzero(splits == s)
            for a, b in chunk_ranges(len(idx), chunk_size(p.image_size)):
                paths[s].append(scratch / f"{s}-{len(paths[s]):05d}.arrow")
                jobs.append((render_parts, (p, idx[a:b], labels), (paths[s][-1], features, p.classes)))
        _, prints = run_chunks(jobs, num_proc, paths)
        ds = datasets.DatasetDict({s: from_chunks(paths[s], features, prints[s]) for s in SPLITS})
        save_dataset(ds, args.out, views=list(p.views), classes=list(p.classes))
    sizes = ", ".join(f"{k}={len(v)}" for k, v in ds.items())
    print(f"prepare: {len(labels)} parts ({sizes}) in {num_proc} processes -> {args.out}")


if __name__ == "__main__":
    cli.run_stage(main)
