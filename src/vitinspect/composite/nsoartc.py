"""NSOARTC composite images with Taguchi's RT method.

Per pixel, a w x w window of a side view ``x`` is compared with the same window
of the centre view ``m`` (the standard): the sensitivity beta (how much of the
standard the side view reproduces) and the noise Y2 (what it does not). The
Double-Eye composition contrasts opposite side views, and a unit space of passed
parts turns the three raw channels into z-scores, so a normal part is mid-grey
and a defect stands out.

All functions are pure numpy; images are float arrays, (H, W) or (N, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vitinspect.core.errors import VitinspectError
from vitinspect.data.views import VIEW_PAIRS

INPUTS = ("nsoartc", "raw")  # what a model may be trained on: this composite, or the raw views stacked


def _window_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the w x w window around every pixel, reflect padding (``d c b a | a b c d``).

    Separable running means (scipy's uniform_filter): O(1) per pixel in w.
    """
    size = (1,) * (a.ndim - 2) + (window, window)
    return ndimage.uniform_filter(a, size=size, mode="reflect") * (window * window)


def rt_maps(x: np.ndarray, m: np.ndarray, window: int, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel RT sensitivity and noise of ``x`` against the standard ``m``.

    For the k = w*w values of each window: r = sum(m^2) + eps, L = sum(m*x),
    beta = L / r, S_e = max(sum(x^2) - L^2 / r, 0), V_e = S_e / (k - 1),
    Y2 = sqrt(V_e). ``eps`` keeps dark, flat windows (r ~ 0) finite.

    x, m: float arrays of the same shape, (H, W) or (N, H, W).
    Returns (beta, y2), each of the input's shape, float64.
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window}")
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if x.shape != m.shape or x.ndim not in (2, 3):
        raise ValueError(f"x and m must share a shape (H, W) or (N, H, W), got {x.shape} and {m.shape}")
    r = _window_sum(m * m, window) + eps
    L = _window_sum(m * x, window)
    st = _window_sum(x * x, window)
    beta = L / r
    se = np.maximum(st - L * L / r, 0.0)
    y2 = np.sqrt(se / (window * window - 1))
    return beta, y2


def double_eye(views: dict[str, np.ndarray], window: int, eps: float = 1e-6) -> np.ndarray:
    """Raw composite channels of parts seen by a centre camera and opposite side cameras.

    views: name -> (N, H, W) float images in [0, 1]; must hold ``center`` and at
    least one opposite pair (left/right, top/bottom).
    For a pair (a, b): d1 = beta_a - beta_b, d2 = Y2_a - Y2_b, d3 = Y2_a + Y2_b,
    each against the centre view; with two pairs, their mean.
    Returns (N, 3, H, W) float32.
    """
    centre = views["center"]
    pairs = [(a, b) for a, b in VIEW_PAIRS if a in views and b in views]
    if not pairs:
        raise ValueError("need an opposite pair of side views (left+right or top+bottom)")
    out = np.zeros((len(centre), 3) + centre.shape[1:], dtype=np.float64)
    for a, b in pairs:
        beta_a, y2_a = rt_maps(views[a], centre, window, eps)
        beta_b, y2_b = rt_maps(views[b], centre, window, eps)
        out[:, 0] += beta_a - beta_b
        out[:, 1] += y2_a - y2_b
        out[:, 2] += y2_a + y2_b
    return (out / len(pairs)).astype(np.float32)


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (float64) of channels, per pixel: what a unit space needs,
    merged chunk by chunk (Chan et al.'s parallel form of Welford's update) instead of stacking every part."""

    n: int
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    @classmethod
    def of(cls, channels: np.ndarray) -> "Moments":
        """channels: (N, 3, H, W); the same two-pass arithmetic as numpy's mean and std."""
        c = np.asarray(channels, dtype=np.float64)
        if len(c) == 0:
            return cls(0)
        mean = c.sum(axis=0) / len(c)
        return cls(len(c), mean, ((c - mean) ** 2).sum(axis=0))

    def merge(self, other: "Moments") -> "Moments":
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * (other.n / n), self.m2 + other.m2 + delta * delta * (self.n * other.n / n))


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A unit space's statistics: mean and standard deviation over the first (parts) axis, in float64, and
    the count. The composite's (:class:`UnitSpace`, per pixel) and the peer's (per terminal cell) share it."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=0), x.std(axis=0), len(x)


