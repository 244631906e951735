"""Frozen dataclasses as a schema for a YAML file: a field that carries its range check, the checks, and
:func:`build`, which converts a parsed mapping into the dataclass or raises :class:`ParamsError` with one
line naming the key (``params.yaml: data.views[1] must be ...``). Nothing here knows params.yaml's keys.

A check takes the converted value and returns an error fragment (``must be positive, got -5``), or None
when fine. Every value in a message goes through :func:`short`, so no message is unbounded.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import field

from vitinspect.core.errors import ParamsError
from vitinspect.core.text import short



# --------------------------------------------------------------------------- checks


def positive(v):
    return None if v > 0 else f"must be positive, got {short(v)}"


def non_negative(v):
    return None if v >= 0 else f"must be >= 0, got {short(v)}"


def open_unit(v):
    return None if 0 < v < 1 else f"must be in (0, 1), got {short(v)}"


def one_of(choices):
    def check(v):
        return None if v in choices else f"must be one of {list(choices)}, got {short(v)}"

    return check


def each_one_of(choices):
    def check(values):
        bad = [v for v in values if v not in choices]
        if bad:
            return f"has unknown value {short(bad[0])}; allowed: {list(choices)}"
        if len(set(values)) != len(values):
            return f"has duplicates: {short(list(values))}"
        if not values:
            return "must not be empty"
        return None

    return check


def ordered_range(lo: float, hi: float):
    def check(v):
        a, b = v
        if not (lo <= a <= b <= hi):
            return f"must be [low, high] with {lo} <= low <= high <= {hi}, got {short(list(v))}"
        return None

    return check


def auto_or_positive_int(v):
    if v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 and float(v).is_integer()):
        return None
    return f"must be 'auto' or an integer >= 1, got {short(v)}"


def count(hi: int, why: str = ""):
    """A positive count of at most ``hi``."""
    def check(v):
        if v <= 0:
            return f"must be positive, got {short(v)}"
        return None if v <= hi else f"must be at most {hi:,}{f' ({why})' if why else ''}, got {short(v)}"

    return check


def bounded(lo: float, hi: float):
    """A number in [lo, hi]."""
    def check(v):
        return None if lo <= v <= hi else f"must be in [{lo:g}, {hi:g}], got {short(v)}"

    return check


def positive_at_most(hi: float):
    def check(v):
        return None if 0 < v <= hi else f"must be in (0, {hi:g}], got {short(v)}"

    return check


def odd_at_least_3(v):
    return None if v >= 3 and v % 2 == 1 else f"must be an odd integer >= 3, got {short(v)}"


def positive_list(values):
    if not values:
        return "must not be empty"
    bad = [v for v in values if not v > 0]
    return f"must hold positive numbers, got {bad[0]!r}" if bad else None


def checked(default, check=None):
    """A dataclass field with a default and an optional range check."""
    factory = (lambda: list(default)) if isinstance(default, list) else None
    meta = {"check": check} if check else {}
    if factory:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- building


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, key: str, source: str, required: frozenset = frozenset()):
    """Convert a YAML value to the annotated type ``tp`` or raise ParamsError."""

    def fail(msg):
        raise ParamsError(f"{source}: {key} {msg}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"must be a mapping, got {short(value)}")
        return build(tp, value, key, source, required)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail(f"must be a list, got {short(value)}")
        args = typing.get_args(tp)
        if origin is tuple:
            if len(value) != len(args):
                fail(f"must be a list of {len(args)} values, got {short(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        return [_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is object:  # a value whose check decides (e.g. evaluate.threshold: auto or a number)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if tp is bool:
        if not isinstance(value, bool):
            fail(f"must be true or false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"must be an integer, got {short(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
            try:
                value = float(value)
            except ValueError:
                fail(f"must be a number, got {short(value)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(f"must be a finite number, got {short(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            fail(f"must be a non-empty string, got {short(value)}")
        return value
    raise TypeError(f"unsupported schema type {_type_name(tp)} for {key}")  # pragma: no cover


def build(cls, data: dict, prefix: str, source: str, required: frozenset = frozenset()):
    """The dataclass ``cls`` from the mapping ``data`` (its keys under ``prefix``): every key known, each value
    converted to its annotated type and checked; an omitted key takes its default unless it is in ``required``
    (dotted keys; a mapping holding a required key is required too). ParamsError for the first that is not."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in data if k not in names), key=str)
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) and len(unknown[0]) <= 40 else short(unknown[0])
        where = f"{prefix}.{name}" if prefix else name
        raise ParamsError(f"{source}: unknown key {where} (allowed: {sorted(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in data:
            if key in required or any(r.startswith(f"{key}.") for r in required):
                raise ParamsError(f"{source}: missing key {key} (dvc.yaml tracks it: it must be written out)")
            kwargs[f.name] = f.default_factory() if f.default is dataclasses.MISSING else f.default
            continue
        value = _convert(data[f.name], hints[f.name], key, source, required)
        check = f.metadata.get("check")
        if check is not None:
            msg = check(value)
            if msg:
                raise ParamsError(f"{source}: {key} {msg}")
        kwargs[f.name] = value
    return cls(**kwargs)
