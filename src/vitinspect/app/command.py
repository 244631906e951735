"""`vitinspect` (and `python -m vitinspect`): judge new parts with an inspection bundle.

    vitinspect inspect PART... [--bundle DIR] [--out results.csv|.json] [--explain DIR] [--engine torch|onnx]
    vitinspect inspect --watch DIR --out results.csv      judge part folders as they appear (vitinspect.app.watch)
    vitinspect inspect --calibration-report               the OOD guard's calibration and figures
    vitinspect render --n 20 --out lot/ [--seed S]        try-it parts with a truth.csv (and labels.csv: a folders data set)
                                                          into a new or empty folder (--force: replace an earlier lot)
    vitinspect export [--bundle DIR]                      (re)write model.onnx into the bundle

Exit codes: 0 every part judged, 1 some parts not judged (their rows carry an ``error``),
2 bad arguments or a bad bundle (one line on stderr), 130 interrupted (143 SIGTERM; --watch writes every
row judged before it stops), 141 stdout closed by its reader (``| head``; --out is written first).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

from vitinspect.app.lot_reader import (check_output, ends_in_newline, find_parts, is_part, result_parts, safe_text,
                                       spreadsheet_cell)
from vitinspect.app.results import columns, judge_folders, judge_read, print_rows, quiet_stdout, reason, write_results
from vitinspect.app.watch import Watcher
from vitinspect.core.errors import VitinspectError
from vitinspect.deploy import bundle as bundle_format
from vitinspect.deploy.engine import make_engine, reexport

DEFAULT_BUNDLE = "models/bundle"
MAX_RENDER = 100_000  # parts one `vitinspect render` writes (four files each)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        raise VitinspectError(f"arguments: {message}")


def _bounded(option: str, kind, what: str, low, high):
    """argparse type: a finite ``kind`` (int or float) in [low, high]; else one line naming the option and the
    value (raised past argparse, whose own message would not say what is allowed)."""

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or not low <= value <= high:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise VitinspectError(f"{option} must be {what} ({_num(low)} to {_num(high)}), got {shown!r}")
        return value

    return parse


def _num(x) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _seconds(option: str, high: float = 86_400):
    return _bounded(option, float, "a positive number of seconds", 0.001, high)


def _check_explain(folder: str) -> None:
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise VitinspectError(f"--explain {folder}: exists and is not a folder; left as it is")
    if importlib.util.find_spec("torch") is None:
        raise VitinspectError("--explain draws gradient x attention with torch, which is not installed here")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitinspectError(f"--explain {folder}: cannot make the folder ({exc.strerror})") from None


def cmd_watch(args, b) -> int:
    folder = Path(args.watch)
    if not folder.is_dir():
        raise VitinspectError(f"--watch {args.watch}: no such folder")
    if args.parts or args.explain or (args.out and not args.out.endswith(".csv")):
        raise VitinspectError("--watch takes no PART and no --explain, and appends to a .csv --out")
    if is_part(folder, b.views):
        raise VitinspectError(f"--watch {args.watch}: holds view images at its root; watch the folder the part "
                              "folders arrive in")
    cells = set()
    if args.out:
        if not ends_in_newline(args.out):
            raise VitinspectError(f"--out {args.out}: its last row is incomplete (a write cut short); mend or move "
                                  "the file before appending to it")
        cells = result_parts(args.out)
    engine = make_engine(b, args.engine)
    w = Watcher(b.views, b.image_size, folder, args.poll, args.settle, args.timeout, args.max_parts,
                judge=lambda folders, read: judge_read(b, engine, folders, read)[0],
                write=lambda rows: write_results(args.out, rows, b, append=True) if args.out else None,
                show=lambda rows: print_rows(rows, b), cell=lambda p: spreadsheet_cell(safe_text(p)))
    resumed = w.resume(cells) if cells else 0
    print(f"watching {safe_text(folder)} (Ctrl-C to stop)" + (f"; {resumed} part(s) already in {safe_text(args.out)}"
                                                               if resumed else ""), file=sys.stderr)
    return w.run()


def cmd_inspect(args) -> int:
    if args.max_parts is not None and not args.watch:
        raise VitinspectError("--max-parts counts the parts --watch judges; give --watch DIR, or leave --max-parts out")
    b = bundle_format.load(args.bundle)
    if args.engine == "torch":
        if importlib.util.find_spec("torch") is None:
            raise VitinspectError("--engine torch needs torch, which is not installed here; use --engine onnx")
    if args.calibration_report:
        print(json.dumps({"operating_point": b.operating_point, "ood": b.report}, indent=2))
        return 0
    if args.out:
        if Path(args.out).suffix not in (".csv", ".json"):
            raise VitinspectError(f"--out {args.out}: must end in .csv or .json")
        check_output(args.out, "--out", columns(b) if args.watch else None)
    if args.watch:
        return cmd_watch(args, b)
    if not args.parts:
        raise VitinspectError("arguments: give at least one PART folder (or --watch DIR, --calibration-report)")
    folders = find_parts(args.parts, b.views, b.classes)
    if args.explain:
        _check_explain(args.explain)
    engine = make_engine(b, args.engine)
    rows, no_image = judge_folders(b, engine, folders, args.explain)
    if args.out:
        write_results(args.out, rows, b)
    shown = print_rows(rows, b)
    bad = sum(1 for r in rows if r["error"])
    if bad:
        print(f"{bad} of {len(rows)} parts not judged (see the error column)", file=sys.stderr)
    if no_image:
        print(f"{len(no_image)} --explain image(s) not written, the first: {no_image[0]}", file=sys.stderr)
    if not shown:
        return 141
    return 1 if bad or no_image else 0


def cmd_render(args) -> int:
    # Lazy: only `render` needs the params schema and the renderers (yaml, PIL, vitinspect.data); at the top they
    # made every `vitinspect` start 0.13 s slower (0.81 -> 0.94 s, median of 12 runs, time.perf_counter).
    from vitinspect.app.render_output import check_target, write_rendered
    from vitinspect.config.params import defaults_dict, load_params, params_from_dict

    out = Path(args.out)
    check_target(out, args.force)
    if args.params:
        data = load_params(args.params).data
    else:
        learnt = bundle_format.load(args.bundle).data
        if learnt.get("source", "render") != "render":
            raise VitinspectError(f"render: the bundle {args.bundle} learnt from image folders (data.source folders); our "
                                  "renderer cannot draw those parts (give --params with a data.source render params file)")
        data = params_from_dict(defaults_dict() | {"data": defaults_dict()["data"] | learnt}, source="bundle.json").data
    if data.source != "render":
        raise VitinspectError(f"render: {args.params} has data.source {data.source}; our renderer draws only data.source render parts")
    write_rendered(data, args.n, args.seed, out)
    print(f"render: {args.n} parts in {safe_text(out)}/ (seed {args.seed}), truth in {safe_text(out / 'truth.csv')}, "
          f"labels.csv for data.source folders")
    return 0


def cmd_export(args) -> int:
    b = reexport(args.bundle, args.opset)  # checks --opset and the bundle first; proves the new graph
    print(f"export: {b.onnx_path}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="vitinspect", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    i = sub.add_parser("inspect", help="judge parts from their camera views")
    i.add_argument("parts", nargs="*", metavar="PART", help="a part folder, or a lot: a folder of part folders")
    i.add_argument("--bundle", default=DEFAULT_BUNDLE, help=f"inspection bundle directory (default {DEFAULT_BUNDLE})")
    i.add_argument("--out", help="results file, .csv or .json; replaces only an earlier results file (never a folder, "
                   "a link or another program's file)")
    i.add_argument("--explain", metavar="DIR", help="write one PNG per part into DIR (<part>-<hash of its path>.png): "
                   "views, composite, gradient x attention")
    i.add_argument("--engine", choices=("torch", "onnx"), default="onnx", help="onnx (no torch needed; default) or torch")
    i.add_argument("--watch", metavar="DIR", help="judge part folders as they appear in DIR; rows appended to --out")
    i.add_argument("--poll", type=_seconds("--poll", 3600), default=0.2, help="--watch: seconds between looks")
    i.add_argument("--settle", type=_seconds("--settle"), default=0.2,
                   help="--watch: a part is complete when its files have not changed for this many seconds")
    i.add_argument("--timeout", type=_seconds("--timeout", 7 * 86_400), default=60.0,
                   help="--watch: a part still incomplete or unreadable this long after its last change gets an error row")
    i.add_argument("--max-parts", type=_bounded("--max-parts", int, "a positive integer", 1, 10**9), default=None,
                   help="--watch: stop after this many parts")
    i.add_argument("--calibration-report", action="store_true", help="print the OOD guard's calibration and measured figures")
    i.set_defaults(run=cmd_inspect)
    r = sub.add_parser("render", help="render try-it parts (part folders and truth.csv)")
    r.add_argument("--n", type=_bounded("--n", int, "a positive integer", 1, MAX_RENDER), default=20)
    r.add_argument("--out", required=True, help="a new or empty folder (see --force)")
    r.add_argument("--force", action="store_true", help="replace OUT if it is a lot render wrote before (it holds "
                   "truth.csv and labels.csv): everything in it is deleted, so no old part stays beside the new ones")
    r.add_argument("--seed", type=_bounded("--seed", int, "an integer", 0, 2**32 - 1), default=1)
    r.add_argument("--bundle", default=DEFAULT_BUNDLE, help="render as the bundle's data set was (default)")
    r.add_argument("--params", default=None, help="or as this params.yaml's data section")
    r.set_defaults(run=cmd_render)
    e = sub.add_parser("export", help="write model.onnx into the bundle")
    e.add_argument("--bundle", default=DEFAULT_BUNDLE)
    e.add_argument("--opset", type=int, default=17)
    e.set_defaults(run=cmd_export)
    return ap


def _one_line(exc: BaseException) -> str:
    """What main prints for an exception that is not a VitinspectError (as vitinspect.core.runtime.run_stage does)."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{safe_text(exc.filename)}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory (a smaller lot, or fewer parts at once)"
    return f"unexpected {reason(exc)} (a bug: please report it)"


def _bounded_text(exc) -> str:
    text = safe_text(exc)
    return text if len(text) <= 1000 else text[:997] + "..."


def main(argv=None) -> int:
    debug = os.environ.get("VITINSPECT_DEBUG") == "1"
    try:
        args = parser().parse_args(argv)
        return args.run(args)
    except VitinspectError as exc:
        if debug:
            raise
        print(f"error: {_bounded_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        quiet_stdout()
        return 141
    except Exception as exc:  # the catch-all: one line, never a traceback unless asked for
        if debug:
            raise
        print(f"error: {_one_line(exc)}; run with VITINSPECT_DEBUG=1 for the traceback", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
