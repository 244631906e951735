"""A seeded fuzz of `read_part`: valid views in every format PIL writes here, their bytes mutated (flipped,
truncated, inserted, header fields overwritten, chunks spliced); no exception may escape, each case returns
the part's views or one line of error naming the file; the view reader under it (vitinspect.data.images.load_grey)
raises nothing but its own BadPart."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, features

from vitinspect.data.images import BadPart, load_grey
from vitinspect.app.lot_reader import read_part

SEED = 28
MUTATIONS_PER_BASE = 40
SIZE = 32
VIEWS = ["center", "left", "right"]


def _bases() -> dict[str, tuple[str, bytes]]:
    """name -> (file extension, bytes) of small valid images: each format, 8 and 16 bit, grey and colour."""
    rng = np.random.default_rng(SEED)
    grey = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    i16 = (grey.astype(np.uint16) * 257)
    f32 = grey.astype(np.float32) / 255
    specs = [
        ("png_L", "png", Image.fromarray(grey), {}), ("png_RGB", "png", Image.fromarray(rgb), {}),
        ("png_RGBA", "png", Image.fromarray(rgba), {}), ("png_I16", "png", Image.fromarray(i16), {}),
        ("png_P", "png", Image.fromarray(rgb).convert("P"), {}),
        ("png_interlaced", "png", Image.fromarray(rgb), {"interlace": 1}),
        ("jpeg_L", "jpg", Image.fromarray(grey), {}), ("jpeg_RGB", "jpg", Image.fromarray(rgb), {"progressive": True}),
        ("tiff_L", "tif", Image.fromarray(grey), {}), ("tiff_RGB_lzw", "tif", Image.fromarray(rgb), {"compression": "tiff_lzw"}),
        ("tiff_I16", "tif", Image.fromarray(i16), {}), ("tiff_F", "tif", Image.fromarray(f32), {}),
        ("bmp_L", "bmp", Image.fromarray(grey), {}), ("bmp_RGB", "bmp", Image.fromarray(rgb), {}),
        ("gif", "gif", Image.fromarray(grey), {}),
    ]
    if features.check("webp"):
        specs.append(("webp_RGB", "webp", Image.fromarray(rgb), {"lossless": True}))
    out = {}
    for name, ext, im, kw in specs:
        buf = io.BytesIO()
        im.save(buf, format={"jpg": "JPEG", "tif": "TIFF"}.get(ext, ext.upper()), **kw)
        out[name] = (ext, buf.getvalue())
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One seeded mutation of ``data``: (what was done, the bytes)."""
    b = bytearray(data)
    kind = ["flip", "truncate", "insert", "header", "size_fields", "splice", "zero_run"][int(rng.integers(7))]
    if kind == "flip":
        for i in rng.integers(0, len(b), int(rng.integers(1, 9))):
            b[i] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        b = b[:int(rng.integers(0, len(b)))]
    elif kind == "insert":
        at = int(rng.integers(0, len(b)))
        b[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == "header":
        for i in rng.integers(0, min(len(b), 64), int(rng.integers(1, 6))):
            b[i] = int(rng.integers(0, 256))
    elif kind == "size_fields":  # where the width and height sit in PNG, BMP, GIF and near a TIFF's start
        for i in [*range(16, 24), *range(18, 26), *range(6, 10)]:
            if i < len(b) and rng.random() < 0.5:
                b[i] = 0xFF if rng.random() < 0.7 else 0
    elif kind == "splice":
        a, c = sorted(int(x) for x in rng.integers(0, len(b), 2))
        b = b[:c] + b[a:c] + b[c:]
    else:
        at, run = int(rng.integers(0, len(b))), int(rng.integers(1, 200))
        b[at:at + run] = b"\0" * len(b[at:at + run])
    return kind, bytes(b)


def _cases():
    rng = np.random.default_rng(SEED)
    for name, (ext, data) in _bases().items():
        yield name, ext, "intact", data
        for k in range(MUTATIONS_PER_BASE):
            kind, mutated = _mutate(data, rng)
            yield f"{name}#{k}", ext, kind, mutated


def test_no_exception_escapes_read_part(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.full((20, 24), 128, np.uint8)).save(good, format="PNG")
    folder = tmp_path / "part"
    folder.mkdir()
    for v in VIEWS[1:]:
        (folder / f"{v}.png").write_bytes(good.getvalue())
    counts = {"views": 0, "error": 0}
    start = time.monotonic()
    n = 0
    for name, ext, kind, data in _cases():
        for old in folder.glob("center.*"):
            old.unlink()
        (folder / f"center.{ext}").write_bytes(data)
        t0 = time.monotonic()
        views, err = read_part(folder, VIEWS, SIZE)  # raises nothing: that is the test
        try:  # and the view reader under it fails only with its own one-line BadPart, never the catch-all's
            load_grey(folder / f"center.{ext}")
        except BadPart as exc:
            assert "cannot read the part" not in str(exc)
        assert time.monotonic() - t0 < 5, (name, kind)
        if views is not None:
            assert err is None and views.shape == (3, SIZE, SIZE) and views.dtype == np.uint8, (name, kind)
            counts["views"] += 1
        else:
            assert isinstance(err, str) and err and "\n" not in err and "center" in err, (name, kind, err)
            counts["error"] += 1
        if kind == "intact":
            assert views is not None, (name, err)
        n += 1
    assert n >= 300, n
    assert counts["views"] > 0 and counts["error"] > 0, counts  # the mutations both break files and leave some readable
    assert time.monotonic() - start < 20
    print(f"fuzz: {n} cases, {counts['views']} read, {counts['error']} error rows, {time.monotonic() - start:.1f} s")


@pytest.mark.parametrize("ext", ["png", "tif", "jpg"])
def test_a_view_that_vanishes_between_listing_and_reading_is_an_error(tmp_path, ext, monkeypatch):
    folder = tmp_path / "part"
    folder.mkdir()
    for v in VIEWS:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"{v}.{ext}")
    from PIL import Image as PILImage

    opened = PILImage.open

    def gone(path, *a, **kw):
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(PILImage, "open", gone)
    views, err = read_part(folder, VIEWS, SIZE)
    assert views is None and "No such file or directory" in err
    monkeypatch.setattr(PILImage, "open", opened)
    assert read_part(folder, VIEWS, SIZE)[0] is not None
