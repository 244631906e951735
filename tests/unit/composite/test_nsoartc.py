"""RT maps against a direct per-window computation; Double-Eye channels; unit space."""

from __future__ import annotations

import numpy as np
import pytest

from vitinspect.composite.nsoartc import UnitSpace, defect_contrast, double_eye, load_unit_space, rt_maps, save_unit_space, to_image


def direct_rt(x, m, w, eps):
    """The textbook computation, one window at a time (reflect padding = numpy 'symmetric')."""
    h = w // 2
    xp, mp = np.pad(x, h, mode="symmetric"), np.pad(m, h, mode="symmetric")
    beta, y2 = np.zeros_like(x), np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            xs, ms = xp[i:i + w, j:j + w].ravel(), mp[i:i + w, j:j + w].ravel()
            r = (ms ** 2).sum() + eps
            L = (ms * xs).sum()
            beta[i, j] = L / r
            se = max((xs ** 2).sum() - L * L / r, 0.0)
            y2[i, j] = np.sqrt(se / (w * w - 1))
    return beta, y2


@pytest.mark.parametrize("w", [3, 5, 7])
def test_rt_maps_match_direct_computation_dark_windows_included(w):
    rng = np.random.default_rng(w)
    x, m = rng.random((13, 17)), rng.random((13, 17))
    m[:6, :6] = 0.0  # a dark, flat corner: r ~ 0
    x[:4, :4] = 0.0
    beta, y2 = rt_maps(x, m, w, eps=1e-6)
    b_ref, y_ref = direct_rt(x, m, w, 1e-6)
    assert np.all(np.isfinite(beta)) and np.all(np.isfinite(y2))
    np.testing.assert_allclose(beta, b_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y2, y_ref, rtol=1e-5, atol=1e-6)


def test_rt_maps_batched_equals_one_by_one_and_rejects_even_windows():
    rng = np.random.default_rng(0)
    x, m = rng.random((3, 10, 10)), rng.random((3, 10, 10))
    beta, y2 = rt_maps(x, m, 5)
    for i in range(3):
        b, y = rt_maps(x[i], m[i], 5)
        np.testing.assert_allclose(beta[i], b)
        np.testing.assert_allclose(y2[i], y)
    with pytest.raises(ValueError, match="odd"):
        rt_maps(x, m, 4)


def test_identical_views_give_beta_one_and_no_noise():
    rng = np.random.default_rng(1)
    c = rng.random((2, 12, 12)) + 0.5
    beta, y2 = rt_maps(c, c, 5)
    np.testing.assert_allclose(beta, 1.0, atol=1e-5)
    np.testing.assert_allclose(y2, 0.0, atol=1e-3)


def test_double_eye_channels():
    rng = np.random.default_rng(2)
    c, l, r = (rng.random((2, 16, 16)) for _ in range(3))
    d = double_eye({"center": c, "left": l, "right": r}, 3)
    bl, yl = rt_maps(l, c, 3, 1e-6)
    br, yr = rt_maps(r, c, 3, 1e-6)
    assert d.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(d[:, 0], bl - br, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d[:, 1], yl - yr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d[:, 2], yl + yr, rtol=1e-5, atol=1e-5)


def test_unit_space_centres_normal_parts_and_flags_an_outlier():
    rng = np.random.default_rng(3)
    normal = rng.normal(0, 1, (200, 3, 8, 8)).astype(np.float32)
    space = UnitSpace.fit(normal)
    z = space.zscore(normal, 1e-6)
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3
    odd = normal[:1].copy()
    odd[0, :, 2:4, 2:4] += 6
    zo = space.zscore(odd, 1e-6)
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    assert defect_contrast(zo, masks) > 4
    img = to_image(zo, 20.0)
    assert img.shape == (1, 8, 8, 3) and img.dtype == np.uint8


def test_std_floor_quiets_a_background_of_noise_and_keeps_where_parts_move(tmp_path):
    # A frame whose left half is background (render noise, std 0.01) and right half a part that moves (std 1):
    # unfloored, the background's noise is unit noise like the part; with the floor it is quiet, the part unchanged.
    rng = np.random.default_rng(4)
    normal = np.concatenate([rng.normal(0, 0.01, (300, 3, 8, 4)), rng.normal(0, 1.0, (300, 3, 8, 4))], axis=-1).astype(np.float32)
    space = UnitSpace.fit(normal)
    assert space.floored(0.0) is space and space.floor is None
    floored = space.floored(0.25)
    top = np.quantile(space.std.reshape(3, -1), 0.99, axis=1)
    np.testing.assert_allclose(floored.floor, 0.25 * top, rtol=1e-6)
    np.testing.assert_allclose(floored.scale[:, :, :4], np.broadcast_to((0.25 * top)[:, None, None], (3, 8, 4)), rtol=1e-6)
    np.testing.assert_array_equal(floored.scale[:, :, 4:], space.std[:, :, 4:])
    np.testing.assert_array_equal(floored.std, space.std)  # the fitted std is kept (the OOD guard reads it)
    np.testing.assert_array_equal(floored.mean, space.mean)
    z, zf = space.zscore(normal, 1e-6), floored.zscore(normal, 1e-6)
    assert np.abs(z[..., :4]).mean() > 0.7 and np.abs(zf[..., :4]).mean() < 0.1
    np.testing.assert_array_equal(z[..., 4:], zf[..., 4:])
    np.testing.assert_allclose(floored.unfloored(zf, 1e-6), z, rtol=1e-5, atol=1e-5)  # back to the fitted std's view
    # a defect in the part's half stands out more against the quiet background
    odd = normal[:1].copy()
    odd[0, :, 2:4, 5:7] += 4
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:4, 5:7] = True
    assert defect_contrast(floored.zscore(odd, 1e-6), masks) > 1.5 * defect_contrast(space.zscore(odd, 1e-6), masks)
    # saved and loaded with its floor; a file without one loads unfloored
    save_unit_space(floored, tmp_path / "u.npz")
    back = load_unit_space(tmp_path / "u.npz")
    np.testing.assert_array_equal(back.floor, floored.floor)
    np.testing.assert_array_equal(back.scale, floored.scale)
    save_unit_space(space, tmp_path / "plain.npz")
    assert load_unit_space(tmp_path / "plain.npz").floor is None
