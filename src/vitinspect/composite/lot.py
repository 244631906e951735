"""The production-like lot, rendered (or read from a folder of parts) and composed a chunk of parts at a time
(the ``lot`` stage)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vitinspect.composite.nsoartc import UnitSpace, composite
from vitinspect.core.errors import VitinspectError
from vitinspect.data import arrow
from vitinspect.data.geometry import plan
from vitinspect.data.synthetic import render_parts
from vitinspect.data.user_parts import read_parts, scan

LOT = "lot"  # the one split of data/lot
NO_RENDERED_LOT = ("no lot: lot.source render draws our renderer's parts, which a model of data.source folders never saw; "
                   "give lot.source: folders and lot.folders.path")


def lot_chunk(data_params, indices, labels, space: UnitSpace, window: int, gain: float, eps: float) -> dict:
    """Columns of the lot's parts ``indices`` (of ``labels``, the lot's plan): ``id`` (``lot-<n>``), ``label``
    (class index), ``raw`` (the centre view), ``nsoartc`` (the composite against the unit space) and ``views``
    (every view, data.views' order), uint8."""
    cols = render_parts(data_params, indices, labels)
    views = list(data_params.views)
    return {
        "id": [f"lot-{i[5:]}" for i in cols["id"]],
        "label": [list(data_params.classes).index(c) for c in cols["label"]],
        "raw": cols["views"][:, views.index("center")],
        "nsoartc": composite(cols["views"], views, space, window, gain, eps),
        "views": cols["views"],
    }


def counts(labels, classes) -> dict[str, int]:
    labels = np.asarray(labels)
    return {c: int((labels == c).sum()) for c in classes}


def folder_lot_chunk(parts, classes, size: int, space: UnitSpace, window: int, gain: float, eps: float,
                     on_bad_part: str, view_names: list[str]) -> tuple[dict, list]:
    """The lot columns of a chunk of a folder lot (vitinspect.data.user_parts.FolderPart), label -1 where the lot has
    no labels, its views in ``view_names``' order (data.views), and the parts skipped as unreadable."""
    cols, skipped = read_parts(parts, size, on_bad_part)
    views = [f.stem for f in parts[0].views] if parts else []
    n = len(cols["id"])
    order = [views.index(v) for v in view_names] if n else []
    return {
        "id": cols["id"],
        "label": [-1 if c is None else list(classes).index(c) for c in cols["label"]],
        "raw": cols["views"][:, views.index("center")] if n else np.zeros((0, size, size), dtype=np.uint8),
        "nsoartc": composite(cols["views"], views, space, window, gain, eps) if n else np.zeros((0, size, size, 3), dtype=np.uint8),
        "views": cols["views"][:, order] if n else np.zeros((0, len(view_names), size, size), dtype=np.uint8),
    }, skipped


@dataclasses.dataclass(frozen=True)
class Lot:
    """The lot as the stage saves it: ``dataset`` (a DatasetDict of the one split ``lot``), ``summary`` (saved
    with it; evaluate writes it to reports/lot.json), ``meta`` (more keys for the saved info) and ``said``
    (the log line's figures)."""

    dataset: object
    summary: dict
    meta: dict
    said: str


def make_lot(lot, data, nsoartc, space: UnitSpace, scratch, num_proc: int) -> Lot:
    """The lot of params' ``lot`` section, with the rendering settings of ``data`` under the lot's own seed, size
    and passed share, composited against ``space`` with ``nsoartc``'s window, gain and eps (sections, or
    anything with their fields).

    Made in chunks of parts (their size depends on the image size only, so the bytes never depend on
    ``num_proc``) by ``num_proc`` processes, written as Arrow files in the folder ``scratch`` as they go.
    """
    import datasets  # 1.4 s to import: only where a data set is made (a bad params.yaml fails before it)

    data = dataclasses.replace(data, seed=lot.seed, n_images=lot.n_parts, passed_ratio=lot.passed_ratio)
    features = arrow.lot_features(data.classes, data.image_size, len(data.views))
    summary = {"source": lot.source}
    if lot.source == "folders":
        found = scan(lot.folders.path, list(data.views), list(data.classes), on_bad_part=data.folders.on_bad_part, labelled=False)
        parts = found.parts
        labels = np.array([q.label for q in parts], dtype=object)
        ranges = arrow.chunk_ranges(len(parts), arrow.chunk_size(data.image_size))
        job_args = [(folder_lot_chunk, (parts[a:b], list(data.classes), data.image_size, space, nsoartc.window, nsoartc.gain,
                                        nsoartc.eps, data.folders.on_bad_part, list(data.views))) for a, b in ranges]
        summary.update({"path": lot.folders.path, "layout": found.layout, "scored": found.layout != "unlabelled"})
    elif data.source == "folders":  # our renderer cannot draw the user's parts: no lot, said so
        labels, job_args = np.array([], dtype=object), []
        summary.update({"scored": False, "note": NO_RENDERED_LOT})
    else:
        labels, _ = plan(data)
        ranges = arrow.chunk_ranges(len(labels), arrow.chunk_size(data.image_size))
        job_args = [(lot_chunk, (data, np.arange(a, b), labels, space, nsoartc.window, nsoartc.gain, nsoartc.eps)) for a, b in ranges]
    jobs = [(fn, fargs, (Path(scratch) / f"{LOT}-{k:05d}.arrow", features, list(data.classes)))
            for k, (fn, fargs) in enumerate(job_args)]
    extras, prints = arrow.run_chunks(jobs, num_proc, {LOT: [out[0] for _, _, out in jobs]})
    ds = arrow.from_chunks([out[0] for _, _, out in jobs], features, prints[LOT])  # no jobs: an empty split
    skipped = (found.skipped if lot.source == "folders" else []) + [x for e in extras if e for x in e]
    if lot.source == "render" and data.source == "render":
        record = {"n_parts": int(len(labels)), "seed": lot.seed, "passed_ratio": lot.passed_ratio,
                  "counts": counts(labels, data.classes)}
        said = f"{len(labels)} parts, {int((labels == 'passed').sum())} passed, seed {lot.seed}, {num_proc} processes"
        return Lot(datasets.DatasetDict({LOT: ds}), record, {}, said)
    kept = [c for c in labels if c is not None]
    record = {**summary, "n_parts": len(ds), "counts": counts(kept, data.classes) if summary["scored"] else None,
              "skipped": skipped}
    said = (f"{len(ds)} parts ({summary.get('layout', 'none')}{', not scored' if not summary['scored'] else ''}"
            f"{f', {len(skipped)} skipped' if skipped else ''})")
    return Lot(datasets.DatasetDict({LOT: ds}), record, {"note": summary.get("note", "")}, said)
