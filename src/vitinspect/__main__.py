"""`vitinspect` (and `python -m vitinspect`): judge new parts with an inspection bundle.

    vitinspect inspect PART... [--bundle DIR] [--out results.csv|.json] [--explain DIR] [--engine torch|onnx]
    vitinspect inspect --watch DIR --out results.csv      judge part folders as they appear (vitinspect.watch)
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
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from vitinspect import bundle as bundle_format
from vitinspect.errors import VitinspectError
from vitinspect.part_folders import safe_text, spreadsheet_cell

DEFAULT_BUNDLE = "models/bundle"
BATCH = 64
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


def columns(b) -> list[str]:
    return ["part", "verdict", "class", *[f"p_{c}" for c in b.classes], "ood_score", "ood_flag", "ood_threshold",
            "threshold", "error"]


def rows_for(b, folders, judgement) -> list[dict]:
    t = b.operating_point.get("threshold")
    rows = []
    for i, folder in enumerate(folders):
        row = {"part": safe_text(folder), "verdict": judgement.verdict[i], "class": judgement.cls[i]}
        row.update({f"p_{c}": round(float(judgement.proba[i, k]), 6) for k, c in enumerate(b.classes)})
        row.update({"ood_score": round(float(judgement.ood_score[i]), 4), "ood_flag": bool(judgement.ood_flag[i]),
                    "ood_threshold": round(b.calibration.threshold, 4), "threshold": "argmax" if t is None else t, "error": ""})
        rows.append(row)
    return rows


def error_row(b, folder, message) -> dict:
    row = {c: "" for c in columns(b)}
    row.update({"part": safe_text(folder), "verdict": "", "error": safe_text(message)})
    return row


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return safe_text(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _judge_each(b, engine, views) -> list:
    """Judge a batch; when that fails, each part alone, so a part the engine chokes on loses only its own row.
    Per part: a Judgement of one, or the reason it was not judged. When every part fails, the bundle is at
    fault: a VitinspectError naming it."""
    from vitinspect.inspection import judge

    try:
        j = judge(b, engine, views)
        return [_one(j, k) for k in range(len(views))]
    except VitinspectError:
        raise  # the bundle's own checks: already one line naming the file
    except Exception as exc:  # noqa: BLE001 - isolated below
        first = _reason(exc)
    out = []
    if len(views) > 1:
        for k in range(len(views)):
            try:
                out.append(judge(b, engine, views[k:k + 1]))
            except Exception as exc:  # noqa: BLE001
                out.append(_reason(exc))
    if all(isinstance(o, str) for o in out):
        raise VitinspectError(f"{safe_text(b.path)}: the bundle cannot judge the parts ({first})")
    return out


def _one(j, k):
    """Part ``k`` of a Judgement, as a Judgement of one."""
    from vitinspect.inspection import Judgement

    return Judgement(j.verdict[k:k + 1], j.cls[k:k + 1], j.proba[k:k + 1], j.ood_score[k:k + 1], j.ood_flag[k:k + 1],
                     {name: s[k:k + 1] for name, s in j.scores.items()}, j.images[k:k + 1])


def _joined(js):
    """Judgements of one part each -> one Judgement of them all."""
    from vitinspect.inspection import Judgement

    cat = np.concatenate
    return Judgement(cat([j.verdict for j in js]), cat([j.cls for j in js]), cat([j.proba for j in js]),
                     cat([j.ood_score for j in js]), cat([j.ood_flag for j in js]),
                     {name: cat([j.scores[name] for j in js]) for name in js[0].scores}, cat([j.images for j in js]))


def judge_read(b, engine, folders, read, explain=None) -> tuple[list[dict], list[str]]:
    """Rows for ``folders`` in order, given what reading each gave ((views, None) or (None, error)); and a
    line for each --explain image that could not be written."""
    out: list[dict | None] = [None] * len(folders)
    no_image: list[str] = []
    for i, (_, err) in enumerate(read):
        if err:
            out[i] = error_row(b, folders[i], err)
    ok = [i for i, (v, _) in enumerate(read) if v is not None]
    for start in range(0, len(ok), BATCH):
        idx = ok[start:start + BATCH]
        views = np.stack([read[i][0] for i in idx])
        judged = _judge_each(b, engine, views)
        good = []
        for n, (i, result) in enumerate(zip(idx, judged)):
            if isinstance(result, str):
                out[i] = error_row(b, folders[i], f"{safe_text(folders[i])}: not judged ({result})")
            else:
                out[i] = rows_for(b, [folders[i]], result)[0]
                good.append(n)
        if explain and good:
            no_image += write_explanations(b, [folders[idx[n]] for n in good], views[good],
                                           _joined([judged[n] for n in good]), explain)
    return out, no_image


def judge_folders(b, engine, folders, explain=None, progress=True) -> tuple[list[dict], list[str]]:
    """Rows for ``folders`` in order (unreadable parts get an error row, the others are judged in batches),
    and the --explain images not written."""
    from vitinspect.part_folders import read_part

    rows: list[dict] = []
    failed: list[str] = []
    bar = None
    if progress and len(folders) > 5 and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(folders), unit="part", file=sys.stderr)
    for start in range(0, len(folders), BATCH):
        chunk = folders[start:start + BATCH]
        got, bad = judge_read(b, engine, chunk, [read_part(f, b.views, b.image_size) for f in chunk], explain)
        rows.extend(got)
        failed.extend(bad)
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return rows, failed


def explain_name(folder) -> str:
    """The --explain image of a part: ``<folder name>-<8 hex digits>.png``, the digits the start of the SHA-256
    of the part's absolute path. The same part always gets the same name; two parts of the same name in
    different lots never share one. Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``."""
    import hashlib
    import re

    digest = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", safe_text(Path(folder).name)).lstrip(".")[:80] or "part"
    return f"{stem}-{digest}.png"


def write_explanations(b, folders, views, j, out_dir) -> list[str]:
    """One PNG per part (:func:`explain_name`): its views, the composite, gradient x attention over it, the
    verdict in the title. Returns a line for each image that could not be written (the rows stand)."""
    import torch

    from vitinspect.explain import gradient_attention, upsample
    from vitinspect.figures import inspection_panel
    from vitinspect.inference import to_pixel_values
    from vitinspect.model import load_trained, trained_input
    from vitinspect.storage import save_figure

    failed = []
    try:
        model = load_trained(b.model_dir)
        _, spec = trained_input(model, b.model_dir)
        target = torch.as_tensor([b.classes.index(c) for c in j.cls])
        maps = upsample(gradient_attention(model, to_pixel_values(j.images, spec), target), b.image_size)
    except Exception as exc:  # noqa: BLE001 - the verdicts stand without their pictures
        return [f"{safe_text(f)}: no --explain image ({_reason(exc)})" for f in folders]
    for i, folder in enumerate(folders):
        title = (f"{safe_text(folder.name)}: {j.verdict[i]} ({j.cls[i]}, p={j.proba[i].max():.2f}, "
                 f"OOD {j.ood_score[i]:.1f}/{b.calibration.threshold:.1f})")
        try:
            save_figure(inspection_panel(views[i], b.views, j.images[i], maps[i], title), Path(out_dir) / explain_name(folder))
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{safe_text(folder)}: no --explain image ({_reason(exc) if not isinstance(exc, VitinspectError) else safe_text(exc)})")
    return failed


def _quiet_stdout() -> None:
    """stdout's reader is gone (``| head``): send what is left to /dev/null, so nothing more fails, not even the
    interpreter's last flush."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    except Exception:  # noqa: BLE001 - a test's captured stdout has no file descriptor
        pass


