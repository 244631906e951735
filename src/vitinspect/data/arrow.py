"""The on-disk layout of the parts and NSOARTC data sets (Arrow tables via ``datasets``).

A few Arrow files per split instead of thousands of PNGs: DVC hashes every
file of a directory output, and decoding arrays once beats decoding images per step.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import hash_file

SPLITS = ("train", "val", "test")


def _record_features(classes, size):
    import datasets

    return {
        "id": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(classes)),
        "defect_terminal": datasets.Value("int32"),
        "tilt": datasets.Sequence(datasets.Value("float32"), length=2),
        "retraction": datasets.Value("float32"),
        "bbox": datasets.Sequence(datasets.Value("int32"), length=4),
        "mask": datasets.Array2D(shape=(size, size), dtype="uint8"),
    }


def parts_features(classes, views, size):
    """Features of the ``prepare`` output: the record plus every view, (V, S, S) uint8."""
    import datasets

    f = _record_features(classes, size)
    f["views"] = datasets.Array3D(shape=(len(views), size, size), dtype="uint8")
    return datasets.Features(f)


def nsoartc_features(classes, size):
    """Features of the ``nsoartc`` output: the record, the raw centre view and the composite."""
    import datasets

    f = _record_features(classes, size)
    f["raw"] = datasets.Array2D(shape=(size, size), dtype="uint8")
    f["nsoartc"] = datasets.Array3D(shape=(size, size, 3), dtype="uint8")
    return datasets.Features(f)


def to_dataset(columns: dict, features, label_names) -> "datasets.Dataset":
    """Columns of n rows (label as class names or indices) -> one Dataset with ``features``."""
    import datasets

    label_index = {c: i for i, c in enumerate(label_names)}
    cols = {}
    for key in features:
        values = columns[key]
        if key == "label":
            values = [label_index[v] if isinstance(v, str) else int(v) for v in values]
        cols[key] = values
    return datasets.Dataset.from_dict(cols, features=features)


def to_dataset_dict(columns: dict, features, label_names) -> "datasets.DatasetDict":
    """Columns of N rows (with a ``split`` column of names) -> a DatasetDict by split."""
    import datasets

    split = np.asarray(columns["split"])
    label_index = {c: i for i, c in enumerate(label_names)}
    out = {}
    for name in SPLITS:
        idx = np.flatnonzero(split == name)
        cols = {}
        for key in features:
            values = columns[key]
            if key == "label":
                values = [label_index[v] if isinstance(v, str) else int(v) for v in values]
            cols[key] = [values[i] for i in idx] if isinstance(values, list) else values[idx]
        out[name] = datasets.Dataset.from_dict(cols, features=features)
    return datasets.DatasetDict(out)


# ------------------------------------------------------------------ chunks: bounded memory, every core

def chunk_size(image_size: int) -> int:
    """Parts per chunk: 256 at 64 px, fewer for larger images (the float64 RT intermediates of a chunk stay
    near 100 MiB), never fewer than 4. Depends on the image size only, so never on how many processes run."""
    return max(4, min(256, 256 * 64 * 64 // (image_size * image_size)))


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(n) in order, each at most ``size`` long."""
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def imap_ordered(fn, jobs, num_proc: int):
    """``fn(job)`` for every job in ``num_proc`` processes (fork), yielded in the order of ``jobs`` as they
    finish, so a caller that folds them (a running sum) never holds them all.

    ``fn`` and each job must pickle (a module-level function, a functools.partial of one).
    """
    jobs = list(jobs)
    if num_proc <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(num_proc, len(jobs)), mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(fn, jobs)


def map_ordered(fn, jobs, num_proc: int) -> list:
    """``[fn(job) for job in jobs]`` in ``num_proc`` processes; see :func:`imap_ordered`."""
    return list(imap_ordered(fn, jobs, num_proc))


def run_chunks(jobs, num_proc: int, splits: dict) -> tuple[list, dict]:
    """``map_ordered(run_job, jobs, num_proc)`` for chunk jobs that write files, and the fingerprint of each
    split (``splits``: name -> its chunk files in order) that :func:`from_chunks` records: a hash of its
    chunks' bytes. The main process hashes each file as its job ends, while the workers make the next
    chunks, instead of in a pass of its own afterwards. Returns (what the jobs returned, {split: fingerprint})."""
    import hashlib

    split_of = {str(path): name for name, paths in splits.items() for path in paths}
    digests = {name: hashlib.blake2b(digest_size=8) for name in splits}
    extras = []
    for job, extra in zip(jobs, imap_ordered(run_job, jobs, num_proc)):
        extras.append(extra)
        path = job[2][0] if job[2] is not None else None
        if str(path) in split_of:
            hash_file(digests[split_of[str(path)]], path)
    return extras, {name: d.hexdigest() for name, d in digests.items()}


