"""Stage `lot`: a production-like evaluation lot, rendered apart from the training data.

Its own seed, size and passed share (`lot.*`), the rendering settings of `data.*`, composited
against the training unit space (`data/unit_space.npz`), so `evaluate` sees what the line would.
"""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.composite.lot import make_lot
from vitinspect.composite.nsoartc import load_unit_space
from vitinspect.config.params import load_params, resolve_workers
from vitinspect.core.storage import save_dataset, scratch_dir


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--unit-space", required=True, help=".npz of the unit-space mean and std (nsoartc stage)")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="dataset directory of the lot")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    space = load_unit_space(args.unit_space, params.data.image_size)
    num_proc = resolve_workers(params.data.num_proc)
    with scratch_dir(args.out) as scratch:
        lot = make_lot(params.lot, params.data, params.nsoartc, space, scratch, num_proc)
        # The summary travels with the parts (evaluate writes it to reports/lot.json): an uncached out here would
        # keep DVC's run cache from serving this stage, and a rendered lot can take minutes (Blender).
        save_dataset(lot.dataset, args.out, summary=lot.summary, **lot.meta)  # one split, so readers check its rows like any other
    print(f"lot: {lot.said} -> {args.out}")


if __name__ == "__main__":
    runtime.run_stage(main)
