"""The unit-space gate: fitted and thresholded on good parts alone, it rejects what is unlike every good part and
passes a good part moved within the renderer's jitter; the combined verdict and its headline figures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vitinspect.composite.nsoartc import UnitSpace, composite, raw_channels
from vitinspect.config.params import params_from_dict
from vitinspect.core.errors import ParamsError, VitinspectError
from vitinspect.data.geometry import plan
from vitinspect.data.synthetic import render_parts
from vitinspect.evaluation.gate import (Gate, Moves, cell_features, feature_boxes, fit_gate, from_arrays, gate_of, load_gate,
                                        min_good_parts, moved_features, parts_needed, save_gate, split_for, threshold_from_good)
from vitinspect.evaluation.verdict import LOT_KEYS, combined, headline

from conftest import tiny_dict

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]
WINDOW, GAIN, EPS = 5, 24.0, 1e-6


@pytest.fixture(scope="module")
def rig():
    """Rendered parts at the defaults' image size and jitter (64 px, 2 px, 2 x 6 grid), half of them good: their unit
    space, composites and gate (gate.shift_px 2, the default)."""
    data = params_from_dict(tiny_dict(data={"n_images": 240, "passed_ratio": 0.5, "image_size": 64, "jitter_px": 2.0})).data
    labels, splits = plan(data)
    cols = render_parts(data, range(len(labels)), labels)
    views, y = cols["views"], np.array([CLASSES.index(c) for c in labels])
    space = UnitSpace.fit(raw_channels(views[(splits == "train") & (y == 0)], list(data.views), WINDOW, EPS))
    comp = composite(views, list(data.views), space, WINDOW, GAIN, EPS)
    sets = {s: {"label": y[splits == s], "nsoartc": comp[splits == s]} for s in ("train", "val", "test")}
    moves = Moves(space.mean, space.std, GAIN, EPS, 2)
    gate = gate_of(sets, 0, data.grid.rows, data.grid.cols, 0.01, "data/nsoartc", moves)
    return data, space, sets, gate, views[splits == "test"], y[splits == "test"], moves


def _score(rig, views):
    data, space, _, gate, *_ = rig
    return gate.score(composite(views, list(data.views), space, WINDOW, GAIN, EPS))


def test_the_threshold_is_set_without_any_defective_part(rig):
    data, _, sets, gate, _, _, moves = rig
    good_only = {s: {k: v[c["label"] == 0] for k, v in c.items()} for s, c in sets.items()}
    again = gate_of(good_only, 0, data.grid.rows, data.grid.cols, 0.01, "data/nsoartc", moves)
    assert again.threshold == gate.threshold and np.array_equal(again.precision, gate.precision)
    # every good train and val part with its 25 copies moved within +-2 px
    assert gate.held_out["n"] == 25 * int((sets["train"]["label"] == 0).sum() + (sets["val"]["label"] == 0).sum())
    # a good part scores about 1 (MT's MD = D^2 / k), most of the tiny (32 px) test split's defects score far above the threshold
    test = gate.score(sets["test"]["nsoartc"])
    good = sets["test"]["label"] == 0
    assert 0.3 < np.median(test[good]) < 3 and np.median(test[~good]) > 2 * gate.threshold


def test_a_part_unlike_any_good_part_is_rejected_and_a_jittered_good_part_passes(rig, monkeypatch):
    data, _, _, gate, views, _, _ = rig
    blank = np.zeros_like(views[:2])
    grey = np.full_like(views[:2], 128)
    # another product: the same rig, a 3 x 4 terminal grid
    other_data = dataclasses.replace(data, grid=dataclasses.replace(data.grid, rows=3, cols=4), seed=7)
    labels = np.array(["passed"] * 4, dtype=object)
    other = render_parts(other_data, range(4), labels)["views"]
    for what in (blank, grey, other):
        assert (_score(rig, what) > gate.threshold).all()
    # new good parts drawn centred (no jitter), then moved by up to data.jitter_px (2 px: parts are drawn uniformly
    # within +-2 px per axis) in every view, stay good parts
    centred = dataclasses.replace(data, jitter_px=0.0, seed=7)
    fresh = render_parts(centred, range(6), np.array(["passed"] * 6, dtype=object))["views"]
    for shift in [(dy, dx) for dy in (-2, -1, 0, 1, 2) for dx in (-2, -1, 0, 1, 2)]:
        moved = np.roll(fresh, shift, axis=(2, 3))
        assert (_score(rig, moved) <= gate.threshold).all(), (shift, _score(rig, moved))
    # and new good parts drawn at every corner and edge of the renderer's own jitter
    import vitinspect.data.geometry as geometry

    draw = geometry.draw_part
    for jitter in [(jx, jy) for jx in (-2.0, 0.0, 2.0) for jy in (-2.0, 0.0, 2.0)]:
        monkeypatch.setattr(geometry, "draw_part", lambda *a, j=jitter, **k: dataclasses.replace(draw(*a, **k), jitter=j))
        at = render_parts(dataclasses.replace(data, seed=8), range(6), np.array(["passed"] * 6, dtype=object))["views"]
        assert (_score(rig, at) <= gate.threshold).all(), (jitter, _score(rig, at))


def test_a_moved_copy_is_the_composite_made_again_and_copy_0_0_is_the_composite_itself(rig):
    data, space, sets, gate, views, y, moves = rig
    views = views[y == 0][:4]  # good parts: a defect's clipped pixels decode only approximately (the gate learns good ones)
    comp = sets["test"]["nsoartc"][y == 0][:4]
    f = moved_features(comp, data.grid.rows, data.grid.cols, moves)
    assert f.shape == (4, 25, 36) and np.array_equal(f[:, 0], cell_features(comp, data.grid.rows, data.grid.cols))
    assert moved_features(comp, 2, 6, None).shape == (4, 1, 36)
    # a part's copy moved by (dx, dy) is close to the composite of its views moved by the camera
    k = moves.shifts().index((1, -2))
    edge = np.pad(views[:4], ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")[:, :, 2 + 2:2 + 2 + 64, 2 - 1:2 - 1 + 64]
    again = cell_features(composite(edge, list(data.views), space, WINDOW, GAIN, EPS), 2, 6)
    assert np.abs(f[:, k] - again).max() < 0.5, np.abs(f[:, k] - again).max()


def test_the_gate_cuts_each_cell_into_quarters_when_the_good_parts_allow_and_keeps_whole_cells_below(rig):
    data, _, sets, gate, _, _, moves = rig
    assert gate.split == 2 and len(gate.location) == 144 and gate.info()["split"] == 2  # 84 good training parts
    assert parts_needed(2, 6, 2) == 18 and parts_needed(2, 6, 1) == min_good_parts(2, 6) == 12
    assert [split_for(n, 2, 6) for n in (12, 17, 18)] == [1, 1, 2]
    # the quarters tile each cell: 2 x 2 boxes inside it, together covering it exactly
    for size in (32, 64, 65):
        cells, quarters = feature_boxes(size, 2, 6), feature_boxes(size, 2, 6, 2)
        assert len(quarters) == 4 * len(cells) and (quarters[:, 2:] > quarters[:, :2]).all()
        for c, q in zip(cells, quarters.reshape(-1, 4, 4)):
            assert q[:, 0].min() == c[0] and q[:, 1].min() == c[1] and q[:, 2].max() == c[2] and q[:, 3].max() == c[3]
            assert ((q[:, 2] - q[:, 0]) * (q[:, 3] - q[:, 1])).sum() == (c[2] - c[0]) * (c[3] - c[1])
    # 15 good training parts: whole cells (36 features), thresholded the same way
    few = {s: dict(c) for s, c in sets.items()}
    keep = np.flatnonzero(few["train"]["label"] == 0)[:15]
    few["train"] = {k: v[keep] for k, v in few["train"].items()}
    coarse = gate_of(few, 0, data.grid.rows, data.grid.cols, 0.01, "data/nsoartc", moves)
    assert coarse.split == 1 and len(coarse.location) == 36 and coarse.n_fit == 15
    test = coarse.score(sets["test"]["nsoartc"])
    assert np.median(test[sets["test"]["label"] != 0]) > 2 * coarse.threshold
    # a gate written before the cells were cut (9 settings) still loads, as whole cells
    legacy = {**coarse.arrays(), "settings": coarse.arrays()["settings"][:9]}
    assert from_arrays(legacy, "old.npz").split == 1


def test_too_few_good_training_parts_is_one_line_naming_the_count_needed():
    feats = np.random.default_rng(0).normal(size=(11, 36))
    assert min_good_parts(2, 6) == 12
    with pytest.raises(VitinspectError, match=r"^data/nsoartc: the gate's 36 features \(3 channels x 2 x 6 cells of data.grid\) "
                                              r"need at least 12 good training parts, there are 11; raise data.passed_ratio"):
        fit_gate(feats, feats[:3], 2, 6, 0.01, "data/nsoartc")
    with pytest.raises(VitinspectError, match=r"\(18 give it each cell's quarters, 144 features, the finer gate\)$"):
        fit_gate(feats, feats[:3], 2, 6, 0.01, "data/nsoartc")
    fit_gate(np.random.default_rng(1).normal(size=(12, 36)), feats[:0], 2, 6, 0.01, "x")  # 12 is enough, no val part needed
    with pytest.raises(ParamsError, match=r"need at least 12 good training parts, there are 4"):
        params_from_dict(tiny_dict(data={"n_images": 200, "passed_ratio": 0.03}))


def test_the_threshold_is_the_larger_of_the_log_normal_and_the_empirical_quantile():
    d = np.exp(np.random.default_rng(0).normal(size=500))
    t = threshold_from_good(d, 0.01)
    assert t == pytest.approx(max(np.exp(np.log(d).mean() + 2.326348 * np.log(d).std(ddof=1)), np.quantile(d, 0.99)), rel=1e-6)
    heavy = np.concatenate([np.ones(95), np.full(5, 100.0)])  # a heavy tail: the empirical quantile wins
    assert threshold_from_good(heavy, 0.01) == pytest.approx(100.0)


def test_the_gate_comes_back_from_its_file_bit_for_bit_and_a_bad_one_is_one_line(rig, tmp_path):
    gate = rig[3]
    save_gate(gate, tmp_path / "gate.npz")
    back = load_gate(tmp_path / "gate.npz")
    comp = rig[2]["test"]["nsoartc"]
    assert np.array_equal(back.score(comp), gate.score(comp)) and back.threshold == gate.threshold and back.held_out == gate.held_out
    assert back.shift_px == 2 and back.info()["shift_px"] == 2 and back.split == gate.split == 2
    bad = {**gate.arrays(), "precision": np.full_like(gate.precision, np.nan)}
    with pytest.raises(VitinspectError, match=r"^models/gate.npz: not a gate \(the location, precision and settings must be finite"):
        from_arrays(bad, "models/gate.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(VitinspectError, match=r"junk.npz: not a gate written by the evaluate stage"):
        load_gate(tmp_path / "junk.npz")


def test_cell_features_are_the_mean_distance_from_mid_grey_per_cell_and_channel():
    img = np.full((1, 32, 32, 3), 128, np.uint8)
    img[0, :, :, 1] = 138
    f = cell_features(img, 2, 6).reshape(12, 3)
    assert np.allclose(f[:, 0], 0) and np.allclose(f[:, 1], 10) and np.allclose(f[:, 2], 0)


def test_the_combined_verdict_passes_what_the_gate_accepts_and_names_the_classifiers_defect():
    proba = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.2, 0.6, 0.1], [0.9, 0.02, 0.03, 0.05]])
    assert combined(proba, np.array([True, True, False]), CLASSES, "passed").tolist() == [0, 0, 3]
    g = Gate(np.zeros(3), np.eye(3), 1.0, 1, 1, 0.01, 0.1, 10, {"k": 0, "n": 10})
    assert g.accepts(np.array([1.0, 1.0001])).tolist() == [True, False]


def test_the_lot_headline_holds_the_combined_rates_with_their_upper_bounds():
    from vitinspect.evaluation.decision import evaluation_detail
    from vitinspect.evaluation.verdict import blocks

    y = np.array([0] * 8 + [1, 2])
    proba = np.tile([0.1, 0.3, 0.3, 0.3], (10, 1))
    g = Gate(np.zeros(3), np.eye(3), 1.0, 1, 1, 0.01, 0.1, 10, {"k": 0, "n": 10})
    detail = evaluation_detail(y, proba, CLASSES, 0.5)
    detail.update(blocks(y, proba, np.array([0.5] * 7 + [2.0] + [3.0, 0.2]), g, CLASSES, "passed"))
    lot = headline(detail, bounds=True)
    assert set(lot) == set(LOT_KEYS) and lot["false_reject_rate"] == 0.125 and lot["escapes_per_million"] == 500000.0
    assert lot["classifier_false_reject_rate"] == 1.0 and 0.125 < lot["false_reject_rate_high"] < 1
    assert set(headline(detail)) == set(LOT_KEYS) - {"escapes_per_million_high", "false_reject_rate_high"} | {
        "classifier_accuracy", "classifier_macro_f1_defects"}


def test_gate_shift_px_is_checked_by_the_params_schema():
    assert params_from_dict(tiny_dict()).gate.shift_px == 2
    for value, message in [(8, r"gate.shift_px \(8\) must be under a quarter of data.image_size \(32\)"),
                           (-1, r"gate.shift_px.*must be an integer in \[0, 64\] px, got -1"), (1.5, r"gate.shift_px")]:
        with pytest.raises(ParamsError, match=message):
            params_from_dict(tiny_dict(gate={"shift_px": value}))