def write_chunk(columns: dict, features, label_names, path) -> int:
    """Write one chunk of rows as an Arrow file (the stream format ``datasets`` memory-maps); its rows."""
    from datasets.arrow_writer import ArrowWriter

    table = to_dataset(columns, features, label_names).data.table
    writer = ArrowWriter(features=features, path=str(path))
    try:
        writer.write_table(table)
        writer.finalize()
    finally:
        writer.close()
    return table.num_rows


@dataclass(frozen=True)
class Rows:
    """Rows [start, stop) of one split of a saved dataset, read where a job runs (not pickled as pixels)."""

    path: str
    split: str
    start: int
    stop: int
    names: tuple


@functools.lru_cache(maxsize=4)
def _split(path: str, split: str, identity: tuple):
    import datasets

    return datasets.load_from_disk(path)[split]


def read_rows(rows: Rows) -> dict[str, np.ndarray]:
    # A worker opens each split once for all its chunks. The key is the folder itself (absolute path, inode,
    # mtime), not the name it was given: a relative name, or a folder replaced since (a rerun), is another dataset.
    path = os.path.abspath(rows.path)
    st = os.stat(path)
    return columns(_split(path, rows.split, (st.st_ino, st.st_mtime_ns)), rows.names, rows=slice(rows.start, rows.stop))


def run_job(job):
    """One chunk job ``(fn, args, out)``: ``fn(*args)`` with every :class:`Rows` argument read first;
    ``fn`` returns columns, or (columns, extra). With ``out = (path, features, label_names)`` the columns
    are written there (:func:`write_chunk`) and only ``extra`` comes back; with ``out = None``, the result."""
    fn, args, out = job
    result = fn(*(read_rows(a) if isinstance(a, Rows) else a for a in args))
    if out is None:
        return result
    cols, extra = result if isinstance(result, tuple) else (result, None)
    write_chunk(cols, out[1], out[2], out[0])
    return extra


def from_chunks(paths, features, fingerprint: str | None = None) -> "datasets.Dataset":
    """One split from its chunk files, in order, memory-mapped (nothing is read into RAM).

    Its fingerprint (saved in ``state.json``) is a hash of the chunks' bytes (``fingerprint``, as
    :func:`run_chunks` returns it, or hashed here), so the same rows give the same saved bytes however many
    processes wrote them. Against one in-memory table (Dataset.from_dict) the
    saved rows are equal and the bytes are too for splits of up to 1,000 rows (one record batch); a longer
    split differs in the 48 padding bytes after the ``id`` strings of each full record batch: pyarrow pads a
    sliced string buffer with the bytes that follow it (the next ids, in one big array), and a batch joined
    from chunks has none.
    """
    import hashlib

    import datasets

    if not paths:
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    if fingerprint is None:
        digest = hashlib.blake2b(digest_size=8)
        for path in paths:
            hash_file(digest, path)
        fingerprint = digest.hexdigest()
    from datasets.table import MemoryMappedTable, concat_tables

    # One Dataset over the chunks' mapped tables (5x quicker than concatenating a Dataset per chunk; the same
    # info and no format columns in state.json, as Dataset.from_dict leaves them).
    ds = datasets.Dataset(concat_tables([MemoryMappedTable.from_file(str(p)) for p in paths]),
                          info=datasets.DatasetInfo(features=features))
    ds._fingerprint = fingerprint
    return ds


def _where(ds) -> str:
    """The split's directory, for messages."""
    files = getattr(ds, "cache_files", None) or []
    return str(Path(files[0]["filename"]).parent) if files else "dataset"


def columns(ds, names, rows: slice = slice(None)) -> dict[str, np.ndarray]:
    """Decode the named columns of one split (or its ``rows``) into numpy arrays, once."""
    missing = [n for n in names if n not in ds.column_names]
    if missing:
        raise VitinspectError(f"{_where(ds)}: lacks column {missing[0]!r} (has {ds.column_names}); rerun the stage that writes it (dvc repro -f)")
    import datasets

    # Image columns straight from their Arrow buffers as uint8 (MappedImages); the rest in one batch read
    # ([rows]), not row by row (np.asarray of a column iterates its rows: ~25x slower).
    images = [n for n in names if isinstance(ds.features[n], (datasets.Array2D, datasets.Array3D))]
    if getattr(ds, "_indices", None) is not None:
        images = []
    rest = [n for n in names if n not in images]
    batch = ds.with_format("numpy", columns=rest)[rows] if rest else {}
    out = {}
    for n in names:
        if n in images:
            out[n] = MappedImages(ds, n)[rows]
            continue
        a = np.asarray(batch[n])
        feature = ds.features[n]
        if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
            a = a.astype(feature.dtype, copy=False)
        out[n] = a
    return out


