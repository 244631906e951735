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

from vitinspect.study.plan import plan
from vitinspect.study.report import write_report
from vitinspect.study.runs import run_plan


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--plan", choices=["full", "toy", "f6", "pretrain"], default="full",
                    help="pretrain: F4/F5 of a pretrained start and label efficiency (issue 17)")
    ap.add_argument("--only", choices=["F6", "pretrain"],
                    help="rewrite only this finding's section(s) of the report (the f6 and pretrain plans imply it)")
    ap.add_argument("--seeds", type=int, default=3, help="baseline repetitions (training seeds)")
    ap.add_argument("--pretrained", help="a local ViT checkpoint to add to F5")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every experiment (e.g. a GPU size)")
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--all-commits", action="store_true", help="report on experiments of every commit (dvc exp show -A), not HEAD's only")
    ap.add_argument("--out", default="reports/study.md")
    args = ap.parse_args(argv)
    if args.action == "run":
        extra = dict(s.split("=", 1) for s in args.set)
        run_plan(plan(args.plan, args.seeds, args.pretrained), extra, args.timeout)
    implied = {"f6": "F6", "pretrain": "pretrain"}.get(args.plan)
    write_report(Path(args.out), only=args.only or implied, all_commits=args.all_commits)


if __name__ == "__main__":
    from vitinspect.cli import run_stage

    run_stage(main, sys.argv[1:])
