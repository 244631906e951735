"""The synthetic parts: exact class sizes, masks on the defective terminal, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import replace
from vitinspect.data import geometry, layout, render2d, synthetic


@pytest.mark.parametrize("n,ratio", [(3000, 0.02), (1000, 0.2), (137, 0.05), (50, 0.5)])
def test_passed_ratio_is_exact(n, ratio):
    counts = layout.class_counts(n, ["passed", "tilt_x", "tilt_y", "retracted"], ratio)
    assert counts["passed"] == round(ratio * n)
    assert sum(counts.values()) == n
    defects = [counts[c] for c in ("tilt_x", "tilt_y", "retracted")]
    assert max(defects) - min(defects) <= 1


def test_generated_counts_and_stratified_splits(tiny_params):
    cols = synthetic.generate(tiny_params.data)
    labels, splits = np.asarray(cols["label"]), np.asarray(cols["split"])
    assert (labels == "passed").sum() == round(0.2 * 120)
    for c in ("passed", "tilt_x"):
        n = (labels == c).sum()
        assert abs((splits[labels == c] == "train").sum() - 0.7 * n) <= 1
    assert cols["views"].shape == (120, 3, 32, 32) and cols["views"].dtype == np.uint8


def test_masks_lie_on_the_defective_terminal(tiny_params):
    p = replace(tiny_params.data, jitter_px=0.0, image_size=64)
    cols = synthetic.generate(p)
    geom = geometry.Geometry(p.image_size, p.grid.rows, p.grid.cols)
    bases = geom.bases()
    for i, label in enumerate(cols["label"]):
        mask = cols["mask"][i].astype(bool)
        k = cols["defect_terminal"][i]
        if label == "passed":
            assert k == -1 and not mask.any()
            continue
        assert mask.any()
        # The tip of the defective post, in the centre view, is inside the mask ...
        tip = bases[k] + cols["tilt"][i] * geom.pitch
        assert mask[int(tip[1]), int(tip[0])]
        # ... and no other terminal's centre is.
        for j, (x, y) in enumerate(bases):
            if j != k:
                assert not mask[int(y), int(x)], (label, k, j)
        x0, y0, x1, y1 = cols["bbox"][i]
        assert mask[y0:y1, x0:x1].sum() == mask.sum()


def test_retraction_shows_as_parallax_in_side_views_only():
    geom = geometry.Geometry(64, 2, 6)
    good = geometry.Part("passed", -1, (0.0, 0.0), 0.0, (0.0, 0.0), 1.0)
    short = geometry.Part("retracted", 3, (0.0, 0.0), 0.5, (0.0, 0.0), 1.0)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    centre_diff = np.abs(render2d.render_view(geom, good, "center", rng(), 0, 0) - render2d.render_view(geom, short, "center", rng(), 0, 0))
    left_diff = np.abs(render2d.render_view(geom, good, "left", rng(), 0, 0) - render2d.render_view(geom, short, "left", rng(), 0, 0))
    assert left_diff.sum() > 2 * centre_diff.sum() > 0


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_params):
    a = synthetic.generate(tiny_params.data)
    b = synthetic.generate(tiny_params.data)
    c = synthetic.generate(replace(tiny_params.data, seed=1))
    for key in ("views", "mask", "tilt", "retraction", "defect_terminal"):
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes()
    assert a["label"] == b["label"] and a["split"] == b["split"]
    assert a["views"].tobytes() != c["views"].tobytes()
