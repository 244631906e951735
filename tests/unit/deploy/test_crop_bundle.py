"""A model that crops (model.crop) through the bundle stage: its ONNX network holds the crop, the bundle opens under
both engines (each must give back the check parts' probabilities and OOD scores torch gave them), and the crop
changes what it judges. The tiny data's unit space gives no box (17 good parts: noise stands out everywhere), so
the box is written into a copy of the tiny model's config.json (the crop has no weights)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from conftest import _bundle_args, load_stage

from vitinspect.deploy.engine import judge, open_bundle
from vitinspect.model.stem import crop_of
from vitinspect.model.vit import load_trained


def test_a_cropping_model_bundles_and_both_engines_agree(trained_model, tmp_path, monkeypatch):
    d, model = trained_model
    cropped = tmp_path / "vit"
    shutil.copytree(model, cropped)
    cfg = json.loads((cropped / "config.json").read_text())
    assert cfg.get("vitinspect_stem") == "conv" and "vitinspect_crop" not in cfg
    cfg["vitinspect_crop"] = [6, 26, 2, 30]
    (cropped / "config.json").write_text(json.dumps(cfg))
    assert crop_of(load_trained(cropped).config) == (6, 26, 2, 30)
    monkeypatch.chdir(tmp_path)  # the stage's outputs must lie inside the working directory
    load_stage("bundle").main(_bundle_args(d, d / "params.yaml", tmp_path, cropped))
    b, onnx = open_bundle(tmp_path / "bundle", "onnx")  # refused unless the ONNX graph's crop matches torch's
    _, torch_engine = open_bundle(tmp_path / "bundle", "torch")
    views = b.check.views
    a, t = judge(b, onnx, views), judge(b, torch_engine, views)
    np.testing.assert_allclose(a.proba, t.proba, atol=2e-3)
    plain = load_trained(model).eval()
    crop = load_trained(cropped).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain(pixel_values=x).logits, crop(pixel_values=x).logits)
