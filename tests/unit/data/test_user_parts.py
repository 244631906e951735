"""`data.source: folders`: the user's own parts, read from image folders (vitinspect.data.user_parts), through DVC.

- the pixel rules (16-bit, float, colour, palette; pad and resize) and both layouts, as units;
- a round trip: `vitinspect render` output read back as folders gives the render source's composites and
  metrics byte for byte, through `dvc repro`;
- a foreign set (RGB JPEG 200 x 150 px, four cameras, other class names, class sub-folders, no masks, an
  unlabelled lot), drawn here with PIL's ImageDraw, end to end: metrics, review, inspect;
- a table of folder faults, each through `dvc repro`: one line, exit non-zero, every output intact.
"""

from __future__ import annotations

import csv
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import make_project, run, shared, tiny_dict
from vitinspect.data import user_parts as folders
from vitinspect.data import images
from vitinspect.core.errors import VitinspectError

FOREIGN_CLASSES = ["ok", "bent", "missing_pin"]
FOREIGN_VIEWS = ["center", "left", "right", "top"]
SHIFT = {"center": (0, 0), "left": (-4, 0), "right": (4, 0), "top": (0, -4)}


# ------------------------------------------------------------------ units: pixels


def _save(path: Path, array, mode=None, **kw) -> Path:
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path, **kw)
    return path


def test_sixteen_bit_float_colour_and_palette_become_grey_without_clipping(tmp_path):
    ramp16 = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    g = images.load_grey(_save(tmp_path / "a.png", ramp16))
    assert g.dtype == np.uint8 and g.min() == 0 and g.max() == 255  # scaled by the full 16-bit range, not clipped
    assert (g < 255).mean() > 0.9
    tif = images.load_grey(_save(tmp_path / "f.tif", np.full((8, 8), 0.5, np.float32)))
    assert tif[0, 0] == 128
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 255
    assert images.load_grey(_save(tmp_path / "r.png", rgb))[0, 0] == 76  # ITU-R 601-2: 0.299 * 255
    rgba = np.dstack([rgb, np.full((10, 12), 7, np.uint8)])
    assert images.load_grey(_save(tmp_path / "ra.png", rgba))[0, 0] == 76  # alpha ignored
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    assert images.load_grey(tmp_path / "p.gif").shape == (10, 12)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    assert images.load_grey(tmp_path / "c.jpg").shape == (10, 12)
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    assert images.load_grey(tmp_path / "b.bmp")[0, 0] == 76


def test_fit_square_pads_centred_then_resizes_and_leaves_the_right_size_alone():
    img = np.full((150, 200), 200, np.uint8)
    out = images.fit_square(img, 32)
    assert out.shape == (32, 32)
    assert out[0, 16] == 0 and out[16, 16] == 200 and out[31, 16] == 0  # black bands above and below
    same = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    assert images.fit_square(same, 32) is same
    mask = np.zeros((150, 200), np.uint8)
    mask[70:80, 90:110] = 255
    m = images.fit_square(mask, 32, nearest=True)
    assert set(np.unique(m)) <= {0, 255} and m.any()


def test_a_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(images.BadPart, match="over the .* pixels a view may have"):
        images.load_grey(path)


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h grey pixels, with one tiny (wrong) data chunk."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------ units: layouts


