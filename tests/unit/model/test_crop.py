"""model.crop auto: the box where the parts are, found from a unit space, and a conv-stem model that crops to it
(the forward, save and load_trained, a bad box in config.json, maps placed back in the frame; the ONNX export is
test_stem.py's)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vitinspect.core.errors import VitinspectError
from vitinspect.explain.maps import high_norm_tokens, score_maps, upsample
from vitinspect.model.stem import ConvStem, crop_of, part_box
from vitinspect.model.vit import InputSpec, build_scratch, load_trained, save_model

CLASSES = ["passed", "tilt_x", "tilt_y"]


def band_std(size=64, rows=(20, 40), cols=(6, 58), noise=0.01, seed=0):
    """A unit space's std: render noise everywhere, the parts' spread in a band."""
    std = np.random.default_rng(seed).uniform(0.5 * noise, noise, (3, size, size)).astype(np.float32)
    std[:, rows[0]:rows[1], cols[0]:cols[1]] = np.random.default_rng(seed + 1).uniform(0.2, 1.0, (3, rows[1] - rows[0], cols[1] - cols[0]))
    return std


def test_the_box_holds_where_the_parts_vary_with_a_margin():
    assert part_box(band_std(), 8) == (17, 43, 3, 61)  # margin 64 / 20 = 3 px
    assert part_box(band_std(32, (10, 14), (12, 20)), 8) == (8, 16, 10, 22)  # margin 2 px; 4 + 4 rows >= a token
    assert part_box(band_std(32, (14, 18), (14, 18)), 16) == (8, 24, 8, 24)  # grown to one token about its centre
    assert part_box(band_std(32, (0, 4), (28, 32)), 16) == (0, 16, 16, 32)  # ... inside the frame


def test_no_box_when_it_would_be_the_frame_or_nothing_stands_out():
    assert part_box(band_std(64, (1, 63), (1, 63)), 8) is None  # nearly the whole frame: nothing to gain
    assert part_box(np.zeros((3, 32, 32)), 8) is None  # a flat unit space
    assert part_box(np.full((3, 32, 32), np.nan), 8) is None


def test_a_floored_unit_space_gives_the_same_box():
    from vitinspect.composite.nsoartc import UnitSpace

    std = band_std()
    space = UnitSpace(np.zeros_like(std), std, 50)
    assert part_box(space.floored(0.25).scale, 8) == part_box(std, 8)


def crop_model(tiny_params, box=(8, 24, 4, 28), **model):
    m = dataclasses.replace(tiny_params.model, stem="conv", crop="auto", **model)
    return build_scratch(m, 32, CLASSES, seed=0, crop=box)


def test_the_stem_sees_the_box_resized_to_the_frame():
    stem = ConvStem(3, 64, 8, 32, (8, 24, 4, 28))
    plain = ConvStem(3, 64, 8)
    plain.load_state_dict(stem.state_dict())
    x = torch.randn(2, 3, 32, 32)
    want = plain(torch.nn.functional.interpolate(x[..., 8:24, 4:28], size=(32, 32), mode="bilinear", align_corners=False))
    torch.testing.assert_close(stem(x), want)
    y = x.clone()
    y[..., :8, :] = 99.0  # outside the box: never seen
    torch.testing.assert_close(stem(y), stem(x))


def test_a_cropping_model_saves_and_loads_its_box(tiny_params, tmp_path):
    model = crop_model(tiny_params)
    assert crop_of(model.config) == (8, 24, 4, 28)
    save_model(model, InputSpec(32), "nsoartc", 32, tmp_path / "vit")
    back = load_trained(tmp_path / "vit")
    assert crop_of(back.config) == (8, 24, 4, 28)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values=x).logits, model.eval()(pixel_values=x).logits)
    # the box is only the conv stem's: model.crop none, or the patchify stem, records none
    assert crop_of(build_scratch(dataclasses.replace(tiny_params.model, stem="conv", crop="none"), 32, CLASSES, 0, (8, 24, 4, 28)).config) is None
    assert crop_of(build_scratch(dataclasses.replace(tiny_params.model, stem="patch", crop="auto"), 32, CLASSES, 0, (8, 24, 4, 28)).config) is None


@pytest.mark.parametrize("bad", ['[8, 24, 4]', '[24, 8, 4, 28]', '[0, 40, 0, 32]', '"box"'])
def test_a_bad_box_in_config_json_is_one_line(tiny_params, tmp_path, bad):
    save_model(crop_model(tiny_params), InputSpec(32), "nsoartc", 32, tmp_path / "vit")
    cfg = tmp_path / "vit" / "config.json"
    cfg.write_text(cfg.read_text().replace('"vitinspect_crop": [\n    8,\n    24,\n    4,\n    28\n  ]', f'"vitinspect_crop": {bad}'))
    assert bad in cfg.read_text()
    with pytest.raises(VitinspectError, match=r"vit: not a loadable ViT checkpoint: vitinspect_crop"):
        load_trained(tmp_path / "vit")


def test_maps_fill_the_box_and_the_rest_of_the_frame_is_zero(tiny_params):
    maps = np.ones((2, 4, 4), np.float32)
    up = upsample(maps, 32, (8, 24, 4, 28))
    assert up[:, 8:24, 4:28].min() == 1.0 and up.sum() == 2 * 16 * 24
    np.testing.assert_array_equal(upsample(maps, 32), np.ones((2, 32, 32), np.float32))
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 0:8] = True  # outside the box: the model never saw it, no relevance there
    assert score_maps(maps, masks, (8, 24, 4, 28))["relevance_mass"].max() == 0.0
    masks[:, 8:12, 4:28] = True
    assert score_maps(maps, masks, (8, 24, 4, 28))["relevance_mass"].min() == pytest.approx(4 / 16)
    model = crop_model(tiny_params).eval()
    got = high_norm_tokens(model, torch.randn(2, 3, 32, 32), masks)
    assert got["mask_patch_share"] == pytest.approx(1 / 4)  # the box's top quarter of tokens touch the mask
