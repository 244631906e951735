"""Part folders on disk: finding them, reading their views, writing result rows.

A part is a folder holding one image per view, named after the view (``center.png``, ``left.png``,
``right.png``; any format PIL reads). A lot is a folder of such folders. Problems with one part
become that part's ``error`` (naming the file and what is wrong), never an exception that loses the lot.

Every path and message that leaves here is text any reader takes: :func:`safe_text` writes the bytes of a
name that is not UTF-8 as ``\\xNN`` and control characters likewise, the same in CSV, JSON and on the
terminal; CSV cells that a spreadsheet would run as a formula get a leading ``'`` (:func:`spreadsheet_cell`).
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import atomic_path, lstat_or_none, write_json
from vitinspect.data import images  # by module: tests replace images.load_grey

RESULT_HEAD = ["part", "verdict", "class"]  # how every results CSV of `vitinspect inspect` begins
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def safe_text(text) -> str:
    """``text`` (a str or a path) as printable one-line UTF-8: the bytes of a name that is not UTF-8
    (``os.fsdecode``'s surrogate escapes) become ``\\xNN``, and so do control characters (a newline in a
    folder name stays inside its line). UTF-8 names are kept as they are."""
    s = os.fsdecode(text) if isinstance(text, (bytes, os.PathLike)) else str(text)
    try:
        raw = s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that no file name produced
        raw = s.encode("utf-8", "backslashreplace")
    s = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", s)


def spreadsheet_cell(value):
    """A CSV cell a spreadsheet shows as text: a string starting with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading ``'`` (OWASP's advice on CSV injection). Numbers are left as they are."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


def _listing(folder: Path, views: list[str]) -> tuple[dict[str, list[Path]], list[Path]]:
    """(view -> files named after it, sub-folders), hidden entries left out. May raise OSError."""
    found: dict[str, list[Path]] = {v: [] for v in views}
    subs = []
    for f in folder.iterdir():
        if f.name.startswith("."):
            continue
        if f.stem in found and f.is_file():
            found[f.stem].append(f)
        elif f.is_dir():
            subs.append(f)
    return found, sorted(subs)


def view_files(folder: Path, views: list[str]) -> dict[str, list[Path]]:
    return _listing(folder, views)[0]


def is_part(folder: Path, views: list[str]) -> bool:
    """Does ``folder`` hold at least one view image (so it is a part, not a lot)? False when unreadable."""
    try:
        return any(view_files(folder, views).values())
    except OSError:
        return False


def part_and_lot(folder: Path, views: list[str]) -> str | None:
    """Why ``folder`` is both a part (view images at its root) and a lot (sub-folders that are parts, or hold
    parts one level down); None when it is not both."""
    try:
        return _both(folder, *_listing(folder, views), views)
    except OSError:
        return None


