"""Reading and writing stage outputs: atomic, and with one-line errors naming the file.

Every output is written to a temporary sibling and renamed into place, so a
killed stage leaves either the old output or none, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from vitinspect.core.errors import VitinspectError


# While a stage is inside all_or_nothing(), finished temporaries wait here and are renamed together at its end.
_pending: list | None = None


@contextlib.contextmanager
def all_or_nothing():
    """Group a stage's outputs: each is written to its temporary as usual, but none is renamed into
    place until every one is written; on an error (disk full, a read-only directory, a bad figure)
    all temporaries are removed and every old output stays as it was."""
    global _pending
    outer, _pending = _pending, []
    try:
        yield
        done, _pending = _pending, outer
        for tmp, target, path, is_dir in done:
            _commit(tmp, target, path, is_dir)
    except BaseException:
        for tmp, *_ in _pending or []:
            shutil.rmtree(tmp, ignore_errors=True)
        _pending = outer
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device"


def lstat_or_none(path: str | Path, what: str) -> os.stat_result | None:
    """``os.lstat(path)``, or None when nothing is there; any other failure is one line, ``<what> (<reason>)``."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VitinspectError(f"{what} ({exc.strerror})") from None


def check_replaceable(path: str | Path, is_dir: bool = False) -> None:
    """What an atomic write may replace at ``path``: nothing, or the kind of thing it writes itself (a regular
    file for a file output, a real folder for a folder output). Anything else (a folder where a file goes, a
    file where a folder goes, a symbolic link, a FIFO, a socket, a device) is refused with one line and left
    as it is: renaming over it would delete the user's folder or break their link."""
    st = lstat_or_none(path, f"{path}: cannot write")
    if st is None:
        return
    want = stat.S_ISDIR if is_dir else stat.S_ISREG
    if not want(st.st_mode):
        raise VitinspectError(f"{path}: is {_kind(st.st_mode)}, where {'a folder' if is_dir else 'a file'} is to be "
                              "written; left as it is (remove it or give another path)")


def _commit(tmp: Path, target: Path, path: Path, is_dir: bool = False) -> None:
    try:
        check_replaceable(path, is_dir)  # again: something may have appeared there while the output was written
        if is_dir and path.is_dir():
            os.replace(path, tmp / (path.name + ".old"))  # a directory cannot be replaced in one rename
        os.replace(target, path)
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stale(path: Path, suffix: str):
    """Temporaries beside ``path`` left by a killed run: folders named ``.<name>.<8 chars>.<suffix>`` as
    tempfile.mkdtemp makes them (never those of "<name>.png" beside "<name>", never a user's file)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}" + re.escape(f".{suffix}"))
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.{suffix}"):
        if pattern.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            yield stale


def _fresh_beside(path: Path, suffix: str) -> Path:
    """A new hidden folder ``.<name>.*.<suffix>`` beside ``path``, after removing those a killed run left."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale(path, suffix):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=f".{suffix}", dir=path.parent))
    except OSError as exc:
        raise VitinspectError(f"{path}: cannot write ({exc.strerror})") from None


@contextlib.contextmanager
def atomic_path(path: str | Path, *, is_dir: bool = False):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary is removed and ``path`` is left as it was. An OSError
    (disk full, read-only directory) becomes a one-line VitinspectError naming ``path``.

    Only the kind of thing written may be replaced (:func:`check_replaceable`: a regular file, or a folder
    with ``is_dir``), checked before the block runs and again at the rename; a folder, a link or a FIFO where a
    file goes is refused and left intact.
    """
    path = Path(path)
    check_replaceable(path, is_dir)
    tmp = _fresh_beside(path, "tmp")
    target = tmp / path.name
    try:
        if is_dir:
            target.mkdir()
        yield target
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise VitinspectError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if _pending is not None:
        _pending.append((tmp, target, path, is_dir))
    else:
        _commit(tmp, target, path, is_dir)


@contextlib.contextmanager
def scratch_dir(beside: str | Path):
    """A temporary directory next to ``beside`` (same disk, so big chunk files need no copy across
    devices), removed on the way out whatever happens."""
    beside = Path(beside)
    tmp = _fresh_beside(beside, "chunks")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def non_finite(obj, where: str = ""):
    """The first NaN or infinite number in a JSON-like object, as (key path, value); None when all are finite."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "the value", obj
    if isinstance(obj, dict):
        children = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        children = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for key, value in children:
        found = non_finite(value, key)
        if found:
            return found
    return None


