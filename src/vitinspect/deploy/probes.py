"""Synthetic inputs for trying and probing the inspection: a lot of new parts, and inputs that do not belong.

``render_fresh_parts`` draws new parts with the data set's settings (a fresh seed stream, so none is a
training part). ``ood_probes`` builds the out-of-distribution set the guard is measured on: natural
photos as views, blank frames, noise, in-distribution parts with their side views swapped or
shifted, and parts rendered at another scale. All arrays are (N, V, H, W) uint8 in view order.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from vitinspect.data.views import VIEW_PAIRS
from vitinspect.data.geometry import Geometry, draw_part
from vitinspect.data.render2d import BACKGROUND, render_view

LOT_STREAM = 2  # render.generate draws part i from default_rng([seed, 1, i]); the try-it lot from [seed, 2, i]


def class_mix(classes: list[str], passed_ratio: float, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` class names drawn with the data set's mix: ``passed_ratio`` passed, the rest evenly."""
    defects = [c for c in classes if c != "passed"]
    probs = [passed_ratio if c == "passed" else (1 - passed_ratio) / len(defects) for c in classes]
    return [classes[i] for i in rng.choice(len(classes), size=n, p=probs)]


def render_fresh_parts(data, n: int, seed: int, size: int | None = None, stream: int = LOT_STREAM):
    """``n`` new parts drawn like ``params.data`` (Data) does, at ``size`` px (default: data.image_size).

    Returns (parts: list[render.Part], views: (n, V, size, size) uint8).
    """
    size = size or data.image_size
    geom = Geometry(size, data.grid.rows, data.grid.cols)
    labels = class_mix(list(data.classes), data.passed_ratio, n, np.random.default_rng([seed, stream, 0]))
    # Jitter in pixels of the data set's image size, so a part rendered larger is a true zoom.
    jitter = data.jitter_px * size / data.image_size
    parts, views = [], np.empty((n, len(data.views), size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, stream, 1, i])
        part = draw_part(label, geom, rng, tilt_range=data.defect.tilt, retract_range=data.defect.retract,
                         jitter_px=jitter, lighting=data.lighting)
        for j, view in enumerate(data.views):
            views[i, j] = np.round(render_view(geom, part, view, rng, data.noise, data.blur) * 255).astype(np.uint8)
        parts.append(part)
    return parts, views


def _grey(photo: np.ndarray) -> np.ndarray:
    photo = np.asarray(photo, dtype=np.float64)
    return photo @ [0.299, 0.587, 0.114] if photo.ndim == 3 else photo


def natural_photos() -> list[np.ndarray]:
    """Grey float photos (0..255) shipped with scikit-learn (and matplotlib's sample data, when present)."""
    from sklearn.datasets import load_sample_images

    photos = [_grey(p) for p in load_sample_images().images]
    try:
        import matplotlib.cbook as cbook

        for name in ("grace_hopper.jpg",):
            with cbook.get_sample_data(name) as fh:
                from PIL import Image

                photos.append(_grey(np.asarray(Image.open(fh).convert("RGB"))))
    except Exception:  # noqa: BLE001 -- an optional extra photo; the sklearn ones suffice
        pass
    return photos


