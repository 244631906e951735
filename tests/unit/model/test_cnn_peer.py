"""The CNN peer: a transformers model that round-trips, and a run of train's machinery that is the same bytes per seed."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_dict


def test_cnn_peer_round_trips_save_and_load_with_the_same_logits(tmp_path):
    from vitinspect.model.cnn_peer import build_cnn, load_cnn, save_cnn

    model = build_cnn([4, 8, 16], 32, ["passed", "tilt_x", "tilt_y"], seed=3, dropout=0.2, input_name="raw").eval()
    x = torch.randn(5, 3, 32, 32)
    out = model(pixel_values=x, labels=torch.tensor([0, 1, 2, 0, 1]))
    assert out.logits.shape == (5, 3) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert model(pixel_values=x).loss is None
    save_cnn(model, tmp_path / "cnn")
    assert sorted(p.name for p in (tmp_path / "cnn").iterdir()) == ["config.json", "model.safetensors"]  # no pickle
    back = load_cnn(tmp_path / "cnn")
    assert back.config.widths == [4, 8, 16] and back.config.input_name == "raw" and back.config.id2label[2] == "tilt_y"
    assert torch.equal(back(pixel_values=x).logits, model(pixel_values=x).logits)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())  # BatchNorm's running stats too
    # The same seed, the same weights; another seed, others.
    same, other = build_cnn([4, 8, 16], 32, ["a", "b", "c"], seed=3), build_cnn([4, 8, 16], 32, ["a", "b", "c"], seed=4)
    assert torch.equal(same.features[0].weight, model.features[0].weight)
    assert not torch.equal(other.features[0].weight, model.features[0].weight)


def test_load_cnn_and_build_cnn_refuse_with_one_line(tmp_path):
    from vitinspect.core.errors import VitinspectError
    from vitinspect.model.cnn_peer import build_cnn, load_cnn

    with pytest.raises(VitinspectError, match="no CNN peer here") as err:
        load_cnn(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(VitinspectError, match="list fewer"):
        build_cnn([4] * 6, 32, ["a", "b"], seed=0)  # 2**6 > 32 px


def _state_bytes(model) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cnn_params():
    from vitinspect.config.params import params_from_dict

    return params_from_dict(tiny_dict(baseline={"cnn": {"epochs": 4, "lr": 0.01, "device": "cpu"}})).baseline.cnn


def test_cnn_trains_with_train_s_machinery_lowers_its_loss_and_is_the_same_bytes_per_seed(tiny_data, cnn_params, tmp_path):
    from vitinspect.core.storage import load_dataset_dir
    from vitinspect.model.cnn_run import fit_cnn

    ds = load_dataset_dir(tiny_data / "nsoartc")
    first, spec, run, _ = fit_cnn(ds, cnn_params, "passed", tmp_path / "a")
    losses = [e["loss"] for e in run.trainer.state.log_history if "loss" in e]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert [e["epoch"] for e in run.trainer.state.log_history if "eval_macro_f1" in e] == [1, 2, 3, 4]  # per-epoch evaluation
    assert run.trainer.args.label_smoothing_factor == cnn_params.label_smoothing and run.trainer.args.lr_scheduler_type == "cosine"
    assert spec.size == 32
    again, _, _, _ = fit_cnn(ds, cnn_params, "passed", tmp_path / "b")
    assert _state_bytes(again) == _state_bytes(first)
    import dataclasses

    other, _, _, _ = fit_cnn(ds, dataclasses.replace(cnn_params, seed=1, epochs=1), "passed", tmp_path / "c")
    assert _state_bytes(other) != _state_bytes(first)


def test_cnn_peer_off_writes_empty_figures():
    from vitinspect.model.cnn_run import OFF, cnn_peer

    out = cnn_peer(None, SimpleNamespace(enabled=False), ["a", "b"], "a", None, "data/nsoartc")
    assert out is OFF and out.metrics == {} and out.records == [] and out.report == {"enabled": False}
    out.save(None)  # nothing to save, nothing written


def test_baseline_cnn_params_are_validated():
    from vitinspect.config.params import ParamsError, params_from_dict

    p = params_from_dict(tiny_dict()).baseline.cnn
    assert p.enabled and p.input == "nsoartc" and p.widths == [4, 8]  # the tiny params' widths
    default = params_from_dict(tiny_dict(baseline={"cnn": {"widths": [16, 32, 64, 128]}})).baseline.cnn
    assert (default.epochs, default.lr, default.schedule, default.label_smoothing, default.shift_px) == (2, 0.003, "cosine", 0.1, 2)
    for change, message in (
        ({"input": "rgb"}, "baseline.cnn.input must be one of"),
        ({"widths": []}, "baseline.cnn.widths must list 1 to 8 block widths"),
        ({"widths": [16, 0]}, r"baseline.cnn.widths must hold channel counts in \[1, 4096\], got 0"),
        ({"widths": [4, 4, 4, 4, 4, 4]}, r"baseline.cnn.widths has 6 blocks, each halving the image: data.image_size \(32\)"),
        ({"shift_px": 8}, r"baseline.cnn.shift_px \(8\) must be under a quarter of data.image_size"),
        ({"lr": -1.0}, "baseline.cnn.lr must be in"),
        ({"epochs": 0}, "baseline.cnn.epochs must be positive"),
        ({"schedule": "step"}, "baseline.cnn.schedule must be one of"),
        ({"label_smoothing": 1.0}, r"baseline.cnn.label_smoothing must be in \[0, 1\)"),
        ({"device": "tpu"}, "baseline.cnn.device must be one of"),
        ({"enabled": "yes"}, "baseline.cnn.enabled"),
        ({"colour": 1}, "baseline.cnn"),
    ):
        with pytest.raises(ParamsError, match=message) as err:
            params_from_dict(tiny_dict(baseline={"cnn": change}))
        assert "\n" not in str(err.value) and str(err.value).startswith("params.yaml: ")
    # A peer that is off is not checked against the image size: it never runs.
    assert not params_from_dict(tiny_dict(baseline={"cnn": {"enabled": False, "widths": [4] * 6}})).baseline.cnn.enabled
