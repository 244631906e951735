"""Rows of results for judged parts: judging what was read in batches, each part's failure in its own row,
the --explain images, and writing the rows (stdout, CSV/JSON). What `vitinspect inspect` and `--watch` share.

A part that cannot be read, or that the engine chokes on, costs only its own row (its ``error`` column);
when every part of a batch fails the bundle is at fault, and that is one line naming it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vitinspect.app.lot_reader import read_part, safe_text, write_rows
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import save_figure
from vitinspect.deploy.engine import Judgement, judge

BATCH = 64


def columns(b) -> list[str]:
    return ["part", "verdict", "class", *[f"p_{c}" for c in b.classes], "ood_score", "ood_flag", "ood_threshold",
            "gate_score", "gate_threshold", "threshold", "error"]


def rows_for(b, folders, judgement) -> list[dict]:
    t = b.operating_point.get("threshold")
    rows = []
    for i, folder in enumerate(folders):
        row = {"part": safe_text(folder), "verdict": judgement.verdict[i], "class": judgement.cls[i]}
        row.update({f"p_{c}": round(float(judgement.proba[i, k]), 6) for k, c in enumerate(b.classes)})
        row.update({"ood_score": round(float(judgement.ood_score[i]), 4), "ood_flag": bool(judgement.ood_flag[i]),
                    "ood_threshold": round(b.calibration.threshold, 4), "gate_score": round(float(judgement.scores["gate"][i]), 6),
                    "gate_threshold": round(b.gate.threshold, 6), "threshold": "argmax" if t is None else t, "error": ""})
        rows.append(row)
    return rows


def error_row(b, folder, message) -> dict:
    row = {c: "" for c in columns(b)}
    row.update({"part": safe_text(folder), "verdict": "", "error": safe_text(message)})
    return row


def reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return safe_text(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _judge_each(b, engine, views) -> list:
    """Judge a batch; when that fails, each part alone, so a part the engine chokes on loses only its own row.
    Per part: a Judgement of one, or the reason it was not judged. When every part fails, the bundle is at
    fault: a VitinspectError naming it."""
    try:
        j = judge(b, engine, views)
        return [_one(j, k) for k in range(len(views))]
    except VitinspectError:
        raise  # the bundle's own checks: already one line naming the file
    except Exception as exc:  # noqa: BLE001 - isolated below
        first = reason(exc)
    out = []
    if len(views) > 1:
        for k in range(len(views)):
            try:
                out.append(judge(b, engine, views[k:k + 1]))
            except Exception as exc:  # noqa: BLE001
                out.append(reason(exc))
    if all(isinstance(o, str) for o in out):
        raise VitinspectError(f"{safe_text(b.path)}: the bundle cannot judge the parts ({first})")
    return out


def _one(j, k):
    """Part ``k`` of a Judgement, as a Judgement of one."""
    return Judgement(j.verdict[k:k + 1], j.cls[k:k + 1], j.proba[k:k + 1], j.ood_score[k:k + 1], j.ood_flag[k:k + 1],
                     {name: s[k:k + 1] for name, s in j.scores.items()}, j.images[k:k + 1])


def _joined(js):
    """Judgements of one part each -> one Judgement of them all."""
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
    rows: list[dict] = []
    failed: list[str] = []
    bar = None
    if progress and len(folders) > 5 and sys.stderr.isatty():
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
    digest = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", safe_text(Path(folder).name)).lstrip(".")[:80] or "part"
    return f"{stem}-{digest}.png"


def write_explanations(b, folders, views, j, out_dir) -> list[str]:
    """One PNG per part (:func:`explain_name`): its views, the composite, gradient x attention over it, the
    verdict in the title. Returns a line for each image that could not be written (the rows stand)."""
    # Lazy, for --explain only: torch and transformers take ~5 s to import, matplotlib ~0.5 s (time.perf_counter).
    import torch

    from vitinspect.explain.maps import gradient_attention, upsample
    from vitinspect.model.prediction import to_pixel_values
    from vitinspect.model.stem import crop_of
    from vitinspect.model.vit import load_trained, trained_input
    from vitinspect.visualization.figures import inspection_panel

    failed = []
    try:
        model = load_trained(b.model_dir)
        _, spec = trained_input(model, b.model_dir)
        target = torch.as_tensor([b.classes.index(c) for c in j.cls])
        maps = upsample(gradient_attention(model, to_pixel_values(j.images, spec), target), b.image_size, crop_of(model.config))
    except Exception as exc:  # noqa: BLE001 - the verdicts stand without their pictures
        return [f"{safe_text(f)}: no --explain image ({reason(exc)})" for f in folders]
    for i, folder in enumerate(folders):
        title = (f"{safe_text(folder.name)}: {j.verdict[i]} ({j.cls[i]}, p={j.proba[i].max():.2f}, "
                 f"OOD {j.ood_score[i]:.1f}/{b.calibration.threshold:.1f})")
        try:
            save_figure(inspection_panel(views[i], b.views, j.images[i], maps[i], title), Path(out_dir) / explain_name(folder))
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{safe_text(folder)}: no --explain image ({reason(exc) if not isinstance(exc, VitinspectError) else safe_text(exc)})")
    return failed


def quiet_stdout() -> None:
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
        quiet_stdout()
        return False
    except OSError as exc:  # a full disk under `> file`, a closed terminal
        raise VitinspectError(f"stdout: cannot write the rows ({exc.strerror or type(exc).__name__})") from None
    return True


def write_results(path, rows, b, append=False) -> None:
    write_rows(path, rows, columns(b), append=append, neutralise=True)