def _crops(photo: np.ndarray, size: int, rng: np.random.Generator, shifts) -> np.ndarray:
    """One random square window of ``photo``, taken at each sideways shift (px), resized to (len(shifts), size, size) uint8."""
    margin = max(abs(int(d)) for d in shifts)
    side = int(rng.integers(size, min(photo.shape) // 2 + size))
    # A window that fits the photo: above ~210 px the drawn side can exceed it (then it is upsampled to size).
    side = min(side, photo.shape[0] - 1, photo.shape[1] - 2 * margin - 1)
    y = int(rng.integers(0, photo.shape[0] - side))
    x = int(rng.integers(margin, photo.shape[1] - side - margin))
    out = []
    for d in shifts:
        crop = photo[y:y + side, x + int(d):x + int(d) + side]
        out.append(np.clip(np.round(ndimage.zoom(crop, size / side, order=1)[:size, :size]), 0, 255).astype(np.uint8))
    return np.stack(out)


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Integer shift, the edge repeated into the uncovered band."""
    return ndimage.shift(img, (dy, dx), order=0, mode="nearest")


def swap_pairs(views: np.ndarray, names: list[str]) -> np.ndarray:
    """Every opposite pair of side views exchanged (left <-> right, top <-> bottom)."""
    out = views.copy()
    for a, b in VIEW_PAIRS:
        if a in names and b in names:
            out[:, names.index(a)], out[:, names.index(b)] = views[:, names.index(b)], views[:, names.index(a)]
    return out


def _rescaled(parts: np.ndarray, factor: float) -> np.ndarray:
    """(M, V, S, S) parts seen ``factor`` x larger (centre-cropped) or smaller (padded with each view's median)."""
    s = parts.shape[-1]
    out = np.empty_like(parts)
    for i, part in enumerate(parts):
        for j, img in enumerate(part):
            z = np.clip(np.round(ndimage.zoom(img.astype(np.float64), factor, order=1)), 0, 255).astype(np.uint8)
            n = z.shape[0]
            if n >= s:
                o = (n - s) // 2
                out[i, j] = z[o:o + s, o:o + s]
            else:
                out[i, j] = np.median(img)
                o = (s - n) // 2
                out[i, j, o:o + n, o:o + n] = z
    return out


def ood_probes(parts: np.ndarray, data, shift_px: int, seed: int = 0, n_per_kind: int = 40) -> dict[str, np.ndarray]:
    """kind -> (M, V, S, S) uint8 inputs unlike the training data.

    parts: (N, V, S, S) in-distribution parts (e.g. the test split), reused by the swapped and shifted kinds.
    data: params.data (for views, image size and re-rendering at another scale).
    """
    rng = np.random.default_rng([seed, 3])
    names, s, v = list(data.views), data.image_size, len(data.views)
    take = parts[rng.permutation(len(parts))[:n_per_kind]]
    out = {}

    photos = natural_photos()
    same, stereo = [], []
    for i in range(n_per_kind):
        photo = photos[i % len(photos)]
        same.append(_crops(photo, s, rng, [0] * v))
        # Views a few pixels apart, like a stereo rig looking at a scene instead of a part.
        stereo.append(_crops(photo, s, rng, [3 * (j - v // 2) for j in range(v)]))
    out["photo"] = np.stack(same)
    out["photo_stereo"] = np.stack(stereo)

    levels = np.linspace(0, 255, max(n_per_kind // 4, 2))
    out["blank"] = np.broadcast_to(levels[:, None, None, None], (len(levels), v, s, s)).astype(np.uint8)
    out["noise"] = rng.integers(0, 256, size=(n_per_kind, v, s, s), dtype=np.uint8)
    out["swapped"] = swap_pairs(take, names)

    steps = [(0, shift_px), (0, -shift_px), (shift_px, 0), (-shift_px, 0)]
    out["shifted_all"] = np.stack([np.stack([_shift(img, *steps[i % 4]) for img in part]) for i, part in enumerate(take)])
    side = [j for j, n in enumerate(names) if n != "center"]
    shifted_side = take.copy()
    for i in range(len(take)):
        j = side[i % len(side)]
        shifted_side[i, j] = _shift(take[i, j], *steps[i % 4])
    out["shifted_side"] = shifted_side

    if data.source == "folders":  # the user's parts: our renderer cannot draw them, so the test parts are rescaled
        half = take[: max(1, n_per_kind // 2)]
        out["zoom_in"], out["zoom_out"] = _rescaled(half, 1.5), _rescaled(half, 0.6)
        return out
    # Another scale: rendered 1.5x larger and cropped (a closer camera), or 0.6x and padded (a farther one).
    big = int(round(1.5 * s))
    _, views_big = render_fresh_parts(data, n_per_kind // 2, seed, size=big, stream=4)
    o = (big - s) // 2
    out["zoom_in"] = np.ascontiguousarray(views_big[:, :, o:o + s, o:o + s])
    small = int(round(0.6 * s))
    _, views_small = render_fresh_parts(data, n_per_kind // 2, seed, size=small, stream=5)
    pad = np.full((len(views_small), v, s, s), round(BACKGROUND * 255), dtype=np.uint8)
    o = (s - small) // 2
    pad[:, :, o:o + small, o:o + small] = views_small
    out["zoom_out"] = pad
    return out
