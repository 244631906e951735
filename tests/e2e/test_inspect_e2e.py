"""`vitinspect inspect`: the bundle stage, both engines, the OOD guard, bad parts, render, watch, explain."""

from __future__ import annotations

import csv

import pytest



pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


def test_bundle_stage_is_in_the_pipeline(project):
    """dvc repro built the bundle; inspect runs on it from the project folder with the default --bundle."""
    assert (project / "models/bundle/bundle.json").exists() and (project / "metrics/ood.json").exists()
    from conftest import run

    run("python -m vitinspect render --n 3 --out lot", project)
    proc = run("python -m vitinspect inspect lot --out lot/results.csv", project)
    assert len(list(csv.DictReader(open(project / "lot/results.csv")))) == 3, proc.stdout


