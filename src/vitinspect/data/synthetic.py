"""Parts drawn by a renderer (``data.source: render``): the 2-D one or Blender, chosen by ``data.renderer``.

Both draw the same parts for a seed (vitinspect.data.geometry); only how a part's pixels are made differs.
"""

from __future__ import annotations

import numpy as np

from vitinspect.data.blender_scene import render_blender
from vitinspect.data.geometry import plan
from vitinspect.data.render2d import render_2d


def render_parts(data_params, indices, labels) -> dict[str, np.ndarray | list]:
    """Render the parts ``indices`` (of :func:`vitinspect.data.geometry.plan`'s ``labels``): any subset, in any
    order or process, gives the same bytes per part (each part draws from its own generator, seeded by
    (seed, 1, index)).

    Returns columns ``id``, ``label`` (class names), ``defect_terminal``, ``tilt``, ``retraction``,
    ``bbox``, ``mask`` (n, S, S) uint8 and ``views`` (n, V, S, S) uint8, from the 2-D renderer or, with
    ``data.renderer: blender``, from Cycles (the same columns and draws).
    """
    render = render_blender if data_params.renderer == "blender" else render_2d
    return render(data_params, indices, labels)


def generate(data_params) -> dict[str, np.ndarray | list]:
    """Render the whole data set described by ``params.data``, in memory (the ``prepare`` stage renders
    it in chunks with :func:`plan` and :func:`render_parts` instead).

    Returns columns: ``id`` (N,), ``split`` (N,), ``label`` (N,) class names,
    ``defect_terminal`` (N,), ``tilt`` (N, 2) pitches, ``retraction`` (N,),
    ``mask`` (N, S, S) uint8, ``bbox`` (N, 4), ``views`` (N, V, S, S) uint8.
    """
    labels, splits = plan(data_params)
    cols = render_parts(data_params, range(len(labels)), labels)
    return {"id": cols.pop("id"), "split": list(splits), **cols}
