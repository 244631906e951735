"""The on-disk layout of the parts and NSOARTC data sets (Arrow tables via ``datasets``).

A few Arrow files per split instead of thousands of PNGs: DVC hashes every
file of a directory output, and decoding arrays once beats decoding images per step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitinspect.errors import VitinspectError

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


def _where(ds) -> str:
    """The split's directory, for messages."""
    files = getattr(ds, "cache_files", None) or []
    return str(Path(files[0]["filename"]).parent) if files else "dataset"


def columns(ds, names) -> dict[str, np.ndarray]:
    """Decode the named columns of one split into numpy arrays, once."""
    missing = [n for n in names if n not in ds.column_names]
    if missing:
        raise VitinspectError(f"{_where(ds)}: lacks column {missing[0]!r} (has {ds.column_names}); rerun the stage that writes it (dvc repro -f)")
    import datasets

    # One batch read ([:]), not row by row (np.asarray of a column iterates its rows: ~25x slower);
    # image columns back to their stored dtype (uint8), not the int64 the numpy formatter returns.
    batch = ds.with_format("numpy", columns=list(names))[:]
    out = {}
    for n in names:
        a = np.asarray(batch[n])
        feature = ds.features[n]
        if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
            a = a.astype(feature.dtype, copy=False)
        out[n] = a
    return out


def label_names(ds) -> list[str]:
    label = ds.features.get("label")
    if label is None or not hasattr(label, "names"):
        raise VitinspectError(f"{_where(ds)}: lacks column 'label' (class names); rerun the stage that writes it (dvc repro -f)")
    return list(label.names)


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


def lot_features(classes, size):
    """Features of the ``lot`` output: id, label, the raw centre view and the NSOARTC composite."""
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(classes)),
        "raw": datasets.Array2D(shape=(size, size), dtype="uint8"),
        "nsoartc": datasets.Array3D(shape=(size, size, 3), dtype="uint8"),
    })