def _part(folder: Path, views, size=(20, 16), value=100, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for v in views:
        Image.fromarray(np.full((size[1], size[0]), value, np.uint8)).save(folder / f"{v}.{ext}")
    return folder


def test_both_layouts_and_a_user_split(tmp_path):
    views = ["center", "left", "right"]
    sub = tmp_path / "sub"
    for c in ("good", "bad"):
        for i in range(5):
            _part(sub / c / f"{c}{i}", views)
    s = folders.scan(sub, views, ["good", "bad"])
    assert s.layout == "subfolders" and len(s.parts) == 10 and {p.label for p in s.parts} == {"good", "bad"}
    lab = tmp_path / "lab"
    rows = []
    for i in range(6):
        _part(lab / "parts" / f"p{i}", views)
        rows.append({"part_id": f"p{i}", "label": "bad" if i % 2 else "good", "split": ["train", "val", "test"][i % 3], "operator": "x"})
    with open(lab / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    s = folders.scan(lab, views, ["good", "bad"])
    assert s.layout == "labels" and [p.split for p in s.parts] == ["train", "val", "test"] * 2
    fixed = folders.assign_splits(s.parts, {"train": 0.7, "val": 0.15, "test": 0.15}, 0)
    assert [p.split for p in fixed] == [p.split for p in s.parts]  # the user's split is kept


def test_stratified_split_and_a_skipped_part_are_reported(tmp_path):
    views = ["center", "left", "right"]
    for c in ("good", "bad"):
        for i in range(20):
            _part(tmp_path / c / f"{c}{i:02d}", views)
    (tmp_path / "bad" / "bad00" / "left.png").unlink()
    with pytest.raises(VitinspectError, match="bad00: missing view 'left'"):
        folders.scan(tmp_path, views, ["good", "bad"])
    s = folders.scan(tmp_path, views, ["good", "bad"], on_bad_part="skip")
    assert len(s.parts) == 39 and s.skipped[0]["part"] == "bad00" and "missing view" in s.skipped[0]["reason"]
    parts = folders.assign_splits(s.parts, {"train": 0.7, "val": 0.15, "test": 0.15}, 0)
    for c in ("good", "bad"):
        got = [p.split for p in parts if p.label == c]
        assert got.count("train") in (13, 14) and got.count("val") == 3


# ------------------------------------------------------------------ the foreign set


def _draw_view(label: str, view: str, defect: int, rng: np.random.Generator, size=(200, 150)) -> Image.Image:
    """A connector face drawn with ImageDraw: a dark housing, a 2 x 4 grid of copper pins whose tips move in
    the side views with their height (parallax); a bent pin's tip moves further, a missing pin is absent."""
    w, h = size
    im = Image.new("RGB", size, (40, 44, 52))
    d = ImageDraw.Draw(im)
    jx, jy = rng.integers(-2, 3, 2)
    d.rectangle([30 + jx, 30 + jy, 170 + jx, 120 + jy], fill=(70, 72, 80))
    sx, sy = SHIFT[view]
    for k in range(8):
        cx, cy = 50 + 33 * (k % 4) + jx, 55 + 40 * (k // 4) + jy
        if label == "missing_pin" and k == defect:
            continue
        bx, by = sx, sy
        if label == "bent" and k == defect:
            bx, by = (3 * sx + 6, 3 * sy + 6) if view != "center" else (5, 5)
        d.rectangle([cx - 7, cy - 7, cx + 7, cy + 7], fill=(120, 90, 60))  # the base
        d.ellipse([cx + bx - 6, cy + by - 6, cx + bx + 6, cy + by + 6], fill=(230, 170, 90))  # the tip
    noise = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, np.float64) + noise, 0, 255).astype(np.uint8))


def make_foreign(root: Path, n_per_class: int, seed: int, labelled: bool = True, masks: bool = False) -> None:
    """The foreign set; ``masks``: each part's mask.png, the defective pin's square around its base and tip
    in the centre view (empty for a good part)."""
    rng = np.random.default_rng(seed)
    for c in FOREIGN_CLASSES:
        for i in range(n_per_class):
            folder = root / c / f"{c}-{seed}-{i:03d}" if labelled else root / f"part-{c}-{i:03d}"
            folder.mkdir(parents=True)
            defect = int(rng.integers(8))
            state = rng.bit_generator.state
            for v in FOREIGN_VIEWS:
                _draw_view(c, v, defect, rng).save(folder / f"{v}.jpg", quality=92)
            if masks:
                after = rng.bit_generator.state
                rng.bit_generator.state = state
                jx, jy = rng.integers(-2, 3, 2)  # the centre view's jitter, drawn first
                rng.bit_generator.state = after
                mask = Image.new("L", (200, 150))
                if c != FOREIGN_CLASSES[0]:
                    cx, cy = 50 + 33 * (defect % 4) + jx, 55 + 40 * (defect // 4) + jy
                    ImageDraw.Draw(mask).rectangle([cx - 8, cy - 8, cx + 12, cy + 12], fill=255)
                mask.save(folder / "mask.png")


def foreign_params(path="foreign", lot="foreign_lot") -> dict:
    return tiny_dict(data={"source": "folders", "folders": {"path": path, "layout": "auto", "on_bad_part": "error"},
                           "classes": FOREIGN_CLASSES, "good_class": "ok", "views": FOREIGN_VIEWS, "grid": {"rows": 2, "cols": 4}},
                     lot={"source": "folders", "folders": {"path": lot}})


def _build_foreign(base: Path) -> None:
    root = make_project(base / "proj", foreign_params())
    make_foreign(root / "foreign", 30, 0)
    make_foreign(root / "foreign_lot", 4, 1, labelled=False)
    run("git add -A && git commit -qm 'foreign parts'", root)
    run("dvc repro", root)
    run("git add -A && git commit -qm repro", root)


@pytest.fixture(scope="session")
def foreign(tmp_path_factory) -> Path:
    return shared(tmp_path_factory, "foreign", _build_foreign) / "proj"


# ------------------------------------------------------------------ the round trip


# ------------------------------------------------------------------ bad data: through dvc repro


def _corrupt(path: Path) -> None:
    path.write_bytes(b"not an image at all")


def _resize(path: Path) -> None:
    Image.open(path).resize((100, 75)).save(path)


def _relink_outside(folder: Path) -> None:
    outside = folder.parents[3] / f"outside-{folder.name}"
    shutil.copytree(folder, outside)
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)


