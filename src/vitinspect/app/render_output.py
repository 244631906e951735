"""`vitinspect render`'s output: rendered parts written as part folders a user (or the folders source) reads.

A lot is written whole or not at all: into a temporary folder beside OUT, renamed onto OUT at the end. OUT
must be new or an empty folder; with ``force``, a lot render wrote before (truth.csv and labels.csv at its
root) is replaced whole, so old parts never stay beside new ones.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from PIL import Image

from vitinspect.app.lot_reader import csv_header, safe_text, write_rows
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import atomic_path
from vitinspect.data.geometry import plan as render_plan
from vitinspect.data.synthetic import render_parts
from vitinspect.data.user_parts import LABELS_CSV, MASK

TRUTH_CSV = "truth.csv"


def _ours(out: Path) -> bool:
    """Did `vitinspect render` write this folder (truth.csv and labels.csv with our headers)?"""
    try:
        truth, labels = csv_header(out / TRUTH_CSV), csv_header(out / LABELS_CSV)
    except OSError:
        return False
    return bool(truth and labels) and truth[:2] == ["part", "label"] and labels[:3] == ["part_id", "label", "split"]


def check_target(out: Path, force: bool) -> None:
    """Refuse (one line, before any work) an OUT that writing a lot there would mix with or destroy: a file, a
    link, a non-empty folder (unless ``force`` and render wrote it), the working folder or one above it."""
    where = f"render --out {safe_text(out)}"
    if not out.parent.is_dir():
        raise VitinspectError(f"{where}: its folder {safe_text(out.parent)} does not exist")
    if out.is_symlink():
        raise VitinspectError(f"{where}: is a symbolic link; left as it is (give a folder)")
    if not out.exists():
        return
    if not out.is_dir():
        raise VitinspectError(f"{where}: exists and is not a folder; left as it is")
    here, target = Path.cwd().resolve(), out.resolve()
    if target == here or target in here.parents:
        raise VitinspectError(f"{where}: is the working folder or holds it; give a folder of its own")
    try:
        entries = sorted(os.listdir(out))
    except OSError as exc:
        raise VitinspectError(f"{where}: cannot list it ({exc.strerror})") from None
    if not entries:
        return
    if not force:
        shown = ", ".join(safe_text(e) for e in entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise VitinspectError(f"{where}: is not empty ({shown}); give a new or empty folder, or --force to replace "
                              "a lot render wrote before")
    if not _ours(out):
        raise VitinspectError(f"{where}: --force replaces only a lot render wrote (truth.csv and labels.csv at its "
                              "root); this folder is not one, left as it is")


def write_rendered(data, n: int, seed: int, out: Path, chunk: int = 256) -> None:
    """Render the ``n`` parts that ``prepare`` renders for ``data`` with data.n_images = n and data.seed =
    ``seed`` into ``out`` as part folders (``<id>/<view>.png``, ``mask.png``), with ``truth.csv`` (for
    `vitinspect inspect`) and ``labels.csv`` (part_id, label, split and the record columns, exact), so
    ``out`` is a data set for ``data.source: folders`` that reads back as the same parts. Written into a
    temporary folder and renamed onto ``out`` (an earlier folder there is replaced: see check_target)."""
    d = dataclasses.replace(data, n_images=int(n), seed=int(seed))
    labels, splits = render_plan(d)
    truth, rows = [], []
    with atomic_path(out, is_dir=True) as tmp:
        for a in range(0, len(labels), chunk):
            cols = render_parts(d, range(a, min(a + chunk, len(labels))), labels)
            for k, pid in enumerate(cols["id"]):
                folder = tmp / pid
                folder.mkdir(exist_ok=True)
                for name, img in zip(d.views, cols["views"][k]):
                    Image.fromarray(img).save(folder / f"{name}.png")
                Image.fromarray(cols["mask"][k] * np.uint8(255)).save(folder / f"{MASK}.png")
                tilt, i = cols["tilt"][k], a + k
                record = {"defect_terminal": int(cols["defect_terminal"][k]), "tilt_x": repr(float(tilt[0])),
                          "tilt_y": repr(float(tilt[1])), "retraction": repr(float(cols["retraction"][k]))}
                rows.append({"part_id": pid, "label": labels[i], "split": splits[i], **record})
                truth.append({"part": safe_text(out / pid), "label": labels[i], **record})
        write_rows(tmp / TRUTH_CSV, truth, list(truth[0]))
        write_rows(tmp / LABELS_CSV, rows, list(rows[0]))
