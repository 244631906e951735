"""Stage `lot`: a production-like evaluation lot, rendered apart from the training data.

Its own seed, size and passed share (`lot.*`), the rendering settings of `data.*`, composited
against the training unit space (`data/unit_space.npz`), so `evaluate` sees what the line would.
"""

from __future__ import annotations

import dataclasses

from _boot import cli, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.dataset import chunk_ranges, chunk_size, from_chunks, lot_features, run_chunks
from vitinspect.errors import VitinspectError
from vitinspect.lot import counts, lot_chunk
from vitinspect.nsoartc import UnitSpace
from vitinspect.params import load_params, resolve_workers
from vitinspect.render import plan
from vitinspect.storage import all_or_nothing, save_dataset, scratch_dir, write_json

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
    ap.add_argument("--out", required=True, type=cli.output_path, help="dataset directory of the lot")
    ap.add_argument("--summary", required=True, type=cli.output_path, help="JSON: the lot's size, seed and class counts")
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
    # rendered and composed by num_proc processes and written as Arrow files as they go.
    labels, _ = plan(data)
    features = lot_features(data.classes, data.image_size)
    with scratch_dir(args.out) as scratch:
        jobs = [(lot_chunk, (data, np.arange(a, b), labels, space, n.window, n.gain, n.eps),
                 (scratch / f"{LOT}-{k:05d}.arrow", features, list(data.classes)))
                for k, (a, b) in enumerate(chunk_ranges(len(labels), chunk_size(data.image_size)))]
        _, prints = run_chunks(jobs, num_proc, {LOT: [out[0] for _, _, out in jobs]})
        ds = from_chunks([out[0] for _, _, out in jobs], features, prints[LOT])
        with all_or_nothing():
            write_json(args.summary, {"n_parts": int(len(labels)), "seed": lot.seed, "passed_ratio": lot.passed_ratio,
                                      "counts": counts(labels, data.classes)})
            save_dataset(datasets.DatasetDict({LOT: ds}), args.out)  # one split, so readers check its rows like any other
    print(f"lot: {len(labels)} parts, {int((labels == 'passed').sum())} passed, seed {lot.seed}, {num_proc} processes -> {args.out}")


if __name__ == "__main__":
    cli.run_stage(main)
