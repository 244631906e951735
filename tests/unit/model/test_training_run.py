"""A train-stage run's pieces that need no training: the resume fingerprint, the first model's checks, the report."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from vitinspect.core.errors import VitinspectError
from vitinspect.model.training import fingerprint
from vitinspect.model.training_run import TrainingData, blocks, initial_model, resume_fingerprint, training_report


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return TrainingData(["passed", "tilt"], "raw", {"label": np.array([0, 1, 0]), "raw": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)},
                        {"label": np.array([1, 0]), "raw": rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)})


class Blocked:
    """A column that hands out its Arrow chunks, like MappedImages."""

    def __init__(self, *parts):
        self.parts = parts

    def blocks(self):
        return iter(self.parts)


def test_blocks_hash_like_the_whole_array():
    a = np.arange(24, dtype=np.uint8).reshape(4, 6)
    assert list(blocks(a))[0] is a
    assert fingerprint(blocks(Blocked(a[:1], a[1:]))) == fingerprint(blocks(a)) == fingerprint(a)


def test_the_resume_fingerprint_follows_params_data_and_code(tiny_params, tmp_path):
    stage = tmp_path / "train.py"
    stage.write_text("# stage\n")
    t, m, f = tiny_params.train, tiny_params.model, tiny_params.finetune
    key = resume_fingerprint(t, m, f, _data(), str(stage), str(tmp_path))
    assert len(key) == 64 and key == resume_fingerprint(t, m, f, _data(), str(stage), str(tmp_path))
    assert key != resume_fingerprint(dataclasses.replace(t, lr=t.lr / 2), m, f, _data(), str(stage), str(tmp_path))
    assert key != resume_fingerprint(t, m, f, _data(seed=1), str(stage), str(tmp_path))
    stage.write_text("# stage, changed\n")
    assert key != resume_fingerprint(t, m, f, _data(), str(stage), str(tmp_path))
    # With model.source pretrain, the pretrained weights count too.
    (tmp_path / "model.safetensors").write_bytes(b"a")
    pre = dataclasses.replace(m, source="pretrain")
    first = resume_fingerprint(t, pre, f, _data(), str(stage), str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"b")
    assert first != resume_fingerprint(t, pre, f, _data(), str(stage), str(tmp_path))


def test_a_scratch_model_needs_whole_patches(tiny_params):
    m = dataclasses.replace(tiny_params.model, source="scratch", patch_size=3)
    with pytest.raises(VitinspectError, match=r"data/nsoartc: images are 8 px, not divisible by model.patch_size=3"):
        initial_model(m, 0, _data(), "models/pretrain", "data/nsoartc")


def test_the_report_takes_the_last_epoch_and_keeps_timings_apart():
    history = [{"loss": 0.9, "epoch": 1.0}, {"eval_loss": 0.8, "eval_macro_f1": 0.5, "eval_runtime": 1.0, "epoch": 1.0},
               {"loss": 0.7, "epoch": 2.0}, {"eval_loss": 0.6, "eval_macro_f1": 0.75, "eval_samples_per_second": 9.0, "epoch": 2.0}]
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=history),
                              args=SimpleNamespace(device="cpu", bf16=False, world_size=1))
    run = SimpleNamespace(trainer=trainer, result=SimpleNamespace(metrics={"train_samples_per_second": 123.456}),
                          wall_seconds=12.34, resumed=False, trainable=10, total=20)
    summary, info = training_report(run, "nsoartc", "full", 1)
    assert summary == {"input": "nsoartc", "strategy": "full", "parameters": {"total": 20, "trainable": 10}, "epochs": 2,
                       "val": {"loss": 0.6, "macro_f1": 0.75}, "train_loss": 0.7}
    assert info == {"images_per_second": 123.5, "wall_seconds": 12.3, "device": "cpu", "bf16": False, "world_size": 1,
                    "resumed": False, "threads": 1}