def _both(folder: Path, found: dict[str, list[Path]], subs: list[Path], views: list[str]) -> str | None:
    at_root = sorted(f.name for fs in found.values() for f in fs)
    if not at_root:
        return None
    parts = [d for d in subs if is_part(d, views) or any(is_part(x, views) for x in _sub_folders(d))]
    if not parts:
        return None
    names = ", ".join(d.name for d in parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")
    return (f"{folder}: is both a part and a lot: view images at its root ({', '.join(at_root[:3])}) and part folders "
            f"inside ({names}); move the images into a part folder of their own, or name the part folders")


def _sub_folders(folder: Path) -> list[Path]:
    try:
        return sorted(d for d in folder.iterdir() if not d.name.startswith(".") and d.is_dir())
    except OSError:
        return []


def find_parts(paths: list[str], views: list[str], classes: list[str] = ()) -> list[Path]:
    """Each PATH is a part folder, or a lot: a folder whose sub-folders are parts (sorted by name), or a data
    set of the folders source (vitinspect.data.user_parts): a labels.csv beside parts/, or class sub-folders named
    after ``classes`` holding the parts. A part named twice is judged once.

    A path that does not exist, is not a folder, cannot be listed, or is both a part and a lot (view images
    at its root beside part folders) is a bad argument (VitinspectError, one line naming it).
    """
    parts, seen = [], set()
    for text in paths:
        if not str(text).strip():
            raise VitinspectError(f"PART {str(text)!r}: an empty path (give a part folder or a lot)")
        p = Path(text)
        try:
            found = _parts_of(p, views, classes)
        except OSError as exc:
            raise VitinspectError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
        for part in found:
            key = os.path.abspath(part)
            if key not in seen:
                seen.add(key)
                parts.append(part)
    return parts


def _parts_of(p: Path, views: list[str], classes) -> list[Path]:
    if not p.exists():
        raise VitinspectError(f"{p}: no such part folder")
    if not p.is_dir():
        raise VitinspectError(f"{p}: not a folder (a part is a folder of view images, a lot a folder of parts)")
    try:
        found, subs = _listing(p, views)
    except OSError as exc:
        raise VitinspectError(f"{p}: cannot list the folder ({exc.strerror or type(exc).__name__})") from None
    both = _both(p, found, subs, views)
    if both:
        raise VitinspectError(both)
    if any(found.values()) or not subs:
        return [p]
    if (p / "labels.csv").is_file() and (p / "parts").is_dir() and not is_part(p / "parts", views):
        return _sub_folders(p / "parts")
    if classes and any(d.name in classes and not is_part(d, views) for d in subs):
        out = []
        for d in subs:
            out.extend(_sub_folders(d) if d.name in classes and not is_part(d, views) else [d])
        return out
    return subs


def read_part(folder: Path, views: list[str], size: int) -> tuple[np.ndarray | None, str | None]:
    """(V, size, size) uint8 grey views in ``views`` order, or (None, one-line error naming the file). Each view
    is read and fitted to ``size`` as the folders source does at training (vitinspect.data.images: size checked from
    the header first, grey by luma, 16-bit scaled, padded to a square with black, resized bilinear).

    Never raises for a bad part: whatever reading one raises (a broken or truncated file, a decompression
    bomb, a folder removed or unreadable, MemoryError) is its error."""
    try:
        views_or_error = _read_part(folder, views, size)
    except Exception as exc:  # noqa: BLE001 - the promise: one bad part never loses the lot
        return None, safe_text(f"{folder}: cannot read the part ({_reason(exc)})")
    if isinstance(views_or_error, str):
        return None, safe_text(views_or_error)
    return views_or_error, None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory"
    first = (str(exc).strip().splitlines() or [""])[0][:120]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _read_part(folder: Path, views: list[str], size: int) -> np.ndarray | str:
    files, subs = _listing(folder, views)
    both = _both(folder, files, subs, views)
    if both:
        return both
    out, shapes = [], {}
    for v in views:
        if not files[v]:
            return f"{folder / v}.*: missing view {v!r} (expected one image named {v}.png or similar)"
        if len(files[v]) > 1:
            return f"{folder}: several images for view {v!r}: {', '.join(sorted(f.name for f in files[v]))}"
        f = files[v][0]
        try:
            img = images.load_grey(f)
        except images.BadPart as exc:
            return str(exc)
        shapes[f.name] = img.shape
        out.append(img)
    if len(set(shapes.values())) > 1:
        sizes = ", ".join(f"{name} {w}x{h}" for name, (h, w) in shapes.items())
        return f"{folder}: views differ in size ({sizes})"
    return np.stack([images.fit_square(img, size) for img in out])


# ------------------------------------------------------------------ results files

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def _head(path: Path, limit: int = 1 << 16) -> str | None:
    """The first ``limit`` bytes of a file as UTF-8 text; None when they are not UTF-8."""
    with open(path, "rb") as fh:
        raw = fh.read(limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw[:exc.start].decode("utf-8") if exc.start > limit - 4 else None


def csv_header(path: Path) -> list[str] | None:
    """The first row of a CSV file (None when it is not UTF-8 text)."""
    text = _head(path)
    if text is None:
        return None
    rows = list(csv.reader(io.StringIO(text.splitlines()[0] if text.strip() else "")))
    return rows[0] if rows else []


def is_results_file(path: Path) -> bool:
    """Did `vitinspect inspect` write this (non-empty) file? A CSV whose header starts ``part,verdict,class``
    and ends ``error``; a JSON list that is empty or whose rows carry ``verdict``."""
    if path.suffix == ".csv":
        header = csv_header(path)
        return bool(header) and header[:3] == RESULT_HEAD and header[-1] == "error"
    text = _head(path)
    if text is None:
        return False
    body = text.lstrip()
    return body.startswith("[") and (body[1:].lstrip().startswith("]") or '"verdict"' in body)


def check_output(path: str | Path, label: str, columns: list[str] | None = None) -> None:
    """Refuse, before any work, a results path that writing would lose something at (VitinspectError, one line).

    What may be at ``path``: nothing; an empty regular file; or a regular file `vitinspect inspect` wrote
    before (:func:`is_results_file`), which is replaced. With ``columns`` (``--watch`` appends) an existing
    CSV must have exactly that header. Never a folder, a symbolic link, a FIFO or a device, never another
    program's file; its folder must exist.
    """
    path = Path(path)
    where = f"{label} {path}"
    parent = path.parent
    if not parent.is_dir():
        raise VitinspectError(f"{where}: its folder {parent} does not exist" if not parent.exists()
                              else f"{where}: {parent} is not a folder")
    st = lstat_or_none(path, f"{where}: cannot check it")
    if st is None:
        return
    if not stat.S_ISREG(st.st_mode):
        raise VitinspectError(f"{where}: is {_kind(st.st_mode)}, not a results file; left as it is (remove it or give "
                              "another path)")
    if st.st_size == 0:
        return
    try:
        ours = is_results_file(path)
        header = csv_header(path) if columns is not None else None
    except OSError as exc:
        raise VitinspectError(f"{where}: cannot read it ({exc.strerror})") from None
    if not ours:
        raise VitinspectError(f"{where}: exists and is not a results file of vitinspect inspect; left as it is "
                              "(remove it or give another path)")
    if columns is not None and header != columns:
        shown = ",".join(header or [])
        raise VitinspectError(f"{where}: its header ({shown[:150]}{'...' if len(shown) > 150 else ''}) differs from "
                              f"this bundle's ({','.join(columns)[:150]}); rows would not line up: give another --out")


def _csv_text(rows: list[dict], columns: list[str], header: bool, neutralise: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: spreadsheet_cell(v) for k, v in r.items()} if neutralise else r)
    return buf.getvalue()


def write_rows(path: str | Path, rows: list[dict], columns: list[str], append: bool = False,
               neutralise: bool = False) -> None:
    """CSV (``.csv``) or JSON (``.json``, a list of rows), UTF-8, replaced atomically. ``append`` adds to a CSV
    (the header once) in one write per call, so a kill never leaves half a row; ``neutralise`` makes the CSV's
    text cells spreadsheet-safe (:func:`spreadsheet_cell`)."""
    path = Path(path)
    if path.suffix == ".json":
        write_json(path, rows)
        return
    if append:
        _append(path, rows, columns, neutralise)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(_csv_text(rows, columns, True, neutralise), encoding="utf-8", newline="")


def _append(path: Path, rows: list[dict], columns: list[str], neutralise: bool) -> None:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot append ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VitinspectError(f"{path}: is {_kind(st.st_mode)}, not a results file; left as it is")
        data = _csv_text(rows, columns, st.st_size == 0, neutralise).encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot append ({exc.strerror})") from None
    finally:
        os.close(fd)


def result_parts(path: str | Path) -> set[str]:
    """The ``part`` cells of a results CSV (as written: escaped, spreadsheet-safe); empty when there is none."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return {r.get("part", "") for r in csv.DictReader(fh)}


def ends_in_newline(path: str | Path) -> bool:
    """Is the file missing, empty, or its last byte a newline (no half-written row)?"""
    if not os.path.isfile(path):
        return True
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def read_truth(path: str | Path) -> dict[str, str]:
    """truth.csv written by `vitinspect render`: part -> label."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["part"]: r["label"] for r in csv.DictReader(fh)}
