"""config.sizing: what 'auto' processes mean (the machine's cores, one rule) and the parts per split."""

from __future__ import annotations

from vitinspect.config.sizing import resolve_workers, split_counts
from vitinspect.core import runtime
from vitinspect.data.layout import class_counts


def test_auto_processes_are_the_cores_of_core_runtime(monkeypatch):
    monkeypatch.setattr(runtime, "cores", lambda: 6)
    assert resolve_workers("auto") == 6 and resolve_workers(3) == 3 and resolve_workers("auto", cores=0) == 1


def test_the_splits_share_out_geometry_s_class_counts(tiny_params):
    d = tiny_params.data
    per_class = class_counts(d.n_images, d.classes, d.passed_ratio)
    splits = split_counts(d)
    assert {c: sum(s[c] for s in splits.values()) for c in d.classes} == per_class
