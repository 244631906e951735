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


def find_parts(paths: list[str], views: list[str]) -> list[Path]:
    """Each PATH is a part folder, or a lot: a folder whose sub-folders are parts (sorted by name).

    A path that does not exist or is not a folder is a bad argument (VitinspectError).
    """
    parts = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise VitinspectError(f"{p}: no such part folder")
        subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
        parts.extend([p] if is_part(p, views) or not subs else subs)
    return parts


def read_part(folder: Path, views: list[str], size: int) -> tuple[np.ndarray | None, str | None]:
    """(V, size, size) uint8 grey views in ``views`` order, or (None, error naming the file)."""
    from PIL import Image, UnidentifiedImageError

    files = view_files(folder, views)
    out, shapes = [], {}
    for v in views:
        if not files[v]:
            return None, f"{folder / v}.*: missing view {v!r} (expected one image named {v}.png or similar)"
        if len(files[v]) > 1:
            return None, f"{folder}: several images for view {v!r}: {', '.join(sorted(f.name for f in files[v]))}"
        f = files[v][0]
        try:
            with Image.open(f) as im:
                img = np.asarray(im if im.mode == "L" else im.convert("L"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return None, f"{f}: unreadable image ({type(exc).__name__})"
        shapes[f.name] = img.shape
        out.append(img)
    if len(set(shapes.values())) > 1:
        sizes = ", ".join(f"{name} {w}x{h}" for name, (h, w) in shapes.items())
        return None, f"{folder}: views differ in size ({sizes})"
    h, w = out[0].shape
    if (h, w) != (size, size):
        return None, f"{folder / files[views[0]][0].name}: image is {w}x{h} px; the bundle takes {size}x{size}"
    return np.stack(out), None


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
