"""The nsoartc stage's two passes, on a small parts data set saved in a temporary folder."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vitinspect.composite.nsoartc import UnitSpace, composite, double_eye
from vitinspect.composite.nsoartc_dataset import (compose_splits, first_of_each_class, fit_unit_space, nsoartc_report,
                                                  split_chunks)
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import load_dataset_dir, save_dataset
from vitinspect.data.arrow import SPLITS, columns, parts_features, to_dataset_dict

CLASSES = ["passed", "tilt"]
NAMES = ["center", "left", "right"]
P = SimpleNamespace(window=3, eps=1e-6, gain=20.0, min_unit_space=2, std_floor=0.0)


@pytest.fixture
def parts(tmp_path):
    rng = np.random.default_rng(0)
    n, size = 12, 8
    cols = {"id": [f"p{i}" for i in range(n)], "label": [CLASSES[i % 3 == 2] for i in range(n)],
            "split": [SPLITS[i // 4] for i in range(n)], "defect_terminal": [0] * n, "tilt": [[0.0, 0.0]] * n,
            "retraction": [0.0] * n, "bbox": [[0, 0, 1, 1]] * n, "mask": rng.integers(0, 2, (n, size, size), dtype=np.uint8),
            "views": rng.integers(0, 256, (n, len(NAMES), size, size), dtype=np.uint8)}
    save_dataset(to_dataset_dict(cols, parts_features(CLASSES, NAMES, size), CLASSES), tmp_path / "parts")
    return str(tmp_path / "parts"), cols


def test_the_two_passes_give_the_stacked_unit_space_and_the_composites(parts, tmp_path):
    path, cols = parts
    ds = load_dataset_dir(path)
    chunks = split_chunks(ds)
    assert chunks == {s: [(0, 4)] for s in SPLITS}
    space = fit_unit_space(path, {**chunks, "train": [(0, 1), (1, 4)]}, NAMES, 0, "passed", P, 1)
    train = columns(ds["train"], ["views", "label"])
    v = train["views"][train["label"] == 0].astype(np.float32) / 255.0
    fit = UnitSpace.fit(double_eye({name: v[:, j] for j, name in enumerate(NAMES)}, 3, 1e-6))
    assert space.n == fit.n == 3 and space.mean.tobytes() == fit.mean.tobytes() and space.std.tobytes() == fit.std.tobytes()

    splits, summaries = compose_splits(path, chunks, NAMES, space, P, CLASSES, tmp_path, 1)
    got = columns(splits["val"], ["nsoartc"])["nsoartc"]
    assert got.tobytes() == composite(columns(ds["val"], ["views"])["views"], NAMES, space, 3, 20.0, 1e-6).tobytes()
    report = nsoartc_report(summaries, chunks, CLASSES, "passed", space, {})
    assert report["counts"]["train"] == {"passed": 3, "tilt": 1} and set(report["defect_contrast"]) == {"tilt"}
    assert report["unit_space_size"] == 3 and "folders" not in report

    shown, views, masks = first_of_each_class(path, ds)
    assert shown.tolist() == [0, 1] and views.shape == (2, 3, 8, 8) and masks.dtype == bool
    assert views[1].tobytes() == cols["views"][2].tobytes()  # the first tilt part: train's third row


def test_too_small_a_unit_space_is_refused(parts):
    path, _ = parts
    chunks = split_chunks(load_dataset_dir(path))
    with pytest.raises(VitinspectError, match=r"the unit space has 3 good \('passed'\) training parts, fewer than nsoartc.min_unit_space=4"):
        fit_unit_space(path, chunks, NAMES, 0, "passed", SimpleNamespace(**{**vars(P), "min_unit_space": 4}), 1)


def test_the_report_gives_no_contrast_without_mask_pixels_and_names_the_folders():
    summary = {"count": np.array([2, 1]), "in": np.zeros(2), "n_in": np.zeros(2, np.int64), "out": np.ones(2), "n_out": np.ones(2, np.int64)}
    meta = {"source": "folders", "layout": "class folders", "masks": 0, "skipped": ["a"]}
    report = nsoartc_report([summary], {"train": [(0, 3)], "val": [], "test": []}, CLASSES, "passed",
                            UnitSpace(np.zeros(1), np.ones(1), 2), meta)
    assert report["defect_contrast"] == {"tilt": None}
    assert report["folders"] == {"layout": "class folders", "parts_with_mask": 0, "skipped": 1, "skipped_parts": ["a"]}
