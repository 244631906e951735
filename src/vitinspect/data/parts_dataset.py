"""The parts data set (the ``prepare`` stage): every part's class and split (:func:`plan_parts`), then the
parts made a chunk at a time, rendered (``data.source: render``) or decoded from the user's image folders
(``data.source: folders``, :mod:`vitinspect.data.user_parts`), and written as Arrow files (:func:`make_parts`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitinspect.data import arrow, geometry, user_parts
from vitinspect.data.synthetic import render_parts


@dataclass(frozen=True)
class PartsPlan:
    """``labels`` and ``splits``: (N,) object arrays of every part's class and split name; ``data``: params'
    data section; ``scanned``: what :func:`vitinspect.data.user_parts.plan` found (folders), else None."""

    data: object
    labels: np.ndarray
    splits: np.ndarray
    scanned: user_parts.Scan | None = None

    def job(self, idx) -> tuple:
        """(fn, args) that make the parts ``idx``: ``fn(*args)`` gives their columns (views (n, V, S, S) uint8,
        ...), and for folders also the parts skipped as unreadable."""
        p = self.data
        if self.scanned is not None:
            return user_parts.read_parts, ([self.scanned.parts[i] for i in idx], p.image_size, p.folders.on_bad_part)
        return render_parts, (p, idx, self.labels)

    def columns(self, idx) -> dict:
        """The columns of the parts ``idx``, made here."""
        fn, args = self.job(idx)
        return fn(*args)[0] if self.scanned is not None else fn(*args)

    def firsts(self) -> list[int]:
        """Index of each class's first part, in the order of data.classes (classes without parts left out)."""
        return [int(np.flatnonzero(self.labels == c)[0]) for c in self.data.classes if (self.labels == c).any()]


def plan_parts(data) -> PartsPlan:
    """Every part's class and split for params' data section ``data``."""
    if data.source == "folders":
        scanned = user_parts.plan(data)
        parts = scanned.parts
        labels = np.array([q.label for q in parts], dtype=object)
        splits = np.array([q.split for q in parts], dtype=object)
        return PartsPlan(data, labels, splits, scanned)
    labels, splits = geometry.plan(data)
    return PartsPlan(data, labels, splits)


def make_parts(plan: PartsPlan, scratch, num_proc: int) -> tuple["datasets.DatasetDict", dict]:
    """The data set of ``plan``'s parts and the extra keys its saved info takes (folders: source, layout, good
    class, masks, skipped parts; none when rendered).

    Each split in chunks of parts, made by ``num_proc`` processes and written as Arrow files in the folder
    ``scratch`` as they go; the chunks depend on the image size only, so the saved bytes never depend on
    ``num_proc``.
    """
    import datasets  # 1.4 s to import: only where a data set is made (a bad params.yaml fails before it)

    p = plan.data
    features = arrow.parts_features(p.classes, p.views, p.image_size)
    jobs, paths = [], {s: [] for s in arrow.SPLITS}
    for s in arrow.SPLITS:
        idx = np.flatnonzero(plan.splits == s)
        for a, b in arrow.chunk_ranges(len(idx), arrow.chunk_size(p.image_size)):
            paths[s].append(Path(scratch) / f"{s}-{len(paths[s]):05d}.arrow")
            jobs.append((*plan.job(idx[a:b]), (paths[s][-1], features, p.classes)))
    extras, prints = arrow.run_chunks(jobs, num_proc, paths)
    ds = datasets.DatasetDict({s: arrow.from_chunks(paths[s], features, prints[s]) for s in arrow.SPLITS})
    if plan.scanned is None:
        return ds, {}
    skipped = plan.scanned.skipped + [x for e in extras if e for x in e]
    return ds, {"source": "folders", "layout": plan.scanned.layout, "good_class": p.good_class,
                "masks": int(sum(q.mask is not None for q in plan.scanned.parts)), "skipped": skipped}
