"""The schema of an inspection bundle's values: every value of bundle.json (:func:`check_content`) and
every array of its .npz files (:func:`check_array`) is checked before anything is judged.

A value that breaks the schema raises :class:`BadValue` (key, what is wrong);
:func:`vitinspect.deploy.bundle.load` turns it into one line naming the file. The bundle's layout, its
writer and its readers are in :mod:`vitinspect.deploy.bundle`.
"""

from __future__ import annotations

import math

import numpy as np

from vitinspect.composite.nsoartc import INPUTS
from vitinspect.core.text import short
from vitinspect.data.views import VIEW_PAIRS, VIEWS
from vitinspect.deploy.ood_guard import COMPONENTS

FORMAT = 3  # the bundle format this vitinspect writes and reads (3: the unit-space gate)
MAX_SIDE = 4096  # image_size bound, as params' data.image_size


class BadValue(Exception):
    """(key, what is wrong): turned into one line naming the file by :func:`vitinspect.deploy.bundle.load`."""


def fail(key: str, what: str, value=None, show=True):
    raise BadValue(key, f"{what}" + (f" (got {short(value)})" if show else ""))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(key, v, lo=-math.inf, hi=math.inf, lo_open=False):
    if not _number(v) or not math.isfinite(v):
        fail(key, "must be a finite number", v)
    if v < lo or v > hi or (lo_open and v == lo):
        fail(key, f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]", v)
    return float(v)


def _integer(key, v, lo, hi):
    if not isinstance(v, int) or isinstance(v, bool):
        fail(key, "must be an integer", v)
    if not lo <= v <= hi:
        fail(key, f"must be in [{lo}, {hi}]", v)
    return v


def _mapping(key, v) -> dict:
    if not isinstance(v, dict):
        fail(key, "must be a JSON object", v)
    return v


def _names(key, v, allowed=None, at_least=1) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        fail(key, "must be a list of non-empty strings", v)
    if len(v) < at_least or len(set(v)) != len(v):
        fail(key, f"must hold at least {at_least} distinct names", v)
    bad = [x for x in v if allowed is not None and x not in allowed]
    if bad:
        fail(key, f"has unknown value {short(bad[0])}; known: {list(allowed)}", show=False)
    return list(v)


def check_content(m) -> None:
    """Every value of bundle.json against the schema; raises BadValue(key, what)."""
    if not isinstance(m, dict):
        fail("(top level)", "must be a JSON object", type(m).__name__)
    if m.get("format") != FORMAT:
        fail("format", f"is not this vitinspect's bundle format {FORMAT}; rebuild the bundle (dvc repro)", m.get("format"))
    views = _names("views", m.get("views"), VIEWS, 2)
    if "center" not in views or not any(a in views and b in views for a, b in VIEW_PAIRS):
        fail("views", "must hold 'center' and an opposite pair (left+right or top+bottom)", views)
    classes = _names("classes", m.get("classes"), None, 2)
    _integer("image_size", m.get("image_size"), 16, MAX_SIDE)
    if m.get("input") not in INPUTS:
        fail("input", f"must be one of {list(INPUTS)}", m.get("input"))
    ns = _mapping("nsoartc", m.get("nsoartc"))
    w = _integer("nsoartc.window", ns.get("window"), 3, MAX_SIDE)
    if w % 2 == 0:
        fail("nsoartc.window", "must be odd", w)
    _finite("nsoartc.gain", ns.get("gain"), 0.0, 1e6, lo_open=True)  # the RT gain: > 0
    _finite("nsoartc.eps", ns.get("eps"), 0.0, 0.1, lo_open=True)
    op = _mapping("operating_point", m.get("operating_point"))
    if op.get("class") not in classes:
        fail("operating_point.class", f"must be one of classes {short(classes)}", op.get("class"))
    if op.get("threshold") is not None:
        _finite("operating_point.threshold", op.get("threshold"), 0.0, 1.0)
    if not isinstance(op.get("source", ""), str):
        fail("operating_point.source", "must be a string", op.get("source"))
    ood = _mapping("ood", m.get("ood"))
    _finite("ood.clip", ood.get("clip"), 0.0, 1e12, lo_open=True)
    _finite("ood.alpha", ood.get("alpha"), 0.0, 1.0, lo_open=True)
    for part in ("centre", "scale"):
        block = _mapping(f"ood.{part}", ood.get(part))
        for c in COMPONENTS:
            _finite(f"ood.{part}.{c}", block.get(c), 0.0 if part == "scale" else -1e12, 1e12, lo_open=part == "scale")
    _finite("ood.threshold", ood.get("threshold"), -1e12, 1e12)
    n_val = _integer("ood.n_val", ood.get("n_val"), 1, 1 << 40)
    _integer("ood.n_val_flagged", ood.get("n_val_flagged"), 0, n_val)
    gate = _mapping("gate", m.get("gate"))
    _finite("gate.threshold", gate.get("threshold"), 0.0, 1e12, lo_open=True)
    _mapping("data", m.get("data"))
    _mapping("report", m.get("report", {}))
    files = m.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        fail("files", "must be a list of file names", files)


def check_array(key, arr, shape, kind="f"):
    """An array of ``shape`` (None: any size on that axis), finite floats (kind f) or uint8 (kind u)."""
    if arr.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, arr.shape)):
        fail(key, f"must have shape {tuple('any' if s is None else s for s in shape)}", arr.shape)
    if kind == "u" and arr.dtype != np.uint8:
        fail(key, "must be uint8", str(arr.dtype))
    if kind == "f":
        if arr.dtype.kind not in "fiu":
            fail(key, "must hold numbers", str(arr.dtype))
        if not np.all(np.isfinite(arr)):
            fail(key, "must be finite (holds NaN or infinity)", show=False)
    return arr