def write_json(path: str | Path, obj, hint: str = "check the params this stage reads") -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (same input, same bytes).

    A NaN or infinity is refused with one line naming the figure: bare ``NaN`` is not JSON.
    """
    bad = non_finite(obj)
    if bad:
        raise VitinspectError(f"{path}: {bad[0]} is {bad[1]} (not a finite number); {hint}")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_figure(fig, tmp: Path, fmt: str, dpi: int = 100) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(tmp, format=fmt, dpi=dpi, metadata={"Software": None})  # no metadata: stable bytes
    plt.close(fig)


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Save a matplotlib figure atomically and close it. Metadata is stripped so bytes are stable."""
    with atomic_path(path) as tmp:
        _write_figure(fig, tmp, Path(path).suffix.lstrip(".") or "png", dpi)


def _draw_and_write(draw, tmp: Path, fmt: str) -> None:
    _write_figure(draw(), tmp, fmt)


@contextlib.contextmanager
def figure_alongside(draw, path: str | Path, background: bool):
    """Save the figure ``draw()`` returns to ``path`` (atomically; inside a stage's ``all_or_nothing`` it is
    renamed into place with the other outputs) while the block writes the stage's other outputs.

    background: draw it in a forked process (matplotlib imported there), so a stage allowed more than one
    process does not wait for it; else here, when the block ends. Same bytes either way.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        proc = None
        if background:
            import multiprocessing

            proc = multiprocessing.get_context("fork").Process(target=_draw_and_write, args=(draw, tmp, fmt), daemon=True)
            proc.start()
        try:
            yield
        except BaseException:
            if proc is not None:  # the block failed: nothing will be renamed into place
                proc.kill()
                proc.join()
            raise
        if proc is None:
            _draw_and_write(draw, tmp, fmt)
        else:
            proc.join()
            if proc.exitcode != 0:
                raise VitinspectError(f"{path}: drawing the figure failed (exit code {proc.exitcode}; the reason is above)")


META = "vitinspect.json"  # beside the Arrow files: rows per split and layout, as the producer wrote them


def hash_file(digest, path) -> None:
    """Feed a file's bytes to a hashlib object, 4 MiB at a time."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)


# ------------------------------------------------------------------ memory-mapped files

def mapped_files(ds) -> tuple:
    """The Arrow files a ``datasets.Dataset`` is memory-mapped from (empty for an in-memory one)."""
    return tuple(sorted(os.path.realpath(f["filename"]) for f in getattr(ds, "cache_files", None) or []))


# ------------------------------------------------------------------ datasets

