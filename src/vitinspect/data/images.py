"""How a camera image becomes a view: read with its size checked first, turned grey, fitted to the model's size.

The same functions read a view at training (``data.source: folders``, vitinspect.data.user_parts) and at
inspection (``vitinspect inspect``, vitinspect.app.lot_reader), so a part is seen alike by both.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError

# One view may hold at most this many pixels (a 64-megapixel camera frame), and at most MAX_SIDE pixels on its
# longer side (it is padded to a square before it is resized: a 1 x 64M strip would become a 64M x 64M square).
# Both are checked from the header, before any pixel is decoded (PIL's own decompression-bomb guard only warns
# below twice its limit, and its error names no file).
MAX_PIXELS = 64 * 2**20
MAX_SIDE = 16384


class BadPart(VitinspectError):
    """One part cannot be used; with ``on_bad_part: skip`` it is listed and left out."""


def _scale(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values in [lo, hi] -> uint8 0..255, rounded (hi > lo); in float32, so a 64-megapixel view needs 256 MB."""
    out = (a.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_uint8(im) -> np.ndarray:
    """A PIL image of any mode -> (H, W) uint8 grey.

    Colour and palette images become grey by PIL's ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B);
    alpha is ignored. Deeper images are scaled, never clipped to white:

    - integer (16-bit ``I;16*``, 32-bit ``I``): by the 16-bit range, v * 255 / 65535 rounded (so 65535 is
      white and a dark 16-bit frame stays dark); values beyond it (negative, or above 65535) widen the range to
      [min(0, lowest), max(65535, highest)];
    - float (``F``): as 0..1 (v * 255, the convention of float TIFFs); values beyond it widen the range to
      [min(0, lowest), max(1, highest)]. NaN is black, +inf white, -inf black.
    """
    mode = im.mode
    if not (mode == "F" or mode == "I" or mode.startswith("I;")):
        if mode == "L":
            return np.array(im, dtype=np.uint8)
        direct = mode in ("1", "P", "RGB", "RGBA", "LA", "PA", "RGBX")
        return np.array((im if direct else im.convert("RGB")).convert("L"), dtype=np.uint8)
    a = np.asarray(im)
    if mode == "F":
        a = a.astype(np.float32, copy=False)
        finite = np.isfinite(a)
        values = a if finite.all() else a[finite]
        lo, hi = (min(0.0, float(values.min())), max(1.0, float(values.max()))) if values.size else (0.0, 1.0)
        if values is not a:
            a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
        return _scale(a, lo, hi)
    lo, hi = (min(0, int(a.min())), max(65535, int(a.max()))) if a.size else (0, 65535)
    if lo == 0 and hi == 65535:  # exact integer rounding: v * 255 / 65535 = v / 257, never a tie
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return _scale(a, lo, hi)


def _quiet(call, *args):
    """Run a PIL call with its warnings silenced (a corrupt EXIF block, a truncated read): each is either
    harmless or followed by an exception, which becomes the part's error; a warning would print two lines."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args)


def check_size(path, w: int, h: int, max_pixels: int = MAX_PIXELS) -> None:
    """A BadPart naming ``path`` when a header's size is empty or over the bounds (MAX_PIXELS, MAX_SIDE)."""
    if w < 1 or h < 1:
        raise BadPart(f"{path}: {w}x{h} px: an empty image")
    if w * h > max_pixels:
        raise BadPart(f"{path}: {w}x{h} px is over the {max_pixels:,} pixels a view may have (refused before decoding)")
    if max(w, h) > MAX_SIDE:
        raise BadPart(f"{path}: {w}x{h} px is over the {MAX_SIDE:,} px a side a view may have (refused before decoding)")


def open_checked(path: Path, max_pixels: int = MAX_PIXELS):
    """``Image.open`` with the size checked from the header before any decoding; a BadPart naming the file."""
    from PIL import Image

    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours below, with a message naming the file
    try:
        im = _quiet(Image.open, path)
        w, h = im.size
    except Exception as exc:  # PIL raises many types (SyntaxError, struct.error, ...) for broken headers
        raise BadPart(f"{path}: unreadable image ({_reason(exc, path)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    try:
        check_size(path, w, h, max_pixels)
    except BadPart:
        im.close()
        raise
    return im


@functools.cache
def image_suffixes() -> frozenset[str]:
    """The file name endings PIL reads (``.png``, ``.jpg``, ``.tif``, ...), lower case: a ``center.json``
    sidecar beside ``center.png`` is not a second centre image."""
    from PIL import Image

    return frozenset(Image.registered_extensions())


# EXIF orientations that swap width and height (ImageOps.exif_transpose, which load_grey applies, turns them).
SWAPS_SIDES = (5, 6, 7, 8)


def oriented_size(im) -> tuple[int, int]:
    """(width, height) of an opened image once load_grey applies its EXIF orientation, read without decoding
    where the format allows (JPEG, TIFF, a PNG whose eXIf chunk precedes its pixels); the header's size
    otherwise. A guess, never the last word: :func:`load_grey`'s decoded size is (validate decodes every view)."""
    w, h = im.size
    try:
        if im.format == "PNG":  # PNG's getexif() decodes the pixels when the chunk comes after them
            raw = im.info.get("exif")
            exif = _quiet(_exif_of, raw) if raw else None
        else:
            exif = _quiet(im.getexif)
        turned = exif is not None and exif.get(0x0112) in SWAPS_SIDES
    except Exception:  # a broken EXIF block: load_grey decides (PIL ignores it there too, or fails with a reason)
        turned = False
    return (h, w) if turned else (w, h)


def _exif_of(raw: bytes):
    from PIL import Image

    exif = Image.Exif()
    exif.load(raw)
    return exif


def _reason(exc: BaseException, path) -> str:
    """The exception's type and the first line of its message, bounded (PIL's messages can quote file bytes);
    the type alone when the message repeats the file's name (it is already in the line)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image format PIL reads"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    first = text[0][:120] if text else ""
    if not first or str(path) in first or Path(path).name in first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first}"


def load_grey(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W) uint8 grey view (see :func:`_to_uint8`); the first frame of a multi-frame file, EXIF
    orientation applied; every decoding failure (whatever PIL, numpy or the system raises, MemoryError
    included) is a BadPart naming the file."""
    from PIL import Image, ImageOps

    im = open_checked(path, max_pixels)
    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked above; PIL re-checks at seek/load
    try:
        with im:
            im.seek(0)
            im = _quiet(ImageOps.exif_transpose, im)
            check_size(path, *im.size, max_pixels=max_pixels)  # a transposed or re-seeked frame
            return _quiet(_to_uint8, im)
    except BadPart:
        raise
    except Exception as exc:
        raise BadPart(f"{path}: unreadable image ({_reason(exc, path)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def fit_square(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8, the same at training and at inspection: padded to a square with
    black (0), centred (an odd remainder goes to the right / bottom), then resized with PIL's bilinear
    filter (antialiased when it shrinks) or, for masks, nearest neighbour. A square image of ``size`` px is
    returned unchanged."""
    from PIL import Image

    h, w = img.shape
    if (h, w) == (size, size):
        return img
    side = max(h, w)
    if (h, w) != (side, side):
        square = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = img
        img = square
    if side == size:
        return img
    filt = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(img).resize((size, size), filt), dtype=np.uint8)
