"""The production-like lot, rendered and composed a chunk of parts at a time (the ``lot`` stage)."""

from __future__ import annotations

import numpy as np

from vitinspect.nsoartc import UnitSpace, composite
from vitinspect.render import render_parts


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
