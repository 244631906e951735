"""The bundle's gate is checked on load like the rest: its arrays, its threshold against bundle.json, the check parts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vitinspect.core.errors import VitinspectError
from vitinspect.deploy.bundle import GATE, HASHES, MANIFEST, load, write_hashes
from vitinspect.deploy.engine import open_bundle
from vitinspect.evaluation.gate import from_arrays


def _copy(tiny_bundle, tmp_path):
    b = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, b)
    return b


def _rehash(b):
    write_hashes(b, b / HASHES)


def test_the_gate_travels_with_the_bundle(tiny_bundle):
    b = load(tiny_bundle)
    m = json.loads((tiny_bundle / MANIFEST).read_text())
    assert m["gate"]["threshold"] == b.gate.threshold > 0 and m["gate"]["covariance"] == "Ledoit-Wolf"
    assert b.check.gate_score.shape == (len(b.check.views),)


def test_a_gate_threshold_edited_in_bundle_json_is_refused(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    m = json.loads((b / MANIFEST).read_text())
    m["gate"]["threshold"] *= 2
    (b / MANIFEST).write_text(json.dumps(m))
    _rehash(b)
    with pytest.raises(VitinspectError, match=r"gate.npz: threshold .* differs from bundle.json's gate.threshold"):
        load(b)


def test_a_gate_swapped_with_its_threshold_kept_is_refused_by_the_check_parts(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    with np.load(b / GATE) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["location"] = arrays["location"] + 5.0  # another unit space, the same threshold
    with open(b / GATE, "wb") as fh:
        np.savez(fh, **arrays)
    _rehash(b)
    with pytest.raises(VitinspectError, match=r"gate.npz: disagrees with the bundle's check parts \(a gate score differs"):
        open_bundle(b, "onnx")


def test_a_gate_with_nan_is_refused_in_one_line(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    with np.load(b / GATE) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["precision"][0, 0] = np.nan
    with open(b / GATE, "wb") as fh:
        np.savez(fh, **arrays)
    _rehash(b)
    with pytest.raises(VitinspectError, match=r"gate.npz: not a gate \(the location, precision and settings must be finite") as err:
        load(b)
    assert "\n" not in str(err.value)
    with pytest.raises(VitinspectError):
        from_arrays({"location": np.zeros(3)}, "x")
