"""Stage `lot`: a production-like evaluation lot, rendered apart from the training data.

Its own seed, size and passed share (`lot.*`), the rendering settings of `data.*`, composited
against the training unit space (`data/unit_space.npz`), so `evaluate` sees what the line would.
"""

from __future__ import annotations

import dataclasses

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.data.arrow import chunk_ranges, chunk_size, from_chunks, lot_features, run_chunks
from vitinspect.core.errors import VitinspectError
from vitinspect.composite.lot import NO_RENDERED_LOT, counts, folder_lot_chunk, lot_chunk
from vitinspect.composite.nsoartc import UnitSpace
from vitinspect.config.params import load_params, resolve_workers
from vitinspect.data.geometry import plan
from vitinspect.core.storage import save_dataset, scratch_dir

LOT = "lot"  # the one split of data/lot


def load_unit_space(path) -> UnitSpace:
    try:
        with np.load(path) as z:
            return UnitSpace(z["mean"], z["std"], int(z["n"]))
    except (OSError, KeyError, ValueError) as exc:
        raise VitinspectError(f"{path}: not a unit space written by the nsoartc stage ({type(exc).__name__}); run dvc repro") from None


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--unit-space", required=True, help=".npz of the unit-space mean and std (nsoartc stage)")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="dataset directory of the lot")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    lot, n = params.lot, params.nsoartc
    data = dataclasses.replace(params.data, seed=lot.seed, n_images=lot.n_parts, passed_ratio=lot.passed_ratio)
    space = load_unit_space(args.unit_space)
    if space.mean.shape[-1] != data.image_size:
        raise VitinspectError(f"{args.unit_space}: unit space of {space.mean.shape[-1]} px but data.image_size is {data.image_size}; run dvc repro")

    num_proc = resolve_workers(data.num_proc)
    import datasets  # after cli: the offline environment is set first

    # In chunks of parts (their size depends on the image size only, so the bytes never depend on num_proc),
    # made and composed by num_proc processes and written as Arrow files as they go.
    features = lot_features(data.classes, data.image_size)
    summary = {"source": lot.source}
    if lot.source == "folders":
        from vitinspect.data.user_parts import scan

        found = scan(lot.folders.path, list(data.views), list(data.classes), on_bad_part=data.folders.on_bad_part, labelled=False)
        parts = found.parts
        labels = np.array([q.label for q in parts], dtype=object)
        ranges = chunk_ranges(len(parts), chunk_size(data.image_size))
        job_args = [(folder_lot_chunk, (parts[a:b], list(data.classes), data.image_size, space, n.window, n.gain, n.eps,
                                        data.folders.on_bad_part)) for a, b in ranges]
        summary.update({"path": lot.folders.path, "layout": found.layout, "scored": found.layout != "unlabelled"})
    elif data.source == "folders":  # our renderer cannot draw the user's parts: no lot, said so
        labels, job_args = np.array([], dtype=object), []
        summary.update({"scored": False, "note": NO_RENDERED_LOT})
    else:
        labels, _ = plan(data)
        ranges = chunk_ranges(len(labels), chunk_size(data.image_size))
        job_args = [(lot_chunk, (data, np.arange(a, b), labels, space, n.window, n.gain, n.eps)) for a, b in ranges]
    with scratch_dir(args.out) as scratch:
        jobs = [(fn, fargs, (scratch / f"{LOT}-{k:05d}.arrow", features, list(data.classes))) for k, (fn, fargs) in enumerate(job_args)]
        extras, prints = run_chunks(jobs, num_proc, {LOT: [out[0] for _, _, out in jobs]})
        ds = from_chunks([out[0] for _, _, out in jobs], features, prints[LOT]) if jobs else datasets.Dataset.from_dict(
            {k: [] for k in features}, features=features)
        skipped = (found.skipped if lot.source == "folders" else []) + [x for e in extras if e for x in e]
        n_parts = len(ds)
        if lot.source == "render" and data.source == "render":
            record = {"n_parts": int(len(labels)), "seed": lot.seed, "passed_ratio": lot.passed_ratio,
                      "counts": counts(labels, data.classes)}
        else:
            kept = [c for c in labels if c is not None]
            record = {**summary, "n_parts": n_parts, "counts": counts(kept, data.classes) if summary["scored"] else None,
                      "skipped": skipped}
        meta = {} if lot.source == "render" and data.source == "render" else {"note": summary.get("note", "")}
        # The summary travels with the parts (evaluate writes it to reports/lot.json): an uncached out here would
        # keep DVC's run cache from serving this stage, and a rendered lot can take minutes (Blender).
        save_dataset(datasets.DatasetDict({LOT: ds}), args.out, summary=record, **meta)  # one split, so readers check its rows like any other
    if lot.source == "render" and data.source == "render":
        print(f"lot: {len(labels)} parts, {int((labels == 'passed').sum())} passed, seed {lot.seed}, {num_proc} processes -> {args.out}")
    else:
        print(f"lot: {n_parts} parts ({summary.get('layout', 'none')}{', not scored' if not summary['scored'] else ''}"
              f"{f', {len(skipped)} skipped' if skipped else ''}) -> {args.out}")


if __name__ == "__main__":
    runtime.run_stage(main)
