"""data.parts_dataset: every part's class and split, then the parts made in chunks as Arrow files."""

from __future__ import annotations

import numpy as np

from vitinspect.config.sizing import split_counts
from vitinspect.data.parts_dataset import make_parts, plan_parts


def test_the_rendered_parts_follow_the_plan_split_by_split(tiny_params, tmp_path):
    d = tiny_params.data
    plan = plan_parts(d)
    assert len(plan.labels) == len(plan.splits) == d.n_images and plan.scanned is None
    firsts = plan.firsts()
    assert [plan.labels[i] for i in firsts] == list(d.classes)
    assert plan.columns(firsts)["views"].shape == (len(d.classes), len(d.views), d.image_size, d.image_size)
    ds, meta = make_parts(plan, tmp_path, 1)
    assert meta == {}
    counts = split_counts(d)
    for split, by_class in counts.items():
        labels = np.asarray(ds[split]["label"])
        assert {c: int((labels == k).sum()) for k, c in enumerate(d.classes)} == by_class