def _first(root: Path, cls: str) -> Path:
    return sorted((root / cls).iterdir())[0]


def _csv_edit(fn):
    def edit(root: Path):
        path = root / "labels.csv"
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        header, rows = fn(list(rows[0]), rows)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return edit


# (name, layout, edit of the data root, a fragment of the one-line error)
SUBFOLDER_FAULTS = [
    ("missing view", lambda r: (_first(r, "bent") / "left.jpg").unlink(), "missing view 'left'"),
    ("unreadable view", lambda r: _corrupt(_first(r, "bent") / "center.jpg"), "center.jpg: unreadable image"),
    ("empty view", lambda r: (_first(r, "ok") / "top.jpg").write_bytes(b""), "top.jpg: unreadable image"),
    ("views of different sizes", lambda r: _resize(_first(r, "ok") / "right.jpg"), "views differ in size"),
    ("duplicate part id", lambda r: shutil.copytree(_first(r, "ok"), r / "bent" / _first(r, "ok").name), "duplicate part id"),
    ("folder not a class", lambda r: shutil.copytree(_first(r, "ok"), r / "scratched" / "x1"), "not a class of data.classes"),
    ("no good part", lambda r: shutil.rmtree(r / "ok"), "no good part ('ok', data.good_class)"),
    ("class without parts", lambda r: shutil.rmtree(r / "missing_pin"), "class 'missing_pin' has no training part"),
    ("mask of the wrong size", lambda r: Image.new("L", (20, 20)).save(_first(r, "bent") / "mask.png"), "mask is 20x20 px"),
    ("symlink leaving the root", lambda r: _relink_outside(_first(r, "bent")), "a link that leaves the data root"),
    ("two images for one view", lambda r: shutil.copy(_first(r, "ok") / "left.jpg", _first(r, "ok") / "left.png"),
     "several images for 'left'"),
    ("bomb header", lambda r: (_first(r, "ok") / "center.jpg").write_bytes(_png_header(90_000, 90_000)), "refused before decoding"),
]
LABELS_FAULTS = [
    ("row without folder", lambda r: shutil.rmtree(r / "part-00003"), "has no folder"),
    ("folder without row", lambda r: shutil.copytree(r / "part-00003", r / "part-99999"), "a part folder with no row"),
    ("label not in classes", _csv_edit(lambda h, rows: (h, [dict(x, label="bent") if i == 2 else x for i, x in enumerate(rows)])),
     "label 'bent' of part"),
    ("duplicate row", _csv_edit(lambda h, rows: (h, rows + rows[:1])), "duplicate part_id"),
    ("no part_id column", _csv_edit(lambda h, rows: (["id" if c == "part_id" else c for c in h],
                                                      [dict(x, id=x["part_id"]) for x in rows])), "no 'part_id' column"),
    ("bad split", _csv_edit(lambda h, rows: (h, [dict(x, split="holdout") if i == 0 else x for i, x in enumerate(rows)])),
     "split 'holdout'"),
]


