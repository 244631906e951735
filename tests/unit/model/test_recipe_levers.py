"""The training levers (train.label_smoothing, shift_px, schedule, best_on_val, model.stem's cross-checks) and
the collapse rule, on constructed inputs."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import tiny_dict
from vitinspect.config.params import ParamsError, params_from_dict
from vitinspect.evaluation.metrics import collapsed, epoch_metrics, one_class_macro_f1
from vitinspect.model.augment import shift_batch, shifted
from vitinspect.model.training import best_args, trainer_args, weighted_loss
from vitinspect.model.training_run import collapse_line, training_report


# ---- train.shift_px ----------------------------------------------------------------------------------

def test_a_shift_moves_every_channel_alike_with_edges_repeated():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16).expand(-1, 3, -1, -1).clone()
    x[:, 1] += 1000  # channels differ, so a per-channel shift would show
    x[:, 2] *= -1
    out = shift_batch(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):
        # Which (dy, dx) in [-2, 2]^2 reproduces channel 0 also reproduces channels 1 and 2.
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i, 0], _moved(x[i, 0], dy, dx))]
        assert len(found) == 1
        dy, dx = found[0]
        assert all(torch.equal(out[i, c], _moved(x[i, c], dy, dx)) for c in (1, 2))


def _moved(img, dy, dx):
    """img moved down by dy and right by dx, edge rows and columns repeated (the reference, by index)."""
    h, w = img.shape
    rows = (torch.arange(h) - dy).clamp(0, h - 1)
    cols = (torch.arange(w) - dx).clamp(0, w - 1)
    return img[rows][:, cols]


def test_shifts_are_the_same_for_a_seed_and_differ_between_seeds():
    x = torch.rand(32, 3, 16, 16)
    a = shift_batch(x, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a, shift_batch(x, 3, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, shift_batch(x, 3, torch.Generator().manual_seed(8)))
    torch.manual_seed(7)  # in training: torch's global generator, seeded (and checkpointed) by the Trainer
    g = shift_batch(x, 3)
    torch.manual_seed(7)
    assert torch.equal(g, shift_batch(x, 3))


def test_no_shift_is_the_conversion_itself():
    convert = lambda images: torch.as_tensor(images, dtype=torch.float32)  # noqa: E731
    assert shifted(convert, 0) is convert
    x = torch.rand(2, 3, 8, 8)
    assert shift_batch(x, 0) is x


# ---- train.schedule, label_smoothing, best_on_val ---------------------------------------------------------

@pytest.mark.parametrize("schedule", ["cosine", "linear", "cosine_with_min_lr"])
def test_the_schedule_names_reach_the_trainer(tiny_params, tmp_path, schedule):
    t = dataclasses.replace(tiny_params.train, schedule=schedule, device="cpu")
    args = trainer_args(tmp_path, t)
    assert args.lr_scheduler_type.value == schedule
    if schedule == "cosine_with_min_lr":
        assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}


def test_the_levers_off_add_nothing_and_on_reach_the_trainer(tiny_params, tmp_path):
    t = dataclasses.replace(tiny_params.train, device="cpu", label_smoothing=0.0, best_on_val=False)
    assert best_args(t) == {}
    on = dataclasses.replace(t, label_smoothing=0.1, best_on_val=True)
    assert best_args(tiny_params.train) == best_args(on)  # the default recipe has both on
    args = trainer_args(tmp_path, on, eval_strategy="epoch", save_strategy="epoch", **best_args(on))
    assert args.label_smoothing_factor == 0.1
    assert args.load_best_model_at_end and args.metric_for_best_model == "macro_f1" and args.greater_is_better


def test_class_weighting_keeps_label_smoothing():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1])
    w = torch.ones(3)
    plain = weighted_loss(w)(SimpleNamespace(logits=logits), labels)
    smooth = weighted_loss(w, 0.1)(SimpleNamespace(logits=logits), labels)
    assert torch.isclose(smooth, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))
    assert smooth > plain


def test_the_conv_stem_and_the_shift_are_checked_against_other_keys():
    for override, fragment in [({"model": {"stem": "conv", "patch_size": 4}, "data": {"image_size": 48}}, None),
                               ({"model": {"stem": "conv", "patch_size": 6}, "data": {"image_size": 36}},
                                "model.stem conv needs model.patch_size a power of two >= 2"),
                               ({"model": {"stem": "conv", "source": "pretrained"}}, "model.stem conv needs model.source scratch"),
                               ({"train": {"shift_px": 8}}, "train.shift_px (8) must be under a quarter of data.image_size (32)")]:
        if fragment is None:
            params_from_dict(tiny_dict(**override))
            continue
        with pytest.raises(ParamsError) as err:
            params_from_dict(tiny_dict(**override))
        assert fragment in str(err.value) and "\n" not in str(err.value)


# ---- a collapsed model ----------------------------------------------------------------------------------

def test_the_one_class_level_is_the_majority_class_f1_over_k():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)  # N = 10, p = 0.6
    level = one_class_macro_f1(labels, 3)
    assert level == pytest.approx((2 * 0.6 / 1.6) / 3, abs=1e-6)
    # It is exactly what the epoch metric gives to a model that predicts the majority class for every part.
    assert level == epoch_metrics(labels, np.zeros(10, int), ["a", "b", "c"], "a")["macro_f1"]
    # Any other single class scores lower.
    for j in (1, 2):
        assert epoch_metrics(labels, np.full(10, j), ["a", "b", "c"], "a")["macro_f1"] < level
    # A class absent from val still counts in K (its F1 is 0, as in the metric).
    assert one_class_macro_f1(labels, 4) == pytest.approx((2 * 0.6 / 1.6) / 4, abs=1e-6)
    assert one_class_macro_f1(np.array([], int), 3) == 0.0


@pytest.mark.parametrize("preds,expected", [
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], True),  # one class for every part: the level itself
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], True),  # a minority class everywhere: below it
    ([0, 0, 0, 0, 0, 0, 1, 1, 1, 0], False),  # class 2 never predicted, the other two right: learnt something
    ([0, 0, 0, 0, 0, 0, 1, 1, 1, 2], False),  # all right
])
def test_the_collapse_rule_on_constructed_predictions(preds, expected):
    labels = np.array([0] * 6 + [1] * 3 + [2])
    f1 = epoch_metrics(labels, np.array(preds), ["a", "b", "c"], "a")["macro_f1"]
    assert collapsed(f1, labels, 3) is expected


def test_two_classes():
    labels = np.array([0] * 9 + [1])  # p = 0.9: level (1.8 / 1.9) / 2 = 0.473684
    assert one_class_macro_f1(labels, 2) == pytest.approx(0.473684, abs=1e-6)
    assert collapsed(epoch_metrics(labels, np.zeros(10, int), ["a", "b"], "a")["macro_f1"], labels, 2)
    one_right = np.array([0] * 8 + [1, 1])  # the one defect found at one false alarm: macro-F1 0.804
    assert not collapsed(epoch_metrics(labels, one_right, ["a", "b"], "a")["macro_f1"], labels, 2)


def _run(history):
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=history), args=SimpleNamespace(device="cpu", bf16=False, world_size=1))
    return SimpleNamespace(trainer=trainer, result=SimpleNamespace(metrics={"train_samples_per_second": 1.0}),
                           wall_seconds=1.0, resumed=False, trainable=1, total=1)


def test_the_report_records_a_collapse_and_the_stage_says_it_in_one_line():
    labels = np.array([0] * 6 + [1] * 3 + [2])
    level = one_class_macro_f1(labels, 3)
    history = [{"loss": 1.0, "epoch": 1.0}, {"eval_loss": 1.0, "eval_macro_f1": level, "epoch": 1.0}]
    summary, _ = training_report(_run(history), "nsoartc", "full", 1, labels, 3)
    assert summary["collapsed"] is True
    line = collapse_line(summary, labels, 3)
    assert line.startswith("train: collapsed: val macro-F1 0.250 is at or below 0.250") and "\n" not in line
    history[1]["eval_macro_f1"] = 0.9
    summary, _ = training_report(_run(history), "nsoartc", "full", 1, labels, 3)
    assert summary["collapsed"] is False and collapse_line(summary, labels, 3) is None


def test_best_on_val_reports_the_best_epoch():
    history = [{"loss": 1.0, "epoch": 1.0}, {"eval_loss": 0.9, "eval_macro_f1": 0.5, "epoch": 1.0},
               {"loss": 0.8, "epoch": 2.0}, {"eval_loss": 0.7, "eval_macro_f1": 0.8, "epoch": 2.0},
               {"loss": 0.6, "epoch": 3.0}, {"eval_loss": 0.8, "eval_macro_f1": 0.8, "epoch": 3.0}]
    summary, _ = training_report(_run(history), "nsoartc", "full", 1, best_on_val=True)
    assert summary["epochs"] == 3 and summary["best_epoch"] == 2 and summary["val"] == {"loss": 0.7, "macro_f1": 0.8}
    assert "best_epoch" not in training_report(_run(history), "nsoartc", "full", 1)[0]


def test_a_resumed_run_with_every_lever_on_ends_with_the_same_weights(tiny_data, tmp_path, monkeypatch):
    """conv stem, shift, label smoothing, linear schedule and best-on-val: stopped after epoch 1, then resumed."""
    from pathlib import Path

    from vitinspect.config.params import params_from_dict as build
    from vitinspect.core.storage import load_dataset_dir
    from vitinspect.model import training
    from vitinspect.model.training_run import initial_model, run_training, training_data

    p = build(tiny_dict(model={"stem": "conv"}, train={"epochs": 2, "shift_px": 2, "label_smoothing": 0.1, "best_on_val": True,
                                                      "schedule": "linear", "device": "cpu"}))
    data = training_data(load_dataset_dir(tiny_data / "nsoartc"), p.train)
    monkeypatch.chdir(tmp_path)

    def train(ck):
        model, spec = initial_model(p.model, p.train.seed, data, "", "")
        return run_training(model, spec, data, p.train, p.finetune, "passed", Path(ck), "live")

    whole = train("a")
    with monkeypatch.context() as m:
        def stop_after_one(self, args, state, control, logs=None, **kw):
            control.should_training_stop = bool(state.epoch and state.epoch >= 1)
        m.setattr(training.StopOnNonFinite, "on_log", stop_after_one)
        train("b")
    resumed = train("b")
    assert resumed.resumed and resumed.trainer.state.best_model_checkpoint
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
