"""The peer's inputs (cell features of uint8 views, z-scored by the good parts) and its report."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vitinspect.composite.nsoartc import zscore
from vitinspect.core.errors import VitinspectError
from vitinspect.evaluation.rt_peer import (INPUT, CellUnitSpace, Fitted, cell_boxes, cell_features, fit_peers, part_features,
                                           peer_inputs, peer_report, predict_timed)

NAMES = ["center", "left", "right"]
CLASSES = ["passed", "tilt"]
GRID = SimpleNamespace(rows=2, cols=2)


def _cols(seed=0, n=12, size=16):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    views = rng.integers(0, 200, (n, 3, size, size), dtype=np.uint8)
    views[labels == 1, 1] += 50  # a tilted part: the left view differs
    return {"views": views, "label": labels}


def test_part_features_are_cell_features_of_the_views_in_float64():
    cols, boxes = _cols(), cell_boxes(16, 2, 2)
    v = cols["views"].astype(np.float64) / 255.0
    expected = cell_features({name: v[:, j] for j, name in enumerate(NAMES)}, boxes, 1e-6)
    got = part_features(cols["views"], NAMES, boxes, 1e-6)
    assert got.dtype == np.float64 and got.shape == (12, 4, 3) and got.tobytes() == expected.tobytes()


def test_the_inputs_are_zscored_by_the_good_training_parts():
    cols = {s: _cols(i) for i, s in enumerate(("train", "val", "test"))}
    inputs = peer_inputs(cols, NAMES, GRID, 1e-6, CLASSES, "passed", 3, "data/parts")
    raw = part_features(cols["train"]["views"], NAMES, inputs.boxes, 1e-6)
    space = CellUnitSpace.fit(raw[cols["train"]["label"] == 0])
    assert inputs.space.n == 6 and inputs.x["train"].shape == (12, 12) and inputs.feature_seconds >= 0
    assert inputs.x["train"].tobytes() == zscore(raw, space.mean, space.std, 1e-6).reshape(12, -1).tobytes()
    with pytest.raises(VitinspectError, match=r"data/parts: holds classes \['passed', 'tilt'\], without data.good_class 'ok'; run dvc repro"):
        peer_inputs(cols, NAMES, GRID, 1e-6, CLASSES, "ok", 3, "data/parts")
    with pytest.raises(VitinspectError, match=r"the unit space has 6 good \('passed'\) training parts, fewer than nsoartc.min_unit_space=7"):
        peer_inputs(cols, NAMES, GRID, 1e-6, CLASSES, "passed", 7, "data/parts")


def test_the_report_mirrors_eval_json_and_the_timings_stay_apart():
    cols = {s: _cols(i) for i, s in enumerate(("train", "val", "test"))}
    inputs = peer_inputs(cols, NAMES, GRID, 1e-6, CLASSES, "passed", 3, "data/parts")
    p = SimpleNamespace(grid=SimpleNamespace(C=[1.0], gamma=[0.1]), class_weight="balanced", seed=0)
    fitted = fit_peers(inputs, p, 2)
    assert list(fitted) == ["svm", "logistic"] and all(isinstance(f, Fitted) for f in fitted.values())
    tested = {name: predict_timed(f.model, inputs.x["test"]) for name, f in fitted.items()}
    out = peer_report(fitted, tested, inputs, CLASSES, "passed", SimpleNamespace(threshold="auto", target_escape_rate=0.0),
                      "balanced", {"svm": {}, "logistic": {}}, True, "data/parts")
    assert out.report["input"] == INPUT and out.report["features"]["cells"] == 4 and "cells_placed" in out.report["features"]
    assert out.report["svm"]["test"] == out.metrics and len(out.confusion_records) == 12
    assert set(out.run_info) == {"extract_ms_per_part", "svm", "logistic"} and out.line.startswith("baseline: 4 cells x 3 features")
