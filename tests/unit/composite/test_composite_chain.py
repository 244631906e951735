"""The one composite chain (views -> Double-Eye channels -> unit-space z-scores -> image), the one z-score,
and the unit space's file."""

from __future__ import annotations

import numpy as np
import pytest

from vitinspect.composite.nsoartc import (UnitSpace, composite, double_eye, load_unit_space, raw_channels, save_unit_space,
                                          to_image, unit_zscores, zscore)
from vitinspect.core.errors import VitinspectError

NAMES = ["center", "left", "right"]


def _views(n=4, size=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, len(NAMES), size, size), dtype=np.uint8)


def _space(size=12, seed=1):
    rng = np.random.default_rng(seed)
    return UnitSpace(rng.normal(size=(3, size, size)).astype(np.float32), rng.random((3, size, size)).astype(np.float32), 7)


def test_the_chain_is_the_written_out_arithmetic_to_the_bit():
    views, space = _views(), _space()
    v = views.astype(np.float32) / 255.0
    channels = double_eye({name: v[:, j] for j, name in enumerate(NAMES)}, 3, 1e-6)
    assert raw_channels(views, NAMES, 3, 1e-6).tobytes() == channels.tobytes()
    z = unit_zscores(views, NAMES, space, 3, 1e-6)
    expected = ((channels - space.mean) / (space.std + 1e-6)).astype(np.float32)
    assert z.dtype == np.float32 and z.shape == (4, 3, 12, 12) and z.tobytes() == expected.tobytes()
    # composite() is the chain then the image, in chunks of any size.
    for chunk in (1, 3, 512):
        assert composite(views, NAMES, space, 3, 20.0, 1e-6, chunk=chunk).tobytes() == to_image(z, 20.0).tobytes()
    assert composite(views[:0], NAMES, space, 3, 20.0).shape == (0, 12, 12, 3)


def test_one_zscore_for_pixels_and_cells():
    x = np.arange(12, dtype=np.float64).reshape(2, 2, 3)
    mean, std = np.full((2, 3), 2.0), np.full((2, 3), 4.0)
    np.testing.assert_array_equal(zscore(x, mean, std, 0.0), (x - 2.0) / 4.0)
    space = UnitSpace(mean.astype(np.float32), std.astype(np.float32), 2)
    assert space.zscore(x, 0.0).dtype == np.float32


def test_the_unit_space_file_round_trips_and_a_bad_one_is_refused(tmp_path):
    space = _space()
    save_unit_space(space, tmp_path / "unit.npz")
    back = load_unit_space(tmp_path / "unit.npz")
    assert back.n == 7 and back.mean.tobytes() == space.mean.tobytes() and back.std.tobytes() == space.std.tobytes()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(VitinspectError, match=r"bad.npz: not a unit space written by the nsoartc stage .*; run dvc repro"):
        load_unit_space(tmp_path / "bad.npz")
