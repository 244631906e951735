"""How much work a params set makes: parts per class and split, the processes it runs, the memory it needs.

:mod:`vitinspect.config.params` checks these against the machine when it validates (a split left without a class,
more memory than there is); the stages use the same numbers (``resolve_workers``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vitinspect.core import runtime
from vitinspect.data import layout

if TYPE_CHECKING:
    from vitinspect.config.sections import Data, Params


def resolve_workers(value, cores: int | None = None) -> int:
    """A ``num_proc`` value ('auto' or an int) -> how many processes to use: 'auto' is every core this process
    may run on (vitinspect.core.runtime.cores; the output bytes never depend on it). Torch threads are
    counted by vitinspect.core.runtime.set_threads, which shares those cores among DVC queue workers."""
    if value != "auto":
        return int(value)
    return max(1, runtime.cores() if cores is None else cores)


def split_counts(d: Data) -> dict[str, dict[str, int]]:
    """Parts per split and class that ``prepare`` makes: each class cut at round(cumulative fraction x n)."""
    out = {"train": {}, "val": {}, "test": {}}
    for c, n in layout.class_counts(d.n_images, d.classes, d.passed_ratio).items():
        cut_train = int(round(d.split.train * n))
        cut_val = int(round((d.split.train + d.split.val) * n))
        out["train"][c], out["val"][c], out["test"][c] = cut_train, cut_val - cut_train, n - cut_val
    return out


def memory_estimate(p: Params) -> int:
    """Rough peak bytes of the largest stage: a chunk of data arrays per process (uint8 views, float RT channels), training
    state (weights, gradients, AdamW moments) and attention matrices of one batch. An order of magnitude,
    to refuse at once what numpy or torch would fail to allocate after minutes."""
    d, m = p.data, p.model
    # prepare and nsoartc hold one chunk of parts per process (dataset.chunk_size: 256 at 64 px, fewer
    # for larger images), train and evaluate one batch: the data set itself stays in the Arrow files.
    chunk = max(4, min(256, 256 * 64 * 64 // d.image_size ** 2))
    pixels = min(d.n_images, chunk) * resolve_workers(d.num_proc) * d.image_size ** 2
    data = pixels * (len(d.views) * 5 + 40) + d.n_images * 200  # + per-part records (class, split, id, label) in Python
    if m.source in ("scratch", "pretrain"):
        weights = m.layers * (4 * m.hidden_size ** 2 + 2 * m.hidden_size * m.mlp_size) + 3 * m.patch_size ** 2 * m.hidden_size
        tokens = (d.image_size // m.patch_size) ** 2 + 1
        batch = max(p.train.batch_size, p.evaluate.batch_size)
        activations = 3 * batch * m.layers * (m.heads * tokens ** 2 + tokens * (4 * m.hidden_size + m.mlp_size)) * 4
        return data + 16 * weights + activations
    return data


def available_memory() -> int:
    """Physical memory of this machine, bytes (a large constant where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 50
