"""`vitinspect` (and `python -m vitinspect`): judge new parts with an inspection bundle.

    vitinspect inspect PART... [--bundle DIR] [--out results.csv|.json] [--explain DIR] [--engine torch|onnx]
    vitinspect inspect --watch DIR --out results.csv      judge part folders as they appear
    vitinspect inspect --calibration-report               the OOD guard's calibration and figures
    vitinspect render --n 20 --out lot/ [--seed S]        try-it parts with a truth.csv (and labels.csv: a folders data set)
    vitinspect export [--bundle DIR]                      (re)write model.onnx into the bundle

Exit codes: 0 every part judged, 1 some parts not judged (their rows carry an ``error``),
2 bad arguments or a bad bundle (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vitinspect import bundle as bundle_format
from vitinspect.errors import VitinspectError

DEFAULT_BUNDLE = "models/bundle"
BATCH = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        raise VitinspectError(f"arguments: {message}")


def columns(b) -> list[str]:
    return ["part", "verdict", "class", *[f"p_{c}" for c in b.classes], "ood_score", "ood_flag", "ood_threshold",
            "threshold", "error"]


def rows_for(b, folders, judgement) -> list[dict]:
    t = b.operating_point.get("threshold")
    rows = []
    for i, folder in enumerate(folders):
        row = {"part": str(folder), "verdict": judgement.verdict[i], "class": judgement.cls[i]}
        row.update({f"p_{c}": round(float(judgement.proba[i, k]), 6) for k, c in enumerate(b.classes)})
        row.update({"ood_score": round(float(judgement.ood_score[i]), 4), "ood_flag": bool(judgement.ood_flag[i]),
                    "ood_threshold": round(b.calibration.threshold, 4), "threshold": "argmax" if t is None else t, "error": ""})
        rows.append(row)
    return rows


def error_row(b, folder, message) -> dict:
    row = {c: "" for c in columns(b)}
    row.update({"part": str(folder), "verdict": "", "error": message})
    return row


def judge_folders(b, engine, folders, explain=None, progress=True) -> list[dict]:
    """Rows for ``folders`` in order; unreadable parts get an error row, the others are judged in batches."""
    from vitinspect.inspection import judge
    from vitinspect.part_folders import read_part

    rows: list[dict] = []
    bar = None
    if progress and len(folders) > 5:
        from tqdm import tqdm

        bar = tqdm(total=len(folders), unit="part", file=sys.stderr)
    for start in range(0, len(folders), BATCH):
        chunk = folders[start:start + BATCH]
        read = [read_part(f, b.views, b.image_size) for f in chunk]
        ok = [i for i, (v, _) in enumerate(read) if v is not None]
        out: list[dict | None] = [None] * len(chunk)
        if ok:
            views = np.stack([read[i][0] for i in ok])
            j = judge(b, engine, views)
            for i, row in zip(ok, rows_for(b, [chunk[i] for i in ok], j)):
                out[i] = row
            if explain:
                write_explanations(b, [chunk[i] for i in ok], views, j, explain)
        for i, (_, err) in enumerate(read):
            if err:
                out[i] = error_row(b, chunk[i], err)
        rows.extend(out)
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return rows


def write_explanations(b, folders, views, j, out_dir) -> None:
    """One PNG per part: its views, the composite, gradient x attention over it, the verdict in the title."""
    import torch

    from vitinspect.explain import gradient_attention, upsample
    from vitinspect.figures import inspection_panel
    from vitinspect.inference import to_pixel_values
    from vitinspect.model import load_trained, trained_input
    from vitinspect.storage import save_figure

    model = load_trained(b.model_dir)
    _, spec = trained_input(model, b.model_dir)
    target = torch.as_tensor([b.classes.index(c) for c in j.cls])
    maps = upsample(gradient_attention(model, to_pixel_values(j.images, spec), target), b.image_size)
    for i, folder in enumerate(folders):
        title = f"{folder.name}: {j.verdict[i]} ({j.cls[i]}, p={j.proba[i].max():.2f}, OOD {j.ood_score[i]:.1f}/{b.calibration.threshold:.1f})"
        save_figure(inspection_panel(views[i], b.views, j.images[i], maps[i], title), Path(out_dir) / f"{folder.name}.png")


def print_rows(rows, b) -> None:
    for r in rows:
        if r["error"]:
            print(f"{r['part']}\terror\t{r['error']}")
        else:
            probs = " ".join(f"{c}={r[f'p_{c}']:.3f}" for c in b.classes)
            print(f"{r['part']}\t{r['verdict']}\t{r['class']}\t{probs}\tood={r['ood_score']:.2f}{' (flagged)' if r['ood_flag'] else ''}")


def watch(b, engine, folder: Path, out, poll: float, settle: float, max_parts: int | None) -> int:
    """Judge part folders as they appear under ``folder`` (complete: every view present, untouched for ``settle`` s)."""
    from vitinspect.part_folders import view_files, write_rows

    seen: set[str] = set()
    failed = False
    print(f"watching {folder} (Ctrl-C to stop)", file=sys.stderr)
    try:
        while max_parts is None or len(seen) < max_parts:
            ready = []
            for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in seen):
                files = view_files(d, b.views)
                if all(files.values()) and time.time() - max(f.stat().st_mtime for fs in files.values() for f in fs) >= settle:
                    ready.append(d)
            ready = ready[:None if max_parts is None else max_parts - len(seen)]
            if ready:
                rows = judge_folders(b, engine, ready, progress=False)
                seen.update(d.name for d in ready)
                failed |= any(r["error"] for r in rows)
                print_rows(rows, b)
                sys.stdout.flush()
                if out:
                    write_rows(out, rows, columns(b), append=True)
            else:
                time.sleep(poll)
    except KeyboardInterrupt:
        pass
    return 1 if failed else 0


def cmd_inspect(args) -> int:
    from vitinspect.inspection import make_engine
    from vitinspect.part_folders import find_parts, write_rows

    b = bundle_format.load(args.bundle)
    if args.calibration_report:
        print(json.dumps({"operating_point": b.operating_point, "ood": b.report}, indent=2))
        return 0
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise VitinspectError(f"--out {args.out}: must end in .csv or .json")
    if args.watch:
        if not Path(args.watch).is_dir():
            raise VitinspectError(f"--watch {args.watch}: no such folder")
        if args.parts or args.explain or (args.out and not args.out.endswith(".csv")):
            raise VitinspectError("--watch takes no PART and no --explain, and appends to a .csv --out")
        return watch(b, make_engine(b, args.engine), Path(args.watch), args.out, args.poll, args.settle, args.max_parts)
    if not args.parts:
        raise VitinspectError("arguments: give at least one PART folder (or --watch DIR, --calibration-report)")
    folders = find_parts(args.parts, b.views, b.classes)
    engine = make_engine(b, args.engine)
    if args.explain:
        Path(args.explain).mkdir(parents=True, exist_ok=True)
    rows = judge_folders(b, engine, folders, args.explain)
    print_rows(rows, b)
    if args.out:
        write_rows(args.out, rows, columns(b))
    bad = sum(1 for r in rows if r["error"])
    if bad:
        print(f"{bad} of {len(rows)} parts not judged (see the error column)", file=sys.stderr)
    return 1 if bad else 0


def cmd_render(args) -> int:
    from vitinspect.params import params_from_dict

    from vitinspect.params import MAX_PARTS, short

    if not 1 <= args.n <= MAX_PARTS:
        raise VitinspectError(f"--n must be a positive integer of at most {MAX_PARTS:,}, got {short(args.n)}")
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

    out = Path(args.out)
    write_rendered(data, args.n, args.seed, out)
    print(f"render: {args.n} parts in {out}/ (seed {args.seed}), truth in {out / 'truth.csv'}, "
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
    i.add_argument("--out", help="results file, .csv or .json")
    i.add_argument("--explain", metavar="DIR", help="write one PNG per part: views, composite, gradient x attention")
    i.add_argument("--engine", choices=("torch", "onnx"), default="onnx", help="onnx (no torch needed; default) or torch")
    i.add_argument("--watch", metavar="DIR", help="judge part folders as they appear in DIR; rows appended to --out")
    i.add_argument("--poll", type=float, default=0.2, help="--watch: seconds between looks")
    i.add_argument("--settle", type=float, default=0.2, help="--watch: a part is complete when its files are this many s old")
    i.add_argument("--max-parts", type=int, default=None, help="--watch: stop after this many parts")
    i.add_argument("--calibration-report", action="store_true", help="print the OOD guard's calibration and measured figures")
    i.set_defaults(run=cmd_inspect)
    r = sub.add_parser("render", help="render try-it parts (part folders and truth.csv)")
    r.add_argument("--n", type=int, default=20)
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--bundle", default=DEFAULT_BUNDLE, help="render as the bundle's data set was (default)")
    r.add_argument("--params", default=None, help="or as this params.yaml's data section")
    r.set_defaults(run=cmd_render)
    e = sub.add_parser("export", help="write model.onnx into the bundle")
    e.add_argument("--bundle", default=DEFAULT_BUNDLE)
    e.add_argument("--opset", type=int, default=17)
    e.set_defaults(run=cmd_export)
    return ap


def main(argv=None) -> int:
    import os

    try:
        args = parser().parse_args(argv)
        return args.run(args)
    except VitinspectError as exc:
        if os.environ.get("VITINSPECT_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
