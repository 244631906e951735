"""data.renderer: blender: validation (no bpy needed), the rig's geometry, and, where bpy is installed
(pip install .[blender]), determinism, the mask and the same columns as the 2-D renderer."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from vitinspect.data import blender_rig
from vitinspect.data.blender_rig import HEIGHT, PITCH, Rig, posts_in_view, project
from vitinspect.config.params import ParamsError, defaults_dict, params_from_dict


def blender_params(**changes) -> dict:
    """The defaults with data.renderer blender and ``changes`` (dotted keys under data)."""
    d = copy.deepcopy(defaults_dict())
    d["data"]["renderer"] = "blender"
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = d["data"]
        for k in parents:
            node = node[k]
        node[leaf] = value
    return d


@pytest.fixture
def with_bpy(monkeypatch):
    """Validation as where bpy is installed, whether or not it is here."""
    monkeypatch.setattr(blender_rig, "bpy_available", lambda: True)


def refused(d) -> str:
    with pytest.raises(ParamsError) as err:
        params_from_dict(d)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300
    return msg


# ------------------------------------------------------------------ validate

def test_no_bpy_is_one_line_saying_how_to_install(monkeypatch):
    monkeypatch.setattr(blender_rig, "bpy_available", lambda: False)
    assert "pip install .[blender]" in refused(blender_params())


def test_the_2d_default_needs_no_bpy(monkeypatch):
    monkeypatch.setattr(blender_rig, "bpy_available", lambda: False)
    p = params_from_dict(defaults_dict())
    assert p.data.renderer == "2d" and p.data.blender.samples == 8 and p.data.blender.device == "auto"


def test_folders_source_ignores_the_renderer(monkeypatch, tmp_path):
    monkeypatch.setattr(blender_rig, "bpy_available", lambda: False)
    d = blender_params(source="folders", **{"folders.path": str(tmp_path)})
    assert params_from_dict(d).data.renderer == "blender"


@pytest.mark.parametrize("key, value, fragment", [
    ("blender.samples", 0, "data.blender.samples must be positive, got 0"),
    ("blender.samples", -4, "data.blender.samples must be positive"),
    ("blender.samples", 2.5, "data.blender.samples must be an integer"),
    ("blender.device", "tpu", "data.blender.device must be one of"),
    ("blender.threads", 0, "data.blender.threads must be positive"),
    ("blender.samples", 4097, "data.blender.samples must be at most 4,096 (Cycles' own default for a final render"),
    ("blender.threads", 10**6, "data.blender.threads must be at most 1,024 (Blender's own limit on render threads), got 1000000"),
    ("blender.angle", 0, "data.blender.angle must be in (0, 60]"),
    ("blender.angle", 75, "data.blender.angle must be in (0, 60]"),
    ("blender.rotation", -1, "data.blender.rotation must be in [0, 10]"),
    ("blender.aim", [1.0], "data.blender.aim must be a list of 2"),
    ("blender.denoise", "yes", "data.blender.denoise must be true or false"),
    ("renderer", "3d", "data.renderer must be one of ['2d', 'blender']"),
])
def test_bad_blender_setting_is_one_line(with_bpy, key, value, fragment):
    assert fragment in refused(blender_params(**{key: value}))


@pytest.mark.parametrize("aim, view", [([8.0, 0.0], "left"), ([0.0, -6.0], "left"), ([-60.0, 40.0], "left")])
def test_a_camera_aimed_off_the_grid_is_refused(with_bpy, aim, view):
    msg = refused(blender_params(**{"blender.aim": aim}))
    assert f"camera {view!r} sees" in msg and "of the 12 posts" in msg and "data.blender" in msg


def test_a_top_camera_aimed_off_a_tall_grid_is_refused(with_bpy):
    d = blender_params(views=["center", "top", "bottom"], **{"grid.rows": 6, "grid.cols": 2, "blender.aim": [0.0, 5.0]})
    assert "camera 'top' sees" in refused(d)


def test_a_slight_aim_and_steep_angle_still_see_every_post(with_bpy):
    p = params_from_dict(blender_params(**{"blender.aim": [0.5, 0.3], "blender.angle": 45.0}))
    assert p.data.blender.angle == 45.0


@pytest.mark.parametrize("change, fragment", [
    ({}, "pip install .[blender]"),
    ({"blender.samples": 0}, "data.blender.samples must be positive"),
    ({"blender.aim": [0.0, 9.0]}, "sees 0 of the 12 posts"),
])
def test_the_validate_stage_says_it_in_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys, change, fragment):
    import yaml

    from conftest import load_stage
    from vitinspect.core import runtime

    monkeypatch.setattr(blender_rig, "bpy_available", lambda: bool(change))
    monkeypatch.chdir(tmp_path)  # the project: outputs must lie inside it
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(blender_params(**change), sort_keys=False))
    out = tmp_path / "data" / "ok.json"
    with pytest.raises(SystemExit) as exit_:
        runtime.run_stage(load_stage("validate").main, ["--params", "params.yaml", "--out", "data/ok.json"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and fragment in err and len(err.splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------ geometry (numpy, no bpy)

def test_every_camera_sees_every_post_at_the_defaults():
    for rows, cols in ((2, 6), (1, 1), (5, 5), (3, 8)):
        rig = Rig(rows, cols, ("center", "left", "right", "top", "bottom"), 20.0, (0.0, 0.0))
        for view in rig.views:
            assert posts_in_view(rig, view) == rows * cols, (rows, cols, view)


def test_centre_camera_maps_the_grid_like_the_2d_renderer():
    """Grid centre in the image centre, row-major posts left to right and top to bottom, the frame 1.25
    x max(rows, cols, 3) pitches wide at the housing top."""
    from vitinspect.data.geometry import Geometry

    rig = Rig(2, 6, ("center",), 20.0, (0.0, 0.0))
    uv = project(rig, "center", rig.bases(), 64)
    np.testing.assert_allclose(uv, Geometry(64, 2, 6).bases(), atol=1e-6)


def test_side_cameras_shift_a_tip_by_about_the_2d_parallax():
    """A tip seen from a side camera moves against its base by about 0.43 pitch (the 2-D renderer's 0.45),
    opposite ways in opposite cameras, and a retracted (shorter) post's tip moves less."""
    rig = Rig(2, 6, ("left", "right"), 20.0, (0.0, 0.0))
    base, tip, low = np.zeros((1, 3)), np.array([[0, 0, HEIGHT]]), np.array([[0, 0, 0.5 * HEIGHT]])
    px_per_pitch = 64 / rig.frame * PITCH
    shifts = {}
    for view in ("left", "right"):
        b, t, q = (project(rig, view, x, 64)[0] for x in (base, tip, low))
        shifts[view] = (t - b) / px_per_pitch
        assert abs((q - b)[0]) < abs((t - b)[0])
    assert 0.35 < abs(shifts["left"][0]) < 0.5 and abs(shifts["left"][1]) < 0.01
    assert np.sign(shifts["left"][0]) == -np.sign(shifts["right"][0])


# ------------------------------------------------------------------ rendering (needs bpy)

def _data(**changes):
    base = params_from_dict(blender_params(image_size=32, **{"blender.samples": 2})).data
    return dataclasses.replace(base, **changes)


def test_same_seed_same_bytes_and_the_2d_columns():
    pytest.importorskip("bpy")
    from vitinspect.data.geometry import plan
    from vitinspect.data.synthetic import render_parts

    d = _data(n_images=40, passed_ratio=0.1)
    labels, _ = plan(d)
    pick = [int(np.flatnonzero(labels == c)[0]) for c in ("passed", "tilt_x", "tilt_y", "retracted")]
    a = render_parts(d, pick, labels)
    b = render_parts(d, pick[::-1], labels)  # another order: each part from its own generator
    flat = dataclasses.replace(d, renderer="2d")
    ref = render_parts(flat, pick, labels)
    assert set(a) == set(ref)
    for key in ref:
        got, want = np.asarray(a[key]), np.asarray(ref[key])
        assert got.dtype == want.dtype and got.shape == want.shape, key
    for key in ("views", "mask", "bbox", "tilt", "retraction", "defect_terminal"):
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key])[::-1].tobytes(), key
    assert a["id"] == ref["id"] and a["label"] == ref["label"]
    np.testing.assert_array_equal(a["tilt"], ref["tilt"])  # the same draws as the 2-D renderer
    assert a["mask"][0].sum() == 0 and all(a["mask"][k].sum() > 0 for k in (1, 2, 3))
    assert a["views"].std() > 5  # not a blank frame
    # the mask sits on the defective post: near where the 2-D renderer puts that post
    for k in (1, 2, 3):
        ys, xs = np.nonzero(a["mask"][k])
        yr, xr = np.nonzero(ref["mask"][k])
        assert abs(xs.mean() - xr.mean()) < 4 and abs(ys.mean() - yr.mean()) < 4


def test_another_seed_other_bytes():
    pytest.importorskip("bpy")
    from vitinspect.data.geometry import plan
    from vitinspect.data.synthetic import render_parts

    d = _data(n_images=12)
    labels, _ = plan(d)
    a = render_parts(d, [0, 1], labels)["views"]
    b = render_parts(dataclasses.replace(d, seed=5), [0, 1], labels)["views"]
    assert a.tobytes() != b.tobytes()


def _render_in_child(data, labels, queue):
    from vitinspect.data.synthetic import render_parts

    try:
        render_parts(data, [0], labels)
        queue.put("rendered")
    except Exception as exc:  # what the child says, not a hang
        queue.put(f"{type(exc).__name__}: {exc}")


def test_a_process_forked_after_blender_started_says_so_instead_of_hanging():
    pytest.importorskip("bpy")
    import multiprocessing

    from vitinspect.data.geometry import plan
    from vitinspect.data.synthetic import render_parts

    d = _data(n_images=12)
    labels, _ = plan(d)
    render_parts(d, [0], labels)  # Blender starts in this process
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_render_in_child, args=(d, labels, queue))
    child.start()
    said = queue.get(timeout=60)
    child.join(10)
    assert said.startswith("BlenderError") and "forked" in said
