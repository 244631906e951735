"""Reading and writing stage outputs: atomic, and with one-line errors naming the file.

Every output is written to a temporary sibling and renamed into place, so a
killed stage leaves either the old output or none, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from vitinspect.errors import VitinspectError


@contextlib.contextmanager
def atomic_path(path: str | Path, *, is_dir: bool = False):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    if is_dir:
        target.mkdir()
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            old = tmp / (path.name + ".old")
            os.replace(path, old)  # a directory cannot be replaced in one rename
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (same input, same bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Save a matplotlib figure atomically and close it. Metadata is stripped so bytes are stable."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def save_dataset(ds, path: str | Path) -> None:
    """Save a ``datasets`` Dataset or DatasetDict with ``save_to_disk``, atomically."""
    with atomic_path(path, is_dir=True) as tmp:
        shutil.rmtree(tmp)
        ds.save_to_disk(str(tmp))


def load_dataset_dir(path: str | Path):
    """Load a DatasetDict saved by :func:`save_dataset`, or raise a one-line error."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise VitinspectError(f"{path}: no such dataset; run the stage that writes it (dvc repro)")
    try:
        return datasets.load_from_disk(str(path))
    except Exception as exc:  # corrupt arrow files, wrong layout: all one story for the user
        raise VitinspectError(f"{path}: not a readable dataset ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