class MappedImages:
    """A fixed-shape image column (Array2D/Array3D) of a memory-mapped split as numpy views of its Arrow
    buffers: no copy and no per-row Python; ``images[idx]`` gathers rows (uint8) for one batch.

    Pages are read from the file as rows are touched: page cache, which the kernel reclaims when memory is
    short (docs/scale.md: the stages pass under memory caps near their anonymous peaks).
    """

    def __init__(self, ds, name: str):
        import datasets

        feature = ds.features.get(name)
        if not isinstance(feature, (datasets.Array2D, datasets.Array3D)) or getattr(ds, "_indices", None) is not None:
            raise VitinspectError(f"{_where(ds)}: column {name!r} is not a stored image column; rerun the stage that writes it (dvc repro -f)")
        self.row_shape, self.dtype = tuple(feature.shape), np.dtype(feature.dtype)
        self.chunks, starts = [], [0]
        for chunk in ds.data.table.column(name).chunks:
            flat = getattr(chunk, "storage", chunk)
            if flat.null_count:
                raise VitinspectError(f"{_where(ds)}: column {name!r} has missing images; rerun the stage that writes it (dvc repro -f)")
            for _ in self.row_shape:
                flat = flat.flatten()
            a = flat.to_numpy(zero_copy_only=True)
            if a.dtype != self.dtype or a.size != len(chunk) * int(np.prod(self.row_shape)):
                raise VitinspectError(f"{_where(ds)}: column {name!r} is not {self.dtype} of shape {self.row_shape} in every row; "
                                      "rerun the stage that writes it (dvc repro -f)")
            self.chunks.append(a.reshape((len(chunk),) + self.row_shape))
            starts.append(starts[-1] + len(chunk))
        self.starts = np.asarray(starts)
        self.shape = (len(self),) + self.row_shape

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, idx) -> np.ndarray:
        """Rows ``idx`` (an int, a slice, a bool mask or an index array) as a new array."""
        if isinstance(idx, (int, np.integer)):
            return self[[idx]][0]
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64, copy=False)
        out = np.empty((len(idx),) + self.row_shape, dtype=self.dtype)
        which = np.searchsorted(self.starts, idx, side="right") - 1
        for c in np.unique(which):
            rows = which == c
            out[rows] = self.chunks[c][idx[rows] - self.starts[c]]
        return out

    def blocks(self):
        """The column's Arrow chunks as arrays, in order (to hash or scan it without a copy)."""
        yield from self.chunks


def label_names(ds) -> list[str]:
    label = ds.features.get("label")
    if label is None or not hasattr(label, "names"):
        raise VitinspectError(f"{_where(ds)}: lacks column 'label' (class names); rerun the stage that writes it (dvc repro -f)")
    return list(label.names)


def good_index(where, classes: list[str], good: str) -> int:
    """Index of the good class ``good`` (params' data.good_class) among a data set's ``classes``: the one
    check every stage makes before it reads the classes, with one message naming ``where``."""
    if good not in classes:
        raise VitinspectError(f"{where}: holds classes {classes}, without data.good_class {good!r}; run dvc repro")
    return classes.index(good)


def labelled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``fraction`` of the rows, per class (rounded up, at least one of each class).

    ``fraction`` 1 keeps every row. The same seed gives the same subset; a smaller fraction's
    subset is not nested in a larger one's.
    """
    labels = np.asarray(labels)
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 17])
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.append(rng.choice(idx, size=max(1, int(np.ceil(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(keep))


def lot_features(classes, size, n_views):
    """Features of the ``lot`` output: id, label, the raw centre view, the NSOARTC composite and every view (in
    data.views' order: the peers judge the lot from them)."""
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(classes)),
        "raw": datasets.Array2D(shape=(size, size), dtype="uint8"),
        "nsoartc": datasets.Array3D(shape=(size, size, 3), dtype="uint8"),
        "views": datasets.Array3D(shape=(n_views, size, size), dtype="uint8"),
    })
