"""deploy.build: the operating point and unit space the bundle stage reads, and the bundle it builds from a network."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vitinspect.core.errors import VitinspectError
from vitinspect.composite.nsoartc import load_unit_space
from vitinspect.deploy.build import ARGMAX, build, read_operating_point

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]


def test_an_operating_point_is_read_checked_and_argmax_without_one(tmp_path):
    op = tmp_path / "operating_point.json"
    op.write_text(json.dumps({"class": "passed", "threshold": 0.4, "rule": "passed when p(passed) >= t"}))
    assert read_operating_point(str(op), CLASSES) == {"class": "passed", "threshold": 0.4, "source": str(op)}
    op.write_text(json.dumps({"class": "passed", "threshold": 1.5}))
    with pytest.raises(VitinspectError, match="operating_point.json: not an operating point"):
        read_operating_point(str(op), CLASSES)
    assert read_operating_point(None, CLASSES, "ok") == dict(ARGMAX, **{"class": "ok"})


def test_the_unit_space_is_read_or_refused_in_one_line(tmp_path):
    path = tmp_path / "unit.npz"
    np.savez(path, mean=np.zeros((3, 4, 4), np.float32), std=np.ones((3, 4, 4), np.float32), n=np.int64(7))
    assert load_unit_space(path).n == 7
    path.write_bytes(b"not a zip")
    with pytest.raises(VitinspectError, match="unit.npz: not a unit space"):
        load_unit_space(path)


def test_build_fits_the_guard_on_train_and_keeps_each_class_first_test_parts(tiny_params):
    from vitinspect.composite.nsoartc import UnitSpace

    data, s = tiny_params.data, tiny_params.data.image_size
    rng = np.random.default_rng(0)
    splits = {name: {"views": rng.integers(0, 255, (n, len(data.views), s, s), dtype=np.uint8),
                     "label": np.arange(n) % len(CLASSES)} for name, n in (("train", 40), ("val", 20), ("test", 12))}
    unit = UnitSpace(np.zeros((3, s, s), np.float32), np.ones((3, s, s), np.float32), 10)

    def engine(images):  # a stand-in network: uniform (N, K) probabilities, (N, 4) features of the images
        x = images.reshape(len(images), -1).astype(np.float32)
        features = np.stack([x.mean(1), x.std(1), x[:, ::2].mean(1), x[:, ::3].std(1)], axis=1)
        return np.full((len(images), len(CLASSES)), 1 / len(CLASSES), np.float32), features

    from vitinspect.evaluation.gate import Gate

    op = read_operating_point(None, CLASSES)
    k = 3 * data.grid.rows * data.grid.cols
    gate = Gate(np.full(k, 40.0), np.eye(k) / 100, 2.0, data.grid.rows, data.grid.cols, 0.01, 0.1, 30, {"k": 0, "n": 30})
    built = build("bundle", splits, CLASSES, engine, input_name="nsoartc", unit=unit, operating_point=op, data=data,
                  nsoartc=tiny_params.nsoartc, settings=dataclasses.replace(tiny_params.bundle, probes_per_kind=4),
                  data_dict={"image_size": s}, gate=gate)
    assert built.content["gate"]["threshold"] == 2.0 and built.bundle.gate is gate
    assert built.check.gate_score.shape == (8,) and set(built.report["gate"]) == {"test_rejected", "probes_rejected_by_kind"}
    assert built.content["classes"] == CLASSES and built.content["operating_point"] == op
    assert built.report["val"]["n"] == 20 and built.report["test_flagged"]["n"] == 12
    assert set(built.metrics["ood"]) == {"val", "test_flagged", "probes_flagged"}
    assert built.bundle.features is not None and built.bundle.calibration is not None
    # the first two test parts of each class, in test-split order
    assert np.array_equal(built.check.views, splits["test"]["views"][:8])
    assert built.check.proba.shape == (8, len(CLASSES)) and built.check.ood_score.dtype == np.float64
