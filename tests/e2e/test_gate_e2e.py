"""The bundle's gate agrees with the evaluate stage on the lot to the last part, under both engines (issue 37)."""

from __future__ import annotations

import dataclasses

import numpy as np


def test_the_bundles_gate_agrees_with_evaluate_on_the_lot_under_both_engines(built_project, monkeypatch):
    from vitinspect.config.params import load_params
    from vitinspect.core.storage import load_dataset_dir
    from vitinspect.data.arrow import columns
    from vitinspect.data.geometry import plan
    from vitinspect.data.synthetic import render_parts
    from vitinspect.deploy.engine import judge, open_bundle
    from vitinspect.evaluation.gate import load_gate

    root = built_project
    params = load_params(root / "params.yaml")
    monkeypatch.chdir(root)
    lot = columns(load_dataset_dir(root / "data/lot", splits=("lot",))["lot"], ["label", "nsoartc"])
    evaluate_gate = load_gate(root / "models/gate.npz")
    expected = evaluate_gate.score(lot["nsoartc"])
    # The lot's parts again, as the lot stage drew them (its seed, size and share of good parts), judged from their views.
    data = dataclasses.replace(params.data, seed=params.lot.seed, n_images=params.lot.n_parts, passed_ratio=params.lot.passed_ratio)
    labels, _ = plan(data)
    views = render_parts(data, np.arange(len(labels)), labels)["views"]
    judged = {}
    for name in ("onnx", "torch"):
        bundle, engine = open_bundle(root / "models/bundle", name)
        assert bundle.gate.threshold == evaluate_gate.threshold and np.array_equal(bundle.gate.precision, evaluate_gate.precision)
        judged[name] = judge(bundle, engine, views)
        assert np.array_equal(judged[name].scores["gate"], expected)  # bit for bit: the same composites, the same numpy
        passed = judged[name].cls == params.data.good_class
        assert np.array_equal(passed, evaluate_gate.accepts(expected))
    assert (judged["onnx"].cls == judged["torch"].cls).all() and (judged["onnx"].verdict == judged["torch"].verdict).all()
    # evaluate's own count of the lot's parts the gate rejects is the same
    import json

    report = json.loads((root / "reports/evaluation.json").read_text())
    assert report["lot"]["gate"]["rejected"]["k"] == int((~evaluate_gate.accepts(expected)).sum())