def print_rows(rows, b) -> bool:
    """One line per row on stdout; False when stdout was closed by its reader (the rest not printed)."""
    try:
        for r in rows:
            if r["error"]:
                print(f"{r['part']}\terror\t{r['error']}")
            else:
                probs = " ".join(f"{c}={r[f'p_{c}']:.3f}" for c in b.classes)
                print(f"{r['part']}\t{r['verdict']}\t{r['class']}\t{probs}\tood={r['ood_score']:.2f}{' (flagged)' if r['ood_flag'] else ''}")
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return False
    except OSError as exc:  # a full disk under `> file`, a closed terminal
        raise VitinspectError(f"stdout: cannot write the rows ({exc.strerror or type(exc).__name__})") from None
    return True


def write_results(path, rows, b, append=False) -> None:
    from vitinspect.part_folders import write_rows

    write_rows(path, rows, columns(b), append=append, neutralise=True)


def _check_explain(folder: str) -> None:
    import importlib.util

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
    from vitinspect.inspection import make_engine
    from vitinspect.part_folders import ends_in_newline, is_part, result_parts
    from vitinspect.watch import Watcher

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
    from vitinspect.inspection import make_engine
    from vitinspect.part_folders import check_output, find_parts

    b = bundle_format.load(args.bundle)
    if args.engine == "torch":
        import importlib.util

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
    from vitinspect.params import params_from_dict
    from vitinspect.rendered_folders import check_target

    out = Path(args.out)
    check_target(out, args.force)
    if args.params:
        from vitinspect.params import load_params

        data = load_params(args.params).data
    else:
        from vitinspect.params import defaults_dict

        learnt = bundle_format.load(args.bundle).data
        if learnt.get("source", "render") != "render":
            raise VitinspectError(f"render: the bundle {args.bundle} learnt from image folders (data.source folders); our "
                                  "renderer cannot draw those parts (give --params with a data.source render params file)")
        data = params_from_dict(defaults_dict() | {"data": defaults_dict()["data"] | learnt}, source="bundle.json").data
    if data.source != "render":
        raise VitinspectError(f"render: {args.params} has data.source {data.source}; our renderer draws only data.source render parts")
    from vitinspect.rendered_folders import write_rendered

    write_rendered(data, args.n, args.seed, out)
    print(f"render: {args.n} parts in {safe_text(out)}/ (seed {args.seed}), truth in {safe_text(out / 'truth.csv')}, "
          f"labels.csv for data.source folders")
    return 0


def cmd_export(args) -> int:
    from vitinspect.inspection import reexport

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
    """What main prints for an exception that is not a VitinspectError (as vitinspect.cli.run_stage does)."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{safe_text(exc.filename)}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory (a smaller lot, or fewer parts at once)"
    return f"unexpected {_reason(exc)} (a bug: please report it)"


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
        _quiet_stdout()
        return 141
    except Exception as exc:  # the catch-all: one line, never a traceback unless asked for
        if debug:
            raise
        print(f"error: {_one_line(exc)}; run with VITINSPECT_DEBUG=1 for the traceback", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
