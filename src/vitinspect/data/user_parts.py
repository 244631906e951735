"""The user's own parts: image folders a quality engineer brings (``data.source: folders``).

Two layouts under a data root (docs/own-parts.md):

- ``labels``: a ``labels.csv`` beside a ``parts/`` folder (or beside the part folders themselves), one row per part: ``part_id,label`` and
  optionally ``split`` (train / val / test, fixed by the user) and any other columns (left in the file,
  not read), except the renderer's own record columns ``defect_terminal``, ``tilt_x``, ``tilt_y`` and
  ``retraction``, which are read when present (so `vitinspect render` output round-trips byte for byte);
- ``subfolders``: ``ROOT/<class>/<part_id>/``.

A part is a folder with one image per camera named after the view (``center.png``, ``left.jpg``, ...) and
optionally ``mask.png``, the defect's footprint in the centre view's pixel grid (non-zero = defect).

:func:`scan` checks everything it can from the files' headers (cheap: no pixel is decoded) and returns the
plan of parts; :func:`read_parts` decodes a chunk of them, as :func:`vitinspect.data.synthetic.render_parts` renders
one, into the same columns. How an image becomes a model input: vitinspect.data.images.
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.data.geometry import assign_splits as stratified
from vitinspect.data.geometry import mask_box
from vitinspect.data.images import MAX_PIXELS, BadPart, fit_square, image_suffixes, load_grey, open_checked, oriented_size

LABELS_CSV = "labels.csv"
PARTS_DIR = "parts"
MASK = "mask"
SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {"training": "train", "validation": "val", "valid": "val", "dev": "val", "testing": "test"}  # HF's names too
RECORD_COLUMNS = ("defect_terminal", "tilt_x", "tilt_y", "retraction")
MAX_PARTS = 5_000_000
MAX_LABELS_BYTES = 512 * 2**20


@dataclass(frozen=True)
class FolderPart:
    """One part on disk: its id, class name (None in an unlabelled lot), split (None until assigned),
    its view files in view order and its mask file (or None)."""

    id: str
    label: str | None
    split: str | None
    folder: Path
    views: tuple[Path, ...]
    mask: Path | None
    record: dict = field(default_factory=dict)  # renderer record columns read from labels.csv


@dataclass(frozen=True)
class Scan:
    layout: str  # "labels", "subfolders" or "unlabelled"
    parts: list[FolderPart]
    skipped: list[dict]  # {"part": ..., "reason": ...} for parts left out with on_bad_part: skip

    @property
    def n_masks(self) -> int:
        return sum(p.mask is not None for p in self.parts)


# ------------------------------------------------------------------ scanning


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def _part_files(folder: Path, views: list[str], root: Path, max_pixels: int) -> tuple[tuple[Path, ...], Path | None]:
    """The view files of one part in view order and its mask, checked from their headers (sizes once EXIF
    orientation is applied, as load_grey decodes them); BadPart otherwise."""
    if not _inside(folder, root):
        raise BadPart(f"{folder}: a link that leaves the data root {root}")
    found: dict[str, list[Path]] = {v: [] for v in [*views, MASK]}
    others: dict[str, str] = {}  # a view's name with a suffix that is not an image's (center.json): named if the view is missing
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise BadPart(f"{folder}: cannot list it ({exc.strerror})") from None
    for f in entries:
        if not f.name.startswith(".") and f.stem in found and f.is_file():
            if f.suffix.lower() in image_suffixes():
                found[f.stem].append(f)
            else:
                others.setdefault(f.stem, f.name)
    files, sizes = [], {}
    for v in [*views, MASK]:
        if len(found[v]) > 1:
            raise BadPart(f"{folder}: several images for {v!r}: {', '.join(f.name for f in found[v])}")
        if not found[v]:
            if v == MASK:
                continue
            aside = f"; {_text(others[v])} is not an image" if v in others else ""
            raise BadPart(f"{folder}: missing view {v!r} (expected one image named {v}.png, {v}.jpg, ...{aside})")
        f = found[v][0]
        if not _inside(f, root):
            raise BadPart(f"{f}: a link that leaves the data root {root}")
        with open_checked(f, max_pixels) as im:
            sizes[f.name] = oriented_size(im)
        files.append(f)
    view_sizes = {name: s for name, s in sizes.items() if Path(name).stem != MASK}
    if len(set(view_sizes.values())) > 1:
        raise BadPart(f"{folder}: views differ in size ({', '.join(f'{n} {w}x{h}' for n, (w, h) in view_sizes.items())})")
    mask = found[MASK][0] if found[MASK] else None
    if mask is not None:
        centre = next(f for f in files if f.stem == "center")
        if sizes[mask.name] != sizes[centre.name]:
            (mw, mh), (cw, ch) = sizes[mask.name], sizes[centre.name]
            raise BadPart(f"{mask}: mask is {mw}x{mh} px, the centre view {centre.name} is {cw}x{ch}")
        files = files[:-1]
    return tuple(files), mask


def _text(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."


def _labels_file(root: Path) -> Path:
    """ROOT/labels.csv, refused (never read) when it is a link leaving the data root or not a regular file
    (a folder, a FIFO, a device)."""
    path = root / LABELS_CSV
    if not _inside(path, root.resolve()):
        raise VitinspectError(f"{path}: a link that leaves the data root {root.resolve()} (not read)")
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise VitinspectError(f"{path}: {kind}, not a labels file (remove or rename it to use class sub-folders)")
    return path


def _read_labels(root: Path, classes: list[str] | None) -> list[dict]:
    path = _labels_file(root)
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise VitinspectError(f"{path}: over {MAX_LABELS_BYTES >> 20} MiB; is it a labels file?")
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            for col in ("part_id", "label"):
                if col not in header:
                    raise VitinspectError(f"{path}: no {col!r} column in its header (of {len(header)} columns); "
                                          "it needs part_id,label and optionally split")
            if len(set(header)) != len(header):
                raise VitinspectError(f"{path}: repeated column names in the header")
            rows = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise VitinspectError(f"{path}: line {line} has {'more' if None in row else 'fewer'} cells than the header")
                rows.append((line, row))
                if len(rows) > MAX_PARTS:
                    raise VitinspectError(f"{path}: more than {MAX_PARTS:,} rows")
    except UnicodeDecodeError:
        raise VitinspectError(f"{path}: not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise VitinspectError(f"{path}: not a readable CSV ({exc})") from None
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot read ({exc.strerror})") from None
    out, seen = [], {}
    for line, row in rows:
        pid, label = row["part_id"].strip(), row["label"].strip()
        where = f"{path}: line {line}"
        if not pid or pid.startswith(".") or "/" in pid or "\\" in pid:
            raise VitinspectError(f"{where}: part_id {_text(pid)!r} is not a folder name")
        if pid in seen:
            raise VitinspectError(f"{where}: duplicate part_id {_text(pid)!r} (first on line {seen[pid]})")
        seen[pid] = line
        if classes is not None and label not in classes:
            raise VitinspectError(f"{where}: label {_text(label)!r} of part {_text(pid)!r} is not in data.classes {classes}")
        split = (row.get("split") or "").strip().lower() if "split" in row else None
        split = SPLIT_ALIASES.get(split, split) if split is not None else None
        if split is not None and split not in SPLIT_NAMES:
            raise VitinspectError(f"{where}: split {_text(split)!r} of part {_text(pid)!r} must be one of {list(SPLIT_NAMES)} "
                                  "(or validation)")
        record = {}
        for col in RECORD_COLUMNS:
            if (row.get(col) or "").strip():
                try:
                    record[col] = float(row[col])
                except ValueError:
                    raise VitinspectError(f"{where}: {col} {_text(row[col])!r} is not a number") from None
                if not np.isfinite(record[col]):
                    raise VitinspectError(f"{where}: {col} must be finite, got {_text(row[col])!r}")
        out.append({"id": pid, "label": label, "split": split, "record": record, "line": line})
    return out


def detect_layout(root: Path, classes: list[str], layout: str = "auto", labelled: bool = True) -> str:
    """``labels`` where a labels.csv is, ``subfolders`` where a folder is named after a class, else
    ``unlabelled`` (a lot: every sub-folder a part) or, for a data set, ``subfolders``."""
    if layout != "auto":
        return layout
    if os.path.lexists(root / LABELS_CSV):  # whatever it is (a folder, a FIFO, a link): read or refused, never passed over
        return "labels"
    if any((root / c).is_dir() for c in classes):
        return "subfolders"
    return "subfolders" if labelled else "unlabelled"


def scan(root, views: list[str], classes: list[str], layout: str = "auto", on_bad_part: str = "error",
         max_pixels: int = MAX_PIXELS, labelled: bool = True) -> Scan:
    """Find and check the parts under ``root`` (headers only; validate decodes them: vitinspect.data.folder_checks). ``labelled`` False: a lot, whose labels are
    optional (a labels.csv or class sub-folders are read when there; otherwise every sub-folder is an
    unlabelled part). Dataset-level faults (layout, labels.csv, duplicates, a row without a
    folder or a folder without a row) always raise; a bad part raises, or is skipped with ``on_bad_part: skip``."""
    root = Path(root)
    if not root.is_dir():
        raise VitinspectError(f"{root}: no such folder of parts")
    real = root.resolve()
    layout = detect_layout(root, classes, layout, labelled)
    entries: list[tuple[str, str | None, str | None, Path, dict]] = []
    if layout == "labels":
        if not os.path.lexists(root / LABELS_CSV):
            raise VitinspectError(f"{root / LABELS_CSV}: missing (data.folders.layout is labels)")
        # The part folders are in parts/ beside labels.csv, or beside it directly (as `vitinspect render` writes them).
        parts_dir = root / PARTS_DIR if (root / PARTS_DIR).is_dir() else root
        rows = _read_labels(root, classes)
        if not rows:
            raise VitinspectError(f"{root / LABELS_CSV}: no rows, no parts")
        folders = {d.name for d in _subdirs(parts_dir)}
        for r in rows:
            if r["id"] not in folders:
                raise VitinspectError(f"{root / LABELS_CSV}: line {r['line']}: part {_text(r['id'])!r} has no folder {parts_dir / r['id']}")
        listed = {r["id"] for r in rows}
        extra = sorted(folders - listed)
        if extra:
            raise VitinspectError(f"{parts_dir / extra[0]}: a part folder with no row in {root / LABELS_CSV}"
                                  + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        entries = [(r["id"], r["label"], r["split"], parts_dir / r["id"], r["record"]) for r in rows]
    elif layout == "subfolders":
        known = classes
        dirs = _subdirs(root)
        unknown = [d for d in dirs if d.name not in known]
        if unknown:
            raise VitinspectError(f"{unknown[0]}: a folder that is not a class of data.classes {known} "
                                  "(the class sub-folders layout is ROOT/<class>/<part_id>/)")
        seen: dict[str, Path] = {}
        for c in known:
            if not (root / c).is_dir():
                continue
            if not _inside(root / c, real):
                raise VitinspectError(f"{root / c}: a link that leaves the data root {real}")
            for d in _subdirs(root / c):
                if d.name in seen:
                    raise VitinspectError(f"{d}: duplicate part id {_text(d.name)!r} (also {seen[d.name]})")
                seen[d.name] = d
                entries.append((d.name, c, None, d, {}))
        if not entries:
            raise VitinspectError(f"{root}: no parts found (expected {LABELS_CSV} + {PARTS_DIR}/, or ROOT/<class>/<part_id>/ "
                                  f"with classes {known})")
    elif layout == "unlabelled":
        # ROOT/parts/<part_id>/ as in the labels layout, or ROOT/<part_id>/
        parts_dir = root / PARTS_DIR if (root / PARTS_DIR).is_dir() else root
        entries = [(d.name, None, None, d, {}) for d in _subdirs(parts_dir)]
        if not entries:
            raise VitinspectError(f"{parts_dir}: no part folders in it (an empty lot)")
    else:  # pragma: no cover - params check the value
        raise VitinspectError(f"data.folders.layout must be one of auto, labels, subfolders, got {layout!r}")
    if len(entries) > MAX_PARTS:
        raise VitinspectError(f"{root}: more than {MAX_PARTS:,} parts")
    parts, skipped = [], []
    for pid, label, split, folder, record in entries:
        try:
            files, mask = _part_files(folder, views, real, max_pixels)
        except BadPart as exc:
            if on_bad_part != "skip":
                raise
            skipped.append({"part": pid, "reason": str(exc)})
            continue
        parts.append(FolderPart(pid, label, split, folder, files, mask, record))
    if not parts:
        raise VitinspectError(f"{root}: every part was skipped as bad (first: {skipped[0]['reason']})")
    return Scan(layout, parts, skipped)


def _subdirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` (hidden ones left out), sorted; a name that is not UTF-8 text is refused
    here (it would fail later, inside DVC or the Arrow files, naming nothing)."""
    try:
        found = sorted(d for d in folder.iterdir() if not d.name.startswith(".") and d.is_dir())
    except OSError as exc:
        raise VitinspectError(f"{folder}: cannot list it ({exc.strerror})") from None
    for d in found:
        try:
            d.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = _text(repr(os.fsencode(d.name)))
            raise VitinspectError(f"{folder}: a folder named {shown} is not UTF-8 text; rename it") from None
    return found


