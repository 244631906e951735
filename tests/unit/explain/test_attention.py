"""explain.attention: maps of the defective test parts on both inputs, scored where a mask is; the photos."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vitinspect.core.errors import VitinspectError
from vitinspect.explain.attention import MAP_INPUTS, NO_MASKS, load_photos, panel_rows, photo_maps, score_attention
from vitinspect.model.vit import InputSpec, build_scratch

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]
S = 32


@pytest.fixture(scope="module")
def model():
    from vitinspect.config.params import params_from_dict
    from conftest import tiny_dict

    return build_scratch(params_from_dict(tiny_dict()).model, S, CLASSES, 0)


def _cols(masks: bool) -> dict:
    rng = np.random.default_rng(0)
    label = np.arange(8) % len(CLASSES)
    mask = np.zeros((8, S, S), np.uint8)
    if masks:
        mask[label != 0, 8:16, 8:16] = 1
    return {"label": label, "mask": mask, "raw": rng.integers(0, 255, (8, S, S), dtype=np.uint8),
            "nsoartc": rng.integers(0, 255, (8, S, S, 3), dtype=np.uint8)}


def test_defective_parts_are_scored_on_both_inputs(model, tiny_params):
    p = dataclasses.replace(tiny_params.attention, methods=("rollout", "last_layer"))
    cols = _cols(masks=True)
    scored = score_attention(model, InputSpec(S), "nsoartc", CLASSES, cols, 0, p)
    assert list(scored.rows) == [1, 2, 3, 5, 6, 7] and scored.has_mask.all()
    assert scored.maps["raw"]["rollout"].shape == (6, 4, 4)  # (N, g, g): 32 px / patch 8
    report = scored.report
    assert report["n_parts"] == 6 and set(report["methods"]) == {"rollout", "last_layer"}
    assert [n for n in report["methods"]["rollout"]] == list(MAP_INPUTS) and report["methods"]["rollout"]["nsoartc"]["in_distribution"]
    assert scored.metrics["model_input"] == "nsoartc" and "token_norms" in report
    rows = panel_rows(scored, cols, CLASSES, 1, 1, p.methods)
    assert [r["label"] for r in rows] == ["tilt_x #0\nrollout", "tilt_x #0\nlast_layer"]
    assert np.array_equal(rows[0]["images"]["raw"], cols["raw"][1]) and rows[0]["maps"]["raw"].shape == (S, S)


def test_without_masks_the_maps_are_drawn_never_scored(model, tiny_params):
    scored = score_attention(model, InputSpec(S), "raw", CLASSES, _cols(masks=False), 0, tiny_params.attention)
    assert not scored.has_mask.any() and scored.report["methods"] == {} and scored.metrics["masks"] == NO_MASKS
    assert scored.report["n_without_mask"] == scored.report["n_defective"] == 6


def test_photos_are_read_and_a_bad_extra_image_is_named(model, tiny_params, tmp_path):
    photos, names = load_photos([], S)
    assert len(photos) == len(names) >= 2 and photos[0].shape == (S, S, 3) and photos[0].dtype == np.uint8
    preds, maps = photo_maps(model, InputSpec(S), photos, CLASSES, tiny_params.attention)
    assert set(preds) <= set(CLASSES) and all(m.shape == (len(photos), S, S) for m in maps.values())
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(VitinspectError, match="attention.extra_images entry .*empty.png.* not an image"):
        load_photos([str(tmp_path / "empty.png")], S)


def test_the_maps_are_drawn_on_every_input_a_model_may_take():
    from vitinspect.composite.nsoartc import INPUTS

    assert sorted(MAP_INPUTS) == sorted(INPUTS)
