"""composite.lot: the unit space the lot stage reads and the lot it makes, a chunk of parts at a time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vitinspect.composite.lot import LOT, NO_RENDERED_LOT, make_lot
from vitinspect.composite.nsoartc import load_unit_space
from vitinspect.composite.nsoartc import UnitSpace
from vitinspect.core.errors import VitinspectError


def _space(s: int) -> UnitSpace:
    return UnitSpace(np.zeros((3, s, s), np.float32), np.ones((3, s, s), np.float32), 9)


def test_the_unit_space_must_be_the_nsoartc_stage_s_and_of_the_image_size(tmp_path):
    path = tmp_path / "unit.npz"
    np.savez(path, mean=np.zeros((3, 8, 8), np.float32), std=np.ones((3, 8, 8), np.float32), n=np.int64(9))
    assert load_unit_space(path, 8).n == 9
    with pytest.raises(VitinspectError, match="unit space of 8 px but data.image_size is 32"):
        load_unit_space(path, 32)
    with pytest.raises(VitinspectError, match="not a unit space written by the nsoartc stage"):
        load_unit_space(tmp_path / "missing.npz", 8)


def test_a_rendered_lot_has_its_own_seed_size_and_passed_share(tiny_params, tmp_path):
    lot = dataclasses.replace(tiny_params.lot, n_parts=10)
    made = make_lot(lot, tiny_params.data, tiny_params.nsoartc, _space(tiny_params.data.image_size), tmp_path, 1)
    split = made.dataset[LOT]
    assert len(split) == 10 and made.meta == {}
    assert made.summary["n_parts"] == 10 and made.summary["seed"] == lot.seed and sum(made.summary["counts"].values()) == 10
    assert split[0]["id"].startswith("lot-") and np.asarray(split[0]["nsoartc"]).shape == (32, 32, 3)
    assert made.said.startswith("10 parts, ") and made.said.endswith(f"seed {lot.seed}, 1 processes")


def test_no_rendered_lot_for_a_model_of_the_user_s_parts(tiny_params, tmp_path):
    data = dataclasses.replace(tiny_params.data, source="folders")
    made = make_lot(tiny_params.lot, data, tiny_params.nsoartc, _space(data.image_size), tmp_path, 1)
    assert len(made.dataset[LOT]) == 0 and made.meta == {"note": NO_RENDERED_LOT}
    assert made.summary == {"source": "render", "scored": False, "note": NO_RENDERED_LOT, "n_parts": 0, "counts": None,
                            "skipped": []}
    assert made.said == "0 parts (none, not scored)"