def assign_splits(parts: list[FolderPart], fractions: dict[str, float], seed: int) -> list[FolderPart]:
    """Parts with their split: the user's (a ``split`` column for every row) or stratified by class with
    ``fractions`` and ``seed`` (the renderer's rule, :func:`vitinspect.data.geometry.assign_splits`)."""
    given = [p.split for p in parts]
    if all(s for s in given):
        return parts
    if any(s for s in given):
        first = next(p for p in parts if not p.split)
        raise VitinspectError(f"part {_text(first.id)!r} has no split while others have one; give every row a split or none")
    labels = np.array([p.label for p in parts], dtype=object)
    names = stratified(labels, fractions, np.random.default_rng([seed, 0]))
    return [replace(p, split=str(s)) for p, s in zip(parts, names)]


def check_splits(parts: list[FolderPart], classes: list[str], good: str, root) -> None:
    """Every class has a training part, the unit space has good training parts, val and test are not empty."""
    train = {c: 0 for c in classes}
    for p in parts:
        if p.split == "train":
            train[p.label] += 1
    if train[good] == 0:
        raise VitinspectError(f"{root}: no good part ({good!r}, data.good_class) in the training split: the unit space needs them")
    empty = [c for c, n in train.items() if n == 0]
    if empty:
        raise VitinspectError(f"{root}: class {empty[0]!r} has no training part (data.classes lists it)")
    for s in ("val", "test"):
        if not any(p.split == s for p in parts):
            raise VitinspectError(f"{root}: the {s} split is empty; add parts or raise data.split.{s}")


