"""Stage `nsoartc`: RT-method composites, normalised by a unit space of passed training parts."""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.data.arrow import (SPLITS, Rows, chunk_ranges, chunk_size, columns, from_chunks, imap_ordered, label_names,
                                nsoartc_features, read_rows, run_chunks, run_job)
from vitinspect.core.errors import VitinspectError
from vitinspect.composite.nsoartc import UnitSpaceSums, composite, composite_chunk, passed_channels
from vitinspect.config.params import load_params, resolve_workers
from vitinspect.core.storage import (all_or_nothing, atomic_path, dataset_meta, figure_alongside, load_dataset_dir, save_dataset,
                                scratch_dir, write_json)

RECORD = ("id", "label", "defect_terminal", "tilt", "retraction", "bbox", "mask")


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--parts", required=True, help="prepare's dataset directory")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="NSOARTC dataset directory")
    ap.add_argument("--unit-space", required=True, type=runtime.output_path, help=".npz of the unit-space mean and std")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: class counts and defect contrast")
    ap.add_argument("--figure", required=True, type=runtime.output_path, help="PNG: raw vs NSOARTC per class")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, views = params.nsoartc, list(params.data.views)
    num_proc = resolve_workers(params.data.num_proc)
    import datasets  # after the params check: a bad params.yaml is refused before the heavy imports
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    meta = dataset_meta(args.parts)
    stored = meta.get("views")
    if stored != views:  # the composites depend on which view is which: never guess
        raise VitinspectError(f"{args.parts}: holds views {stored} but data.views lists {views} (order matters); rerun prepare")
    size = parts["train"].features["views"].shape[-1]
    chunks = {s: chunk_ranges(len(parts[s]), chunk_size(size)) for s in SPLITS}

    # Pass 1: the unit space, from the passed training parts' channels, summed chunk by chunk in order.
    good = params.data.good_class
    if good not in classes:
        raise VitinspectError(f"{args.parts}: holds classes {classes}, without data.good_class {good!r}; rerun prepare")
    jobs = [(passed_channels, (Rows(args.parts, "train", a, b, ("views", "label")), views, classes.index(good),
                              p.window, p.eps), None) for a, b in chunks["train"]]
    sums = UnitSpaceSums()
    for channels in imap_ordered(run_job, jobs, num_proc):  # folded as they come: never all at once
        sums.add(channels)
    if sums.n < p.min_unit_space:
        raise VitinspectError(
            f"params.yaml: the unit space has {sums.n} good ({good!r}) training parts, fewer than "
            f"nsoartc.min_unit_space={p.min_unit_space}; raise data.passed_ratio or data.n_images (or bring more good parts)"
        )
    space = sums.space()

    # The figure: the first part of each class (train, then val, then test), composed as pass 2 composes it
    # (composite: the same arithmetic, row by row), drawn in a process forked now, beside pass 2.
    first = {}
    for s in SPLITS:
        labels = columns(parts[s], ["label"])["label"]
        for c in np.unique(labels):
            first.setdefault(int(c), (s, int(np.flatnonzero(labels == c)[0])))
    shown = sorted(first)
    rows = [read_rows(Rows(args.parts, *first[c], first[c][1] + 1, ("views", "mask"))) for c in shown]  # here, not in the fork

    def draw():
        from vitinspect.visualization.figures import raw_vs_composite

        v = np.concatenate([r["views"] for r in rows])
        comp = composite(v, views, space, p.window, p.gain, p.eps)
        masks = np.concatenate([r["mask"] for r in rows]).astype(bool)
        return raw_vs_composite(v[:, views.index("center")], comp, np.array(classes)[shown], masks, classes)

    # Pass 2: composites of every split, chunk by chunk, written as Arrow files as they go.
    features = nsoartc_features(classes, size)
    with scratch_dir(args.out) as scratch, all_or_nothing(), figure_alongside(draw, args.figure, background=num_proc > 1):
        jobs, paths = [], {s: [] for s in SPLITS}
        for s in SPLITS:
            for a, b in chunks[s]:
                paths[s].append(scratch / f"{s}-{len(paths[s]):05d}.arrow")
                jobs.append((composite_chunk, (Rows(args.parts, s, a, b, RECORD + ("views",)), views, space, p.window,
                                               p.gain, p.eps, len(classes)), (paths[s][-1], features, classes)))
        summaries, prints = run_chunks(jobs, num_proc, paths)
        ds = datasets.DatasetDict({s: from_chunks(paths[s], features, prints[s]) for s in SPLITS})

        split_of = [s for s in SPLITS for _ in chunks[s]]
        counts = {s: {c: int(sum(m["count"][i] for m, t in zip(summaries, split_of) if t == s))
                      for i, c in enumerate(classes)} for s in SPLITS}
        total = {k: sum(m[k] for m in summaries) for k in ("in", "n_in", "out", "n_out")}
        # Mean composite inside the defect masks over outside them, per defect class; None where a class
        # has no mask pixel (folders without mask.png): never a made-up figure.
        contrast = {
            c: round(float((total["in"][i] / total["n_in"][i]) / (total["out"][i] / total["n_out"][i])), 4)
            if total["n_in"][i] else None
            for i, c in enumerate(classes)
            if c != good and any(counts[s][c] for s in SPLITS)
        }
        report = {"counts": counts, "defect_contrast": contrast, "unit_space_size": space.n}
        if meta.get("source") == "folders":  # the user's parts: what was read and what was left out
            report["folders"] = {"layout": meta["layout"], "parts_with_mask": meta["masks"],
                                 "skipped": len(meta["skipped"]), "skipped_parts": meta["skipped"]}
        write_json(args.metrics, report, hint="check nsoartc.eps, nsoartc.window and the data params")
        with atomic_path(args.unit_space) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=space.mean, std=space.std, n=np.int64(space.n))
        save_dataset(ds, args.out, classes=classes, input_views=views)
    print(f"nsoartc: unit space of {space.n} {good} parts; defect contrast {contrast} ({num_proc} processes)")


if __name__ == "__main__":
    runtime.run_stage(main)