def _save_split(ds, path: Path) -> None:
    """``ds.save_to_disk(path)`` for a local directory and the same files, byte for byte (a test holds it to
    that), written as ``datasets`` writes them, shard by shard and batch by batch."""
    from datasets import config
    from datasets.arrow_writer import ArrowWriter, get_writer_batch_size_from_data_size
    from datasets.utils.py_utils import asdict, convert_file_size_to_int

    files = mapped_files(ds)
    if not files or not len(ds) or ds.list_indexes():  # in memory, empty or indexed: datasets' own path
        ds.save_to_disk(str(path))
        return
    nbytes = ds._estimate_nbytes()
    num_shards = min(len(ds.data), int(nbytes / convert_file_size_to_int(config.MAX_SHARD_SIZE)) + 1)
    batch = config.DEFAULT_MAX_BATCH_SIZE
    if nbytes > 0:
        batch = min(batch, get_writer_batch_size_from_data_size(len(ds), nbytes))
    path.mkdir(parents=True, exist_ok=True)
    names = [f"data-{i:05d}-of-{num_shards:05d}.arrow" for i in range(num_shards)]
    for i, name in enumerate(names):
        shard = ds.shard(num_shards=num_shards, index=i, contiguous=True)
        writer = ArrowWriter(features=shard.features, path=str(path / name), embed_local_files=True)
        try:
            for table in shard.with_format("arrow").iter(batch):
                writer.write_table(table)
            writer.finalize()
        finally:
            writer.close()
    state = {k: ds.__dict__[k] for k in ("_fingerprint", "_format_columns", "_format_kwargs", "_format_type",
                                          "_output_all_columns")}
    state["_split"] = str(ds.split) if ds.split is not None else None
    state["_data_files"] = [{"filename": name} for name in names]
    with open(path / config.DATASET_STATE_JSON_FILENAME, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
    info = asdict(ds._info)
    with open(path / config.DATASET_INFO_FILENAME, "w", encoding="utf-8") as fh:
        json.dump({k: info[k] for k in sorted(info)}, fh, indent=2)


def save_dataset_dict(ds, path: str | Path) -> None:
    """``DatasetDict.save_to_disk(path)``, same bytes, each split through :func:`_save_split`."""
    from datasets import config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / config.DATASETDICT_JSON_FILENAME, "w", encoding="utf-8") as fh:
        json.dump({"splits": list(ds)}, fh)
    for name, split in ds.items():
        _save_split(split, path / name)


def save_dataset(ds, path: str | Path, **meta) -> None:
    """Save a DatasetDict as ``save_to_disk`` does (same bytes, bounded memory: :func:`save_dataset_dict`),
    atomically, with its rows per split (and ``meta``) in ``vitinspect.json``, so a reader can tell a
    damaged table from a shorter one."""
    with atomic_path(path, is_dir=True) as tmp:
        shutil.rmtree(tmp)
        save_dataset_dict(ds, tmp)
        record = {"rows": {name: len(split) for name, split in ds.items()}, **meta}
        (tmp / META).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def dataset_meta(path: str | Path) -> dict:
    """What the producer recorded about a dataset directory (rows per split, views, ...)."""
    path = Path(path)
    if not path.exists():
        raise VitinspectError(f"{path}: no such dataset; run the stage that writes it (dvc repro)")
    try:
        meta = json.loads((path / META).read_text())
        rows = meta["rows"]
        if not isinstance(rows, dict) or not all(isinstance(n, int) for n in rows.values()):
            raise ValueError("rows")
    except (OSError, ValueError, KeyError, TypeError):
        raise VitinspectError(f"{path}: lacks a readable {META} (rows per split, written with the data); "
                              "rerun the stage that writes it (dvc repro -f)") from None
    return meta


def load_dataset_dir(path: str | Path, splits=("train", "val", "test")):
    """Load a DatasetDict saved by :func:`save_dataset`, or raise a one-line error.

    Every split in ``splits`` must be there with as many rows as its producer wrote: an Arrow
    file cut at a record-batch boundary still reads, as a shorter split, and is refused here.
    """
    import datasets

    path = Path(path)
    meta = dataset_meta(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # corrupt arrow files, wrong layout: all one story for the user
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise VitinspectError(f"{path}: not a readable dataset ({type(exc).__name__}: {first})") from None
    if not isinstance(ds, datasets.DatasetDict):
        raise VitinspectError(f"{path}: holds one table, not splits; rerun the stage that writes it (dvc repro -f)")
    for name in splits:
        if name not in ds:
            raise VitinspectError(f"{path}: lacks split {name!r} (has {sorted(ds)}); rerun the stage that writes it (dvc repro -f)")
        if name not in meta["rows"] or len(ds[name]) != meta["rows"][name]:
            raise VitinspectError(f"{path}: split {name!r} has {len(ds[name])} rows but its stage wrote {meta['rows'].get(name)}: "
                                  "damaged or replaced Arrow files; restore them (dvc checkout) or rerun the stage (dvc repro -f)")
    return ds
