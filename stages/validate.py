"""Stage `validate`: check the whole params.yaml before any other stage runs.

DVC deletes a stage's outputs before it runs the stage, so a stage that refuses bad params has
already lost them. This stage runs first (every other stage depends on its output) and has nothing
to lose: its output is persisted and holds no param value, so its bytes stay the same while params
stay valid and it never makes another stage rerun. It imports no torch or transformers: a bad
params.yaml is refused in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.config.params import load_params, resolve_workers
from vitinspect.core.errors import VitinspectError
from vitinspect.data.folder_checks import checked_lot, checked_plan
from vitinspect.core.storage import write_text
from vitinspect.evaluation.gate import too_few



def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", required=True, type=runtime.output_path, help="a small file whose bytes never change (the others' dependency)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    # Every section, named here so that dvc.yaml's params list (checked against this script) holds them all.
    sections = {"data": params.data, "nsoartc": params.nsoartc, "model": params.model, "finetune": params.finetune,
                "train": params.train, "pretrain": params.pretrain, "evaluate": params.evaluate, "attention": params.attention, "audit": params.audit,
                "bundle": params.bundle, "baseline": params.baseline, "lot": params.lot, "gate": params.gate}
    # The user's folders are checked here too, every view decoded once as prepare and lot will decode it: a bad part
    # stops the run before DVC reaches them and removes their outputs (vitinspect.data.folder_checks).
    num_proc = resolve_workers(params.data.num_proc)
    if params.data.source == "folders":
        found = checked_plan(params.data, params.nsoartc.min_unit_space, num_proc)
        good = sum(q.split == "train" and q.label == params.data.good_class for q in found.parts)
        problem = too_few(good, params.data.grid.rows, params.data.grid.cols)
        if problem:
            raise VitinspectError(f"{params.data.folders.path}: {problem}")
        print(f"validate: {len(found.parts)} parts in {params.data.folders.path} decoded ({found.layout} layout"
              + (f", {len(found.skipped)} skipped" if found.skipped else "") + f", {num_proc} processes)")
    if params.lot.source == "folders":
        lot = checked_lot(params.lot, params.data, num_proc)
        print(f"validate: lot of {len(lot.parts)} parts in {params.lot.folders.path} decoded ({lot.layout})")
    valid = json.dumps({"params": "valid", "sections": sorted(sections)}) + "\n"  # no value: the same bytes while valid
    out = Path(args.out)
    if not (out.is_file() and out.read_text() == valid):
        write_text(out, valid)
    print(f"validate: {args.params} is valid")


if __name__ == "__main__":
    runtime.run_stage(main)
