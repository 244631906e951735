"""Values in messages: bounded, whatever their size (never format a huge value into an error)."""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 4, 40, 40


def short(value) -> str:
    """repr of a value for a message, bounded whatever its size (never format a huge value)."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
