"""`data.source: folders`: the user's own parts, read from image folders (vitinspect.data.user_parts), as units:
the pixel rules (16-bit, float, colour, palette; pad and resize), both layouts, a user's split, a skipped part.
Through `dvc repro` (the round trip, a foreign set, the fault tables): tests/e2e/test_folders_e2e.py.
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