@dataclass(frozen=True)
class UnitSpace:
    """Per-pixel mean and standard deviation of the raw channels over passed parts.

    mean, std: (3, H, W) float32, std as fitted; n: how many parts it was built from; floor: (3,) float32, the
    least std per channel the z-scores divide by (``nsoartc.std_floor``, :meth:`floored`), or None.
    """

    mean: np.ndarray
    std: np.ndarray
    n: int
    floor: np.ndarray | None = None

    @property
    def scale(self) -> np.ndarray:
        """(3, H, W) float32: what the z-scores divide by (plus eps): the fitted std, raised to the floor."""
        return self.std if self.floor is None else np.maximum(self.std, self.floor.astype(np.float32)[:, None, None])

    @classmethod
    def fit(cls, channels: np.ndarray) -> "UnitSpace":
        """channels: (N, 3, H, W) raw composite channels of normal parts."""
        mean, std, n = moments(channels)
        return cls(mean.astype(np.float32), std.astype(np.float32), n)

    def floored(self, fraction: float) -> "UnitSpace":
        """This unit space with each channel's std raised to at least ``fraction`` x that channel's 99th-percentile
        std over the pixels (``nsoartc.std_floor``; 0 leaves it as fitted).

        Where no part ever is (empty background) the passed parts differ only by sensor or render noise, so
        the fitted std there is tiny and the z-score turns that noise into unit noise, as loud in the composite
        as the part itself. The floor is found from the data (the spread where the parts move), never a level
        typed for one renderer; pixels whose std is above it keep theirs."""
        if fraction <= 0:
            return self
        top = np.quantile(self.std.reshape(len(self.std), -1).astype(np.float64), 0.99, axis=1)
        return UnitSpace(self.mean, self.std, self.n, (fraction * top).astype(np.float32))

    def unfloored(self, z: np.ndarray, eps: float) -> np.ndarray:
        """z-scores made against :attr:`scale` -> the same parts' z-scores against the fitted std: the OOD guard's
        view, where anything in the empty background stands out as far as the background's noise allows."""
        if self.floor is None:
            return z
        return (z * ((self.scale + eps) / (self.std + eps))).astype(np.float32)

    def zscore(self, channels: np.ndarray, eps: float) -> np.ndarray:
        """(N, 3, H, W) -> (N, 3, H, W) :func:`zscore` against this unit space, float32."""
        return zscore(channels, self.mean, self.scale, eps).astype(np.float32)


def save_unit_space(space: UnitSpace, path) -> None:
    """Write ``space`` to ``path`` as .npz (mean, std float32 (3, H, W); n int64; floor float32 (3,) when it has
    one): what the nsoartc stage writes (the caller makes the write atomic) and :func:`load_unit_space` reads."""
    floor = {} if space.floor is None else {"floor": space.floor}
    with open(path, "wb") as fh:
        np.savez(fh, mean=space.mean, std=space.std, n=np.int64(space.n), **floor)


def load_unit_space(path, image_size: int | None = None) -> UnitSpace:
    """The unit space :func:`save_unit_space` wrote (.npz: mean, std (3, S, S) float32, n), checked to be of
    ``image_size`` px when given; a one-line VitinspectError naming ``path`` otherwise."""
    try:
        with np.load(path) as z:
            space = UnitSpace(z["mean"], z["std"], int(z["n"]), z["floor"] if "floor" in z.files else None)
    except (OSError, KeyError, ValueError) as exc:
        raise VitinspectError(f"{path}: not a unit space written by the nsoartc stage ({type(exc).__name__}); run dvc repro") from None
    if image_size is not None and space.mean.shape[-1] != image_size:
        raise VitinspectError(f"{path}: unit space of {space.mean.shape[-1]} px but data.image_size is {image_size}; run dvc repro")
    return space


def zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray, eps: float) -> np.ndarray:
    """z = (x - mean) / (std + eps), broadcast over the leading (parts) axis, in the dtype numpy gives.

    The one z-score of a unit space: the composite's per-pixel channels (:class:`UnitSpace`) and the
    classical peer's per-cell features (``evaluation.rt_peer.CellUnitSpace``) both standardise with it.
    """
    return (x - mean) / (std + eps)


def raw_channels(views: np.ndarray, view_names: list[str], window: int, eps: float) -> np.ndarray:
    """uint8 views (N, V, H, W), ``view_names`` naming axis 1 -> raw Double-Eye channels (N, 3, H, W) float32:
    the views scaled to [0, 1] in float32, then :func:`double_eye`."""
    v = views.astype(np.float32) / 255.0
    return double_eye({name: v[:, j] for j, name in enumerate(view_names)}, window, eps)


def unit_zscores(views: np.ndarray, view_names: list[str], space: UnitSpace, window: int, eps: float) -> np.ndarray:
    """The composite chain up to its z-scores: uint8 views (N, V, H, W) -> :func:`raw_channels` -> the unit
    space's z-scores (N, 3, H, W) float32. :func:`to_image` makes them the NSOARTC image; every caller (the
    nsoartc stage, the lot, pretraining, the line engine) goes through here, so the bytes agree."""
    return space.zscore(raw_channels(views, view_names, window, eps), eps)


