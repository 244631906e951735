"""Stage `prepare`: the parts data set and a gallery of it: rendered (``data.source: render``) or read from
the user's image folders (``data.source: folders``, vitinspect.data.user_parts)."""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.data.arrow import SPLITS, chunk_ranges, chunk_size, from_chunks, parts_features, run_chunks
from vitinspect.config.params import load_params, resolve_workers
from vitinspect.data.geometry import plan
from vitinspect.data.synthetic import render_parts
from vitinspect.core.storage import all_or_nothing, figure_alongside, save_dataset, scratch_dir


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", required=True, type=runtime.output_path, help="dataset directory")
    ap.add_argument("--gallery", required=True, type=runtime.output_path, help="PNG: one row per class, every view")
    args = ap.parse_args(argv)

    p = load_params(args.params).data
    num_proc = resolve_workers(p.num_proc)
    import datasets  # after the params check: a bad params.yaml is refused before the heavy imports
    features = parts_features(p.classes, p.views, p.image_size)
    meta = {}
    if p.source == "folders":
        from vitinspect.data.user_parts import plan as folder_plan
        from vitinspect.data.user_parts import read_parts

        scanned = folder_plan(p)
        parts = scanned.parts
        labels = np.array([q.label for q in parts], dtype=object)
        splits = np.array([q.split for q in parts], dtype=object)

        def job(idx):  # decode those parts: (columns, skipped)
            return read_parts, ([parts[i] for i in idx], p.image_size, p.folders.on_bad_part)

        def first_parts(idx):
            return read_parts([parts[i] for i in idx], p.image_size, p.folders.on_bad_part)[0]
    else:
        labels, splits = plan(p)

        def job(idx):
            return render_parts, (p, idx, labels)

        def first_parts(idx):
            return render_parts(p, idx, labels)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in p.classes if (labels == c).any()]

    def draw():  # in a process of its own where the stage may use two (figure_alongside)
        from vitinspect.visualization.figures import gallery

        return gallery(first_parts(firsts), p.classes, p.views, mask=p.source == "render" and p.renderer == "blender")

    # The gallery is drawn beside the chunks (forked before their workers start), not after them.
    with scratch_dir(args.out) as scratch, all_or_nothing(), figure_alongside(draw, args.gallery, background=num_proc > 1):
        # Each split in chunks of parts, made by num_proc processes and written as Arrow files as they
        # go; the chunks depend on the image size only, so the saved bytes never depend on num_proc.
        jobs, paths = [], {s: [] for s in SPLITS}
        for s in SPLITS:
            idx = np.flatnonzero(splits == s)
            for a, b in chunk_ranges(len(idx), chunk_size(p.image_size)):
                paths[s].append(scratch / f"{s}-{len(paths[s]):05d}.arrow")
                jobs.append((*job(idx[a:b]), (paths[s][-1], features, p.classes)))
        extras, prints = run_chunks(jobs, num_proc, paths)
        ds = datasets.DatasetDict({s: from_chunks(paths[s], features, prints[s]) for s in SPLITS})
        if p.source == "folders":
            skipped = scanned.skipped + [x for e in extras if e for x in e]
            meta = {"source": "folders", "layout": scanned.layout, "good_class": p.good_class,
                    "masks": int(sum(q.mask is not None for q in parts)), "skipped": skipped}
        save_dataset(ds, args.out, views=list(p.views), classes=list(p.classes), **meta)
    sizes = ", ".join(f"{k}={len(v)}" for k, v in ds.items())
    source = f"from {p.folders.path}" + (f", {len(meta['skipped'])} skipped" if meta.get("skipped") else "") if meta else "rendered"
    print(f"prepare: {sum(len(v) for v in ds.values())} parts {source} ({sizes}) in {num_proc} processes -> {args.out}")


if __name__ == "__main__":
    runtime.run_stage(main)
