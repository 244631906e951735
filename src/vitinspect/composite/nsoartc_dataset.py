"""The NSOARTC data set from the parts data set, in two passes over its chunks (the nsoartc stage's algorithm).

Pass 1 fits the unit space on the passed training parts, folding each chunk's channels in as it comes;
pass 2 writes every split's composites chunk by chunk as Arrow files. Chunks run in worker processes
(:func:`vitinspect.data.arrow.imap_ordered`), each reading its own rows, so memory does not grow with
the data. Same bytes whatever the number of processes.
"""

from __future__ import annotations

import numpy as np

from vitinspect.composite.nsoartc import UnitSpace, UnitSpaceSums, composite_chunk, passed_channels
from vitinspect.core.errors import VitinspectError
from vitinspect.data.arrow import (SPLITS, Rows, chunk_ranges, chunk_size, columns, from_chunks, imap_ordered,
                                   nsoartc_features, read_rows, run_chunks, run_job)

RECORD = ("id", "label", "defect_terminal", "tilt", "retraction", "bbox", "mask")  # passed through to the output


def split_chunks(parts) -> dict[str, list[tuple[int, int]]]:
    """Row ranges [(start, stop), ...] per split of the parts DatasetDict, sized by its image size
    (:func:`vitinspect.data.arrow.chunk_size`)."""
    size = parts["train"].features["views"].shape[-1]
    return {s: chunk_ranges(len(parts[s]), chunk_size(size)) for s in SPLITS}


def fit_unit_space(parts_dir: str, chunks: dict, view_names: list[str], passed: int, good: str, nsoartc_params,
                   num_proc: int) -> UnitSpace:
    """Pass 1: the unit space (per-pixel mean and std, (3, H, W) float32) of the raw channels of the passed
    training parts (label ``passed``, class name ``good``), summed chunk by chunk in order.

    Raises a one-line VitinspectError when it holds fewer than ``nsoartc.min_unit_space`` parts.
    """
    p = nsoartc_params
    jobs = [(passed_channels, (Rows(parts_dir, "train", a, b, ("views", "label")), view_names, passed, p.window, p.eps), None)
            for a, b in chunks["train"]]
    sums = UnitSpaceSums()
    for channels in imap_ordered(run_job, jobs, num_proc):  # folded as they come: never all at once
        sums.add(channels)
    if sums.n < p.min_unit_space:
        raise VitinspectError(
            f"params.yaml: the unit space has {sums.n} good ({good!r}) training parts, fewer than "
            f"nsoartc.min_unit_space={p.min_unit_space}; raise data.passed_ratio or data.n_images (or bring more good parts)"
        )
    return sums.space().floored(p.std_floor)


def first_of_each_class(parts_dir: str, parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first part of each class (train, then val, then test) for the stage's figure: (class indices (k,)
    ascending, views (k, V, H, W) uint8, masks (k, H, W) bool)."""
    first = {}
    for s in SPLITS:
        labels = columns(parts[s], ["label"])["label"]
        for c in np.unique(labels):
            first.setdefault(int(c), (s, int(np.flatnonzero(labels == c)[0])))
    shown = sorted(first)
    rows = [read_rows(Rows(parts_dir, *first[c], first[c][1] + 1, ("views", "mask"))) for c in shown]
    return (np.array(shown, dtype=np.int64), np.concatenate([r["views"] for r in rows]),
            np.concatenate([r["mask"] for r in rows]).astype(bool))


def compose_splits(parts_dir: str, chunks: dict, view_names: list[str], space: UnitSpace, nsoartc_params,
                   classes: list[str], scratch, num_proc: int) -> tuple[dict, list[dict]]:
    """Pass 2: every split's NSOARTC records (:func:`vitinspect.composite.nsoartc.composite_chunk`), written
    chunk by chunk as Arrow files into the folder ``scratch``.

    Returns ({split: memory-mapped Dataset over its chunk files}, [each chunk's summary, in the order of
    ``chunks``' splits and ranges]) for :func:`nsoartc_report`.
    """
    p = nsoartc_params
    features = nsoartc_features(classes, space.mean.shape[-1])
    jobs, paths = [], {s: [] for s in SPLITS}
    for s in SPLITS:
        for a, b in chunks[s]:
            paths[s].append(scratch / f"{s}-{len(paths[s]):05d}.arrow")
            jobs.append((composite_chunk, (Rows(parts_dir, s, a, b, RECORD + ("views",)), view_names, space, p.window,
                                           p.gain, p.eps, len(classes)), (paths[s][-1], features, classes)))
    summaries, prints = run_chunks(jobs, num_proc, paths)
    return {s: from_chunks(paths[s], features, prints[s]) for s in SPLITS}, summaries


def nsoartc_report(summaries: list[dict], chunks: dict, classes: list[str], good: str, space: UnitSpace, meta: dict) -> dict:
    """metrics/nsoartc.json: parts per split and class, the defect contrast per defect class, the unit space's
    size, and (for the user's folders, ``meta`` from the parts data set) what was read and left out.

    The defect contrast is the mean composite |z| inside the defect masks over outside them, per defect class
    present; None where a class has no mask pixel (folders without mask.png): never a made-up figure.
    """
    split_of = [s for s in SPLITS for _ in chunks[s]]
    counts = {s: {c: int(sum(m["count"][i] for m, t in zip(summaries, split_of) if t == s))
                  for i, c in enumerate(classes)} for s in SPLITS}
    total = {k: sum(m[k] for m in summaries) for k in ("in", "n_in", "out", "n_out")}
    contrast = {
        c: round(float((total["in"][i] / total["n_in"][i]) / (total["out"][i] / total["n_out"][i])), 4)
        if total["n_in"][i] else None
        for i, c in enumerate(classes)
        if c != good and any(counts[s][c] for s in SPLITS)
    }
    report = {"counts": counts, "defect_contrast": contrast, "unit_space_size": space.n}
    if meta.get("source") == "folders":  # the user's parts: what was read and what was left out
        report["folders"] = {"layout": meta["layout"], "parts_with_mask": meta["masks"],
                             "skipped": len(meta["skipped"]), "skipped_parts": meta["skipped"]}
    return report
