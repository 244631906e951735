"""Pretraining's representation (the one composite chain) and what the stage saves from a run."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import torch

from vitinspect.composite.nsoartc import UnitSpace, composite
from vitinspect.model.pretraining import MaeRun, as_representation, build_mae, mae_config, pretrained_encoder
from vitinspect.model.vit import InputSpec

NAMES = ["center", "left", "right"]


def test_the_representation_is_the_centre_view_or_the_composite():
    rng = np.random.default_rng(0)
    views = rng.integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    space = UnitSpace(rng.normal(size=(3, 8, 8)).astype(np.float32), rng.random((3, 8, 8)).astype(np.float32), 0)
    p = SimpleNamespace(window=3, gain=20.0, eps=1e-6)
    raw = as_representation(views, NAMES, "raw", None, p)
    assert raw.tobytes() == views[:, 0].tobytes() and raw.flags.c_contiguous
    comp = as_representation(views, NAMES, "nsoartc", space, p, chunk=2)
    assert comp.shape == (5, 8, 8, 3) and comp.tobytes() == composite(views, NAMES, space, 3, 20.0, 1e-6).tobytes()


def test_the_encoder_records_its_pretraining_and_the_panels_show_six_parts(tiny_params):
    q = dataclasses.replace(tiny_params.pretrain, epochs=1)
    mae = build_mae(mae_config(tiny_params.model, 32, q), 0)
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    run = MaeRun(mae, images, InputSpec(32), [0.5], {}, 0.0, 0.0, {})
    encoder, (original, masked, recon, pasted, loss) = pretrained_encoder(run, q)
    assert original.shape == masked.shape == recon.shape == pasted.shape == (6, 32, 32, 3) and np.isfinite(loss)
    assert encoder.config.vitinspect_pretrain["reconstruction_loss"] == [0.5]
    assert {t.dtype for t in encoder.parameters()} == {torch.float32} and type(encoder).__name__ == "ViTModel"
