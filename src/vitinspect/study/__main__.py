"""`make study`: the source's five findings as `dvc exp` runs, and a report with their numbers.

    python -m vitinspect.study run      # queue the experiments, run them, write the report
    python -m vitinspect.study report   # (re)write the report from the experiments already run

The plan is a baseline (the default params) repeated over several training seeds, whose spread
decides which differences are real, plus one run for every other setting. Experiments are named
``study-<setting>-s<seed>``; the report reads them back with ``dvc exp show --json`` and the
committed files of each experiment (``git show <rev>:<path>``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitinspect.core.errors import VitinspectError
from vitinspect.core.runtime import output_path, run_stage
from vitinspect.study.arguments import check_experiments, check_numbers
from vitinspect.study.interrupt import Interrupted
from vitinspect.study.plan import RENDERERS, plan
from vitinspect.study.report import write_report
from vitinspect.study.runs import record_run, run_plan


PLANS = ("full", "toy", "f6", "pretrain", "pretrain-raw", "blender")


def plans(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in PLANS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown plan {bad[0] if bad else value!r}; choose from {', '.join(PLANS)}")
    return kinds


def overrides(items: list[str]) -> dict[str, str]:
    """--set KEY=VALUE ... -> {KEY: VALUE}: base overrides for every experiment of the plan (dvc exp run -S)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(c.isspace() for c in key):
            raise VitinspectError(f"--set must be KEY=VALUE (a params.yaml key, e.g. data.n_images=1000), got {item[:80]!r}")
        out[key.strip()] = value
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--plan", type=plans, default="full", metavar="PLAN[,PLAN]",
                    help=f"one or more of {', '.join(PLANS)}, comma-separated; pretrain: F4/F5 of an NSOARTC-pretrained start and "
                         "label efficiency (issue 17); pretrain-raw: the same from an encoder pretrained on raw views (issue 25); "
                         "blender: F1-F3 and F6 on Blender parts (issue 26)")
    ap.add_argument("--only", choices=["F6", "pretrain", "renderers"],
                    help="rewrite only this finding's section(s) of the report (the f6, pretrain and renderer plans imply it)")
    ap.add_argument("--seeds", type=int, default=3, help="baseline repetitions (training seeds)")
    ap.add_argument("--pretrained", help="a local ViT checkpoint to add to F5")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every experiment (e.g. a GPU size)")
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--all-commits", action="store_true", help="report on experiments of every commit (dvc exp show -A), not HEAD's only")
    ap.add_argument("--out", default="reports/study.md")
    args = ap.parse_args(argv)
    output_path(args.out, file=True)
    if args.action == "run":  # everything checked before anything is queued
        extra = overrides(args.set)
        check_numbers(args.seeds, args.timeout)
        exps = [e for kind in args.plan for e in plan(kind, args.seeds, args.pretrained)]
        check_experiments(exps, extra)
        output_path(str(Path(args.out).with_suffix(".runs.json")), file=True)
        record_run(Path(args.out).with_suffix(".runs.json"), args.plan, args.seeds, run_plan(exps, extra, args.timeout))
    implied = ({"f6": "F6", "pretrain": "pretrain", "pretrain-raw": "pretrain", **dict.fromkeys(RENDERERS, "renderers")}.get(args.plan[0])
               if len(args.plan) == 1 else None)
    write_report(Path(args.out), only=args.only or implied, all_commits=args.all_commits)


def interruptible(argv) -> None:
    """main, where an interrupt ends in one line and the shell's code for the signal (130 for Ctrl-C)."""
    try:
        main(argv)
    except Interrupted as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:  # before or after the queue: nothing to clean up
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_stage(interruptible, sys.argv[1:])
