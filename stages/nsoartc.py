"""Stage `nsoartc`: RT-method composites, normalised by a unit space of passed training parts."""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.composite.nsoartc import composite, save_unit_space
from vitinspect.composite.nsoartc_dataset import compose_splits, first_of_each_class, fit_unit_space, nsoartc_report, split_chunks
from vitinspect.config.params import load_params, resolve_workers
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import (all_or_nothing, atomic_path, dataset_meta, figure_alongside, load_dataset_dir, save_dataset,
                                     scratch_dir, write_json)
from vitinspect.data.arrow import good_index, label_names


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--parts", required=True, help="prepare's dataset directory")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="NSOARTC dataset directory")
    ap.add_argument("--unit-space", required=True, type=runtime.output_path, help=".npz of the unit-space mean and std")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: class counts and defect contrast")
    ap.add_argument("--figure", required=True, type=runtime.output_path, help="PNG: raw vs NSOARTC per class")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, views, good = params.nsoartc, list(params.data.views), params.data.good_class
    num_proc = resolve_workers(params.data.num_proc)
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    meta = dataset_meta(args.parts)
    if meta.get("views") != views:  # the composites depend on which view is which: never guess
        raise VitinspectError(f"{args.parts}: holds views {meta.get('views')} but data.views lists {views} (order matters); rerun prepare")
    chunks = split_chunks(parts)
    space = fit_unit_space(args.parts, chunks, views, good_index(args.parts, classes, good), good, p, num_proc)

    # The figure: the first part of each class, composed as pass 2 composes it, drawn in a process forked now, beside pass 2.
    shown, shown_views, masks = first_of_each_class(args.parts, parts)  # read here, not in the fork

    def draw():
        from vitinspect.visualization.figures import raw_vs_composite

        comp = composite(shown_views, views, space, p.window, p.gain, p.eps)
        return raw_vs_composite(shown_views[:, views.index("center")], comp, np.array(classes)[shown], masks, classes)

    with scratch_dir(args.out) as scratch, all_or_nothing(), figure_alongside(draw, args.figure, background=num_proc > 1):
        splits, summaries = compose_splits(args.parts, chunks, views, space, p, classes, scratch, num_proc)
        report = nsoartc_report(summaries, chunks, classes, good, space, meta)
        write_json(args.metrics, report, hint="check nsoartc.eps, nsoartc.window and the data params")
        with atomic_path(args.unit_space) as tmp:
            save_unit_space(space, tmp)
        save_dataset(splits, args.out, classes=classes, input_views=views)
    print(f"nsoartc: unit space of {space.n} {good} parts; defect contrast {report['defect_contrast']} ({num_proc} processes)")


if __name__ == "__main__":
    runtime.run_stage(main)