def plan(data) -> Scan:
    """The folders data set of ``params.data`` (Data): scanned, split and checked."""
    f = data.folders
    s = scan(f.path, list(data.views), list(data.classes), f.layout, f.on_bad_part)
    parts = assign_splits(s.parts, {"train": data.split.train, "val": data.split.val, "test": data.split.test}, data.seed)
    check_splits(parts, list(data.classes), data.good_class, f.path)
    return Scan(s.layout, parts, s.skipped)


# ------------------------------------------------------------------ decoding


def read_one(part: FolderPart, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, size, size) uint8 views and (size, size) uint8 0/1 mask of one part (all zeros without a mask)."""
    imgs = [load_grey(f) for f in part.views]
    shapes = {img.shape for img in imgs}
    if len(shapes) > 1:
        sizes = ", ".join(f"{f.name} {img.shape[1]}x{img.shape[0]}" for f, img in zip(part.views, imgs))
        raise BadPart(f"{part.folder}: views differ in size once decoded, EXIF orientation applied ({sizes})")
    views = np.stack([fit_square(img, size) for img in imgs])
    if part.mask is None:
        return views, np.zeros((size, size), dtype=np.uint8)
    m = load_grey(part.mask)
    if m.shape != imgs[0].shape:
        raise BadPart(f"{part.mask}: mask is {m.shape[1]}x{m.shape[0]} px, the views {imgs[0].shape[1]}x{imgs[0].shape[0]}")
    return views, (fit_square((m > 0).astype(np.uint8) * 255, size, nearest=True) > 0).astype(np.uint8)


def read_parts(parts: list[FolderPart], size: int, on_bad_part: str = "error"):
    """Decode ``parts`` into the columns :func:`vitinspect.data.synthetic.render_parts` returns (``id``, ``label``
    names, ``defect_terminal``, ``tilt``, ``retraction``, ``bbox``, ``mask``, ``views``), and the list of
    parts skipped as unreadable. Record columns a labels.csv does not give are -1 / 0."""
    keep, views, masks, skipped = [], [], [], []
    for p in parts:
        try:
            v, m = read_one(p, size)
        except BadPart as exc:
            if on_bad_part != "skip":
                raise
            skipped.append({"part": p.id, "reason": str(exc)})
            continue
        keep.append(p)
        views.append(v)
        masks.append(m)
    n = len(keep)
    r = [p.record for p in keep]
    cols = {
        "id": [p.id for p in keep],
        "label": [p.label for p in keep],
        "defect_terminal": np.array([int(x.get("defect_terminal", -1)) for x in r], dtype=np.int32),
        "tilt": np.array([[x.get("tilt_x", 0.0), x.get("tilt_y", 0.0)] for x in r], dtype=np.float32).reshape(n, 2),
        "retraction": np.array([x.get("retraction", 0.0) for x in r], dtype=np.float32),
        "bbox": np.array([mask_box(m) for m in masks], dtype=np.int32).reshape(n, 4),
        "mask": np.stack(masks) if n else np.zeros((0, size, size), dtype=np.uint8),
        "views": np.stack(views) if n else np.zeros((0, len(parts[0].views) if parts else 0, size, size), dtype=np.uint8),
    }
    return cols, skipped

