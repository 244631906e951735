"""How a camera image becomes a view: read with its size checked first, turned grey, fitted to the model's size.

The same functions read a view at training (``data.source: folders``, vitinspect.folders) and at
inspection (``vitinspect inspect``, vitinspect.part_folders), so a part is seen alike by both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitinspect.errors import VitinspectError

# One view may hold at most this many pixels (a 64-megapixel camera frame); a larger header is refused
# before any pixel is decoded (PIL's own decompression-bomb guard only warns below twice its limit).
MAX_PIXELS = 64 * 2**20


class BadPart(VitinspectError):
    """One part cannot be used; with ``on_bad_part: skip`` it is listed and left out."""


def _to_uint8(im) -> np.ndarray:
    """A PIL image of any mode -> (H, W) uint8 grey.

    Colour and palette images become grey by PIL's ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B);
    alpha is ignored. 16-bit images (and 32-bit integer ones holding 16-bit values) are scaled by their
    full range, v * 255 / 65535 rounded (so 65535 is white and nothing clips); 32-bit integers beyond 16 bits
    by 2^32 - 1. Float images are read as 0..1 (scaled by 255, clipped), the convention of float TIFFs.
    """
    mode = im.mode
    if not (mode == "F" or mode == "I" or mode.startswith("I;")):
        if mode == "L":
            return np.array(im, dtype=np.uint8)
        direct = mode in ("1", "P", "RGB", "RGBA", "LA", "PA", "RGBX")
        return np.array((im if direct else im.convert("RGB")).convert("L"), dtype=np.uint8)
    a = np.asarray(im).astype(np.float64)
    if mode == "F":
        scaled = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0) * 255.0
    elif a.size and a.max() > 65535:
        scaled = a * 255.0 / (2**32 - 1)
    else:
        scaled = a * 255.0 / 65535.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def open_checked(path: Path, max_pixels: int = MAX_PIXELS):
    """``Image.open`` with the size checked from the header before any decoding; a BadPart naming the file."""
    from PIL import Image

    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours below, with a message naming the file
    try:
        im = Image.open(path)
        w, h = im.size
    except Exception as exc:  # PIL raises many types (SyntaxError, struct.error, ...) for broken headers
        raise BadPart(f"{path}: unreadable image ({type(exc).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    if w < 1 or h < 1 or w * h > max_pixels:
        im.close()
        raise BadPart(f"{path}: {w}x{h} px is over the {max_pixels:,} pixels a view may have (refused before decoding)")
    return im


def load_grey(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W) uint8 grey view (see :func:`_to_uint8`); the first frame of a multi-frame file, EXIF
    orientation applied; every decoding failure is a BadPart naming the file."""
    from PIL import Image, ImageOps

    im = open_checked(path, max_pixels)
    try:
        with im:
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            return _to_uint8(im)
    except BadPart:
        raise
    except Exception as exc:
        raise BadPart(f"{path}: unreadable image ({type(exc).__name__})") from None


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
