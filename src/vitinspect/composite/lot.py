"""The production-like lot, rendered (or read from a folder of parts) and composed a chunk of parts at a time
(the ``lot`` stage)."""

from __future__ import annotations

import numpy as np

from vitinspect.composite.nsoartc import UnitSpace, composite
from vitinspect.data.synthetic import render_parts

NO_RENDERED_LOT = ("no lot: lot.source render draws our renderer's parts, which a model of data.source folders never saw; "
                   "give lot.source: folders and lot.folders.path")


def lot_chunk(data_params, indices, labels, space: UnitSpace, window: int, gain: float, eps: float) -> dict:
    """Columns of the lot's parts ``indices`` (of ``labels``, the lot's plan): ``id`` (``lot-<n>``), ``label``
    (class index), ``raw`` (the centre view) and ``nsoartc`` (the composite against the unit space), uint8."""
    cols = render_parts(data_params, indices, labels)
    views = list(data_params.views)
    return {
        "id": [f"lot-{i[5:]}" for i in cols["id"]],
        "label": [list(data_params.classes).index(c) for c in cols["label"]],
        "raw": cols["views"][:, views.index("center")],
        "nsoartc": composite(cols["views"], views, space, window, gain, eps),
    }


def counts(labels, classes) -> dict[str, int]:
    labels = np.asarray(labels)
    return {c: int((labels == c).sum()) for c in classes}


def folder_lot_chunk(parts, classes, size: int, space: UnitSpace, window: int, gain: float, eps: float,
                     on_bad_part: str) -> tuple[dict, list]:
    """The lot columns of a chunk of a folder lot (vitinspect.data.user_parts.FolderPart), label -1 where the lot has
    no labels, and the parts skipped as unreadable."""
    from vitinspect.data.user_parts import read_parts

    cols, skipped = read_parts(parts, size, on_bad_part)
    views = [f.stem for f in parts[0].views] if parts else []
    n = len(cols["id"])
    return {
        "id": cols["id"],
        "label": [-1 if c is None else list(classes).index(c) for c in cols["label"]],
        "raw": cols["views"][:, views.index("center")] if n else np.zeros((0, size, size), dtype=np.uint8),
        "nsoartc": composite(cols["views"], views, space, window, gain, eps) if n else np.zeros((0, size, size, 3), dtype=np.uint8),
    }, skipped
