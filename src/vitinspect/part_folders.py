"""Part folders on disk: finding them, reading their views, writing result rows.

A part is a folder holding one image per view, named after the view (``center.png``, ``left.png``,
``right.png``; any format PIL reads). A lot is a folder of such folders. Problems with one part
become that part's ``error`` (naming the file and what is wrong), never an exception that loses the lot.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from vitinspect.errors import VitinspectError


def view_files(folder: Path, views: list[str]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {v: [] for v in views}
    for f in folder.iterdir():
        if f.is_file() and not f.name.startswith(".") and f.stem in found:
            found[f.stem].append(f)
    return found


def is_part(folder: Path, views: list[str]) -> bool:
    """Does ``folder`` hold at least one view image (so it is a part, not a lot)?"""
    return any(view_files(folder, views).values())


def find_parts(paths: list[str], views: list[str], classes: list[str] = ()) -> list[Path]:
    """Each PATH is a part folder, or a lot: a folder whose sub-folders are parts (sorted by name), or a data
    set of the folders source (vitinspect.folders): a labels.csv beside parts/, or class sub-folders named
    after ``classes`` holding the parts.

    A path that does not exist or is not a folder is a bad argument (VitinspectError).
    """
    parts = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise VitinspectError(f"{p}: no such part folder")
        subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
        if is_part(p, views) or not subs:
            parts.append(p)
        elif (p / "labels.csv").is_file() and (p / "parts").is_dir() and not is_part(p / "parts", views):
            parts.extend(sorted(d for d in (p / "parts").iterdir() if d.is_dir() and not d.name.startswith(".")))
        elif classes and any(d.name in classes and not is_part(d, views) for d in subs):
            for d in subs:
                if d.name in classes and not is_part(d, views):
                    parts.extend(sorted(x for x in d.iterdir() if x.is_dir() and not x.name.startswith(".")))
                else:
                    parts.append(d)
        else:
            parts.extend(subs)
    return parts


def read_part(folder: Path, views: list[str], size: int) -> tuple[np.ndarray | None, str | None]:
    """(V, size, size) uint8 grey views in ``views`` order, or (None, error naming the file). Each view is
    read and fitted to ``size`` as the folders source does at training (vitinspect.images: grey by luma,
    16-bit scaled, padded to a square with black, resized bilinear)."""
    from vitinspect.images import BadPart, fit_square, load_grey

    files = view_files(folder, views)
    out, shapes = [], {}
    for v in views:
        if not files[v]:
            return None, f"{folder / v}.*: missing view {v!r} (expected one image named {v}.png or similar)"
        if len(files[v]) > 1:
            return None, f"{folder}: several images for view {v!r}: {', '.join(sorted(f.name for f in files[v]))}"
        f = files[v][0]
        try:
            img = load_grey(f)
        except BadPart as exc:
            return None, str(exc)
        shapes[f.name] = img.shape
        out.append(img)
    if len(set(shapes.values())) > 1:
        sizes = ", ".join(f"{name} {w}x{h}" for name, (h, w) in shapes.items())
        return None, f"{folder}: views differ in size ({sizes})"
    return np.stack([fit_square(img, size) for img in out]), None


def write_rows(path: str | Path, rows: list[dict], columns: list[str], append: bool = False) -> None:
    """CSV (``.csv``) or JSON (``.json``, a list of rows). ``append`` adds to a CSV (header once)."""
    path = Path(path)
    if path.suffix == ".json":
        from vitinspect.storage import write_json

        write_json(path, rows)
        return
    new = not append or not path.exists() or path.stat().st_size == 0
    if append:
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            if new:
                w.writeheader()
            w.writerows(rows)
        return
    from vitinspect.storage import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def read_truth(path: str | Path) -> dict[str, str]:
    """truth.csv written by `vitinspect render`: part -> label."""
    with open(path, newline="") as fh:
        return {r["part"]: r["label"] for r in csv.DictReader(fh)}