def to_image(z: np.ndarray, gain: float) -> np.ndarray:
    """(N, 3, H, W) z-scores -> (N, H, W, 3) uint8 RGB, clip(128 + gain * z, 0, 255)."""
    img = np.clip(np.round(128.0 + gain * z), 0, 255).astype(np.uint8)
    return np.moveaxis(img, 1, -1)


def defect_contrast(z: np.ndarray, masks: np.ndarray) -> float:
    """Mean |z| inside the defect masks over mean |z| outside them.

    z: (N, 3, H, W); masks: (N, H, W) bool. Above 1 means the composite lights
    up where the defect is. NaN when there is no mask pixel.
    """
    a = np.abs(z).mean(axis=1)  # (N, H, W)
    masks = masks.astype(bool)
    if not masks.any():
        return float("nan")
    return float(a[masks].mean() / a[~masks].mean())


def passed_channels(cols: dict, view_names: list[str], passed: int, window: int, eps: float) -> np.ndarray:
    """Raw channels (k, 3, H, W) float32 of the passed parts (``label == passed``) among ``cols`` (``views``
    (n, V, H, W) uint8 and ``label``)."""
    keep = np.asarray(cols["label"]) == passed
    views = cols["views"][keep]
    if not len(views):
        size = cols["views"].shape[-1]
        return np.zeros((0, 3, size, size), dtype=np.float32)
    return raw_channels(views, view_names, window, eps)


class UnitSpaceSums:
    """A unit space accumulated chunk by chunk in one float64 pass: the per-pixel sum row after row (the
    order numpy's mean adds them in, so the same mean bytes as fitting the stacked array) and the squared
    deviations by merging each chunk's :class:`Moments`."""

    def __init__(self):
        self.total = None
        self.moments = Moments(0)

    def add(self, channels: np.ndarray) -> None:
        c = np.asarray(channels, dtype=np.float64)
        if not len(c):
            return
        if self.total is None:
            self.total = np.zeros(c.shape[1:])
        for row in c:
            self.total += row
        self.moments = self.moments.merge(Moments.of(c))

    @property
    def n(self) -> int:
        return self.moments.n

    def space(self) -> UnitSpace:
        m = self.moments
        return UnitSpace((self.total / m.n).astype(np.float32), np.sqrt(m.m2 / m.n).astype(np.float32), m.n)


def composite_chunk(cols: dict, view_names: list[str], space: UnitSpace, window: int, gain: float, eps: float,
                    n_classes: int) -> tuple[dict, dict]:
    """The NSOARTC record of a chunk of parts and what the stage's summary needs from it.

    cols: ``views`` (n, V, H, W) uint8, ``label`` (n,) class indices, ``mask`` (n, H, W), the other
    record columns passed through. Returns (columns with ``raw`` (centre view) and ``nsoartc`` (n, H, W, 3)
    uint8 added and ``views`` dropped, summary): per class the parts, and the sums and pixel counts of mean |z|
    inside and outside the defect masks (float64).
    """
    z = unit_zscores(cols["views"], view_names, space, window, eps)
    out = {k: a for k, a in cols.items() if k != "views"}
    out["raw"] = cols["views"][:, view_names.index("center")]
    out["nsoartc"] = to_image(z, gain)
    labels = np.asarray(cols["label"])
    masks = cols["mask"].astype(bool)
    a = np.abs(z).mean(axis=1)
    summary = {"count": np.bincount(labels, minlength=n_classes), "in": np.zeros(n_classes), "n_in": np.zeros(n_classes, np.int64),
               "out": np.zeros(n_classes), "n_out": np.zeros(n_classes, np.int64)}
    for c in np.unique(labels):
        rows = labels == c
        ac, mc = a[rows], masks[rows]
        summary["in"][c], summary["n_in"][c] = ac[mc].sum(dtype=np.float64), mc.sum()
        summary["out"][c], summary["n_out"][c] = ac[~mc].sum(dtype=np.float64), (~mc).sum()
    return out, summary


def composite(views: np.ndarray, view_names: list[str], space: UnitSpace, window: int, gain: float,
              eps: float = 1e-6, chunk: int = 512) -> np.ndarray:
    """uint8 views (N, V, H, W) -> NSOARTC composites (N, H, W, 3) uint8 against a fitted unit space.

    The chain (:func:`unit_zscores`, then :func:`to_image`), in chunks of parts so a large lot needs
    little memory.
    """
    out = []
    for i in range(0, len(views), chunk):
        out.append(to_image(unit_zscores(views[i:i + chunk], view_names, space, window, eps), gain))
    size = views.shape[-1]
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), dtype=np.uint8)
