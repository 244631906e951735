"""`vitinspect inspect`: the bundle stage, both engines, the OOD guard, bad parts, render, watch, explain."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import _bundle_args, load_stage

from vitinspect.deploy import bundle as bundle_format
from vitinspect.app.command import main as cli_main


def _test_split(d: Path):
    from vitinspect.data.arrow import columns
    from vitinspect.core.storage import load_dataset_dir

    cols = columns(load_dataset_dir(d / "parts")["test"], ["views", "label"])
    return {"views": cols["views"].astype(np.uint8), "label": cols["label"].astype(int)}


def _wilson(k, n):
    from vitinspect.deploy.ood_guard import rate

    r = rate(k, n)
    return r["low"], r["high"]


def test_bundle_holds_every_piece_and_its_vit_loads_with_one_call(tiny_bundle, tiny_data):
    import torch

    from vitinspect.model.prediction import to_pixel_values
    from vitinspect.model.vit import load_trained, trained_input

    m = json.loads((tiny_bundle / "bundle.json").read_text())
    assert m["views"] == ["center", "left", "right"] and m["classes"][0] == "passed"
    assert m["nsoartc"] == {"window": 5, "gain": 24.0, "eps": 1e-06}
    assert m["operating_point"]["threshold"] is None  # no operating point given: argmax
    assert m["ood"]["alpha"] == 0.005 and math.isfinite(m["ood"]["threshold"])
    for f in m["files"]:
        assert (tiny_bundle / f).exists(), f
    b = bundle_format.load(tiny_bundle)
    assert b.unit.mean.shape == (3, 32, 32)
    vit = load_trained(tiny_bundle / "vit")  # the default conv stem: the one documented call (docs/inspection.md)
    _, spec = trained_input(vit, tiny_bundle / "vit")
    from vitinspect.deploy.engine import composite

    images, _ = composite(b, _test_split(tiny_data)["views"][:2])
    with torch.no_grad():
        logits = vit(pixel_values=to_pixel_values(images, spec)).logits
    assert logits.shape == (2, len(b.classes)) and [vit.config.id2label[i] for i in range(len(b.classes))] == b.classes


def test_operating_point_threshold_decides_passed(trained_model, tmp_path):
    from vitinspect.evaluation.decision import decide  # the one rule the engine decides with

    proba = np.array([[0.30, 0.50, 0.10, 0.10], [0.10, 0.20, 0.60, 0.10], [0.70, 0.1, 0.1, 0.1]])
    classes = ["passed", "tilt_x", "tilt_y", "retracted"]
    assert list(decide(proba, classes, None, "passed")) == [1, 2, 0]
    assert list(decide(proba, classes, 0.25, "passed")) == [0, 2, 0]
    assert list(decide(proba, classes, 0.8, "passed")) == [1, 2, 1]
    d, model = trained_model
    op = tmp_path / "operating_point.json"
    op.write_text(json.dumps({"class": "passed", "threshold": 0.4, "rule": "passed when p(passed) >= t"}))
    stage = load_stage("bundle")
    assert stage.read_operating_point(str(op), classes)["threshold"] == 0.4
    op.write_text(json.dumps({"class": "passed", "threshold": 1.5}))
    from vitinspect.core.errors import VitinspectError

    with pytest.raises(VitinspectError, match="operating_point.json"):
        stage.read_operating_point(str(op), classes)


def test_onnx_matches_torch_on_the_test_split(tiny_bundle, tiny_data):
    from vitinspect.deploy.engine import OnnxEngine, TorchEngine, judge

    b = bundle_format.load(tiny_bundle)
    views = _test_split(tiny_data)["views"]
    t, o = judge(b, TorchEngine(b), views), judge(b, OnnxEngine(b), views)
    assert np.abs(t.proba - o.proba).max() <= 1e-4
    assert list(t.verdict) == list(o.verdict) and list(t.cls) == list(o.cls)
    assert np.allclose(t.ood_score, o.ood_score, atol=1e-3)


def test_onnx_engine_imports_no_torch(tiny_bundle, tmp_path):
    assert cli_main(["render", "--n", "2", "--out", str(tmp_path / "lot"), "--bundle", str(tiny_bundle)]) == 0
    code = ("import sys; from vitinspect.__main__ import main; rc = main(['inspect', sys.argv[1], '--bundle', sys.argv[2]]); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print('IMPORTED', bad); sys.exit(rc or (3 if bad else 0))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lot"), str(tiny_bundle)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IMPORTED []" in proc.stdout


def test_inspect_from_files_matches_evaluate_on_the_test_split(tiny_bundle, trained_model, tmp_path):
    """The test split's own views, written as part folders, get evaluate's probabilities back (PNG is lossless)."""
    from PIL import Image

    from vitinspect.model.prediction import model_and_test_split, predict_proba, to_pixel_values

    d, model_dir = trained_model
    model, input_name, spec, classes, cols = model_and_test_split(d / "nsoartc", model_dir, ["id"])
    expected = predict_proba(model, to_pixel_values(cols[input_name], spec))
    from vitinspect.data.arrow import columns
    from vitinspect.core.storage import load_dataset_dir

    parts = columns(load_dataset_dir(d / "parts")["test"], ["id", "views"])
    assert list(parts["id"]) == list(cols["id"])
    lot = tmp_path / "lot"
    for i, part in enumerate(parts["views"].astype(np.uint8)):
        (lot / f"p{i:04d}").mkdir(parents=True)
        for name, img in zip(["center", "left", "right"], part):
            Image.fromarray(img).save(lot / f"p{i:04d}" / f"{name}.png")
    assert cli_main(["inspect", str(lot), "--out", str(tmp_path / "r.json"), "--bundle", str(tiny_bundle)]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())
    got = np.array([[r[f"p_{c}"] for c in classes] for r in rows])
    assert np.abs(got - expected).max() <= 1e-4
    # The bundle's gate scores the same composites evaluate scored (data/nsoartc), to the last part, and the class
    # is the combined verdict's: the good class where the gate accepts, else the most probable defect.
    from vitinspect.deploy.bundle import load
    from vitinspect.evaluation.verdict import combined

    gate = load(tiny_bundle).gate
    scores = gate.score(columns(load_dataset_dir(d / "nsoartc")["test"], ["nsoartc"])["nsoartc"])
    assert np.abs(np.array([r["gate_score"] for r in rows]) - scores).max() <= 1e-6
    assert [r["class"] for r in rows] == [classes[k] for k in combined(expected, gate.accepts(scores), classes, "passed")]


def test_render_then_inspect_agrees_with_truth_as_the_test_split_says(tiny_bundle, tiny_data, tmp_path, capsys):
    """The lot's accuracy and the model's test-split accuracy: each inside the other's 95 % interval."""
    from vitinspect.deploy.engine import OnnxEngine, judge

    lot, results = tmp_path / "lot", tmp_path / "results.csv"
    assert cli_main(["render", "--n", "60", "--out", str(lot), "--seed", "7", "--bundle", str(tiny_bundle)]) == 0
    assert cli_main(["inspect", str(lot), "--out", str(results), "--bundle", str(tiny_bundle)]) == 0
    with open(lot / "truth.csv", newline="") as fh:
        truth = {Path(r["part"]).name: r["label"] for r in csv.DictReader(fh)}
    rows = list(csv.DictReader(open(results)))
    assert len(rows) == 60 and all(not r["error"] for r in rows)
    hits = sum(truth[Path(r["part"]).name] == r["class"] for r in rows)

    b = bundle_format.load(tiny_bundle)
    test = _test_split(tiny_data)
    j = judge(b, OnnxEngine(b), test["views"])
    k = int(sum(np.asarray(b.classes)[test["label"]] == j.cls))
    n = len(test["label"])
    lot_lo, lot_hi = _wilson(hits, 60)
    test_lo, test_hi = _wilson(k, n)
    # At tiny params the model is weak, so this is loose; the per-part match with evaluate (above) is the strict check.
    assert lot_lo <= k / n <= lot_hi and test_lo <= hits / 60 <= test_hi, (hits, k, n)


def test_bad_parts_get_error_rows_and_the_rest_are_judged(tiny_bundle, tmp_path):
    from PIL import Image

    lot = tmp_path / "lot"
    assert cli_main(["render", "--n", "6", "--out", str(lot), "--bundle", str(tiny_bundle)]) == 0
    parts = sorted(p for p in lot.iterdir() if p.is_dir())
    (parts[0] / "left.png").unlink()  # missing view
    (parts[1] / "right.png").write_bytes(b"not an image")  # unreadable
    Image.fromarray(np.zeros((30, 32), np.uint8)).save(parts[2] / "center.png")  # views of different sizes
    for v in ("center", "left", "right"):  # another size: fitted to the bundle's as at training (images.fit_square)
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(parts[3] / f"{v}.png")
    out = tmp_path / "r.json"
    assert cli_main(["inspect", str(lot), "--out", str(out), "--bundle", str(tiny_bundle)]) == 1
    rows = {Path(r["part"]).name: r for r in json.loads(out.read_text())}
    assert "missing view 'left'" in rows[parts[0].name]["error"]
    assert "right.png: unreadable image" in rows[parts[1].name]["error"]
    assert "views differ in size" in rows[parts[2].name]["error"]
    for p in parts[3:]:
        assert rows[p.name]["error"] == "" and rows[p.name]["verdict"] in ("pass", "reject", "unknown")
    assert cli_main(["inspect", str(parts[5]), "--bundle", str(tiny_bundle)]) == 0


@pytest.mark.parametrize("argv, fragment", [
    (["inspect", "nowhere/"], "nowhere: no such part folder"),
    (["inspect", ".", "--bundle", "no_bundle"], "bundle.json missing"),
    (["inspect", ".", "--engine", "tensorrt"], "arguments: argument --engine"),
    (["inspect", ".", "--out", "r.txt"], "must end in .csv or .json"),
    (["render", "--n", "0", "--out", "lot"], "--n must be a positive integer"),
])
def test_bad_arguments_or_bundle_one_line_exit_2(tiny_bundle, in_tmp, argv, fragment):
    if "--bundle" not in argv and argv[0] == "inspect":
        argv = argv + ["--bundle", str(tiny_bundle)]
    if argv[0] == "render":
        argv = argv + ["--bundle", str(tiny_bundle)]
    proc = subprocess.run([sys.executable, "-m", "vitinspect", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr


def test_corrupt_bundle_is_exit_2(tiny_bundle, tmp_path):
    import shutil

    bad = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bad)
    (bad / "unit_space.npz").write_bytes(b"garbage")
    assert cli_main(["inspect", str(tmp_path), "--bundle", str(bad)]) == 2
    shutil.copy(tiny_bundle / "unit_space.npz", bad / "unit_space.npz")
    (bad / "model.onnx").write_bytes(b"garbage")
    assert cli_main(["inspect", str(tmp_path), "--bundle", str(bad)]) == 2


def test_ood_guard_flags_probes_and_spares_in_distribution_parts(tiny_bundle, tiny_data):
    """The promise (>= 95 % of probes flagged, <= 1 % of test parts) measured on the set the stage builds."""
    from vitinspect.deploy.engine import OnnxEngine, judge
    from vitinspect.config.params import load_params
    from vitinspect.deploy.probes import ood_probes

    b = bundle_format.load(tiny_bundle)
    p = load_params(tiny_data / "params.yaml")
    engine = OnnxEngine(b)
    views = _test_split(tiny_data)["views"]
    probes = ood_probes(views, p.data, p.bundle.shift_px, p.data.seed, p.bundle.probes_per_kind)
    flagged = {k: judge(b, engine, v).ood_flag for k, v in probes.items()}
    total = np.concatenate(list(flagged.values()))
    assert set(flagged) >= {"photo", "blank", "noise", "swapped", "shifted_all", "shifted_side", "zoom_in", "zoom_out"}
    assert total.mean() >= 0.95, {k: f"{v.sum()}/{len(v)}" for k, v in flagged.items()}
    test_flags = judge(b, engine, views).ood_flag
    assert test_flags.mean() <= 0.01 + 1e-9, f"{test_flags.sum()}/{len(test_flags)}"
    report = json.loads((tiny_bundle.parent / "ood_report.json").read_text())  # the stage's own figures agree
    assert report["probes_flagged"]["k"] == int(total.sum()) and report["test_flagged"]["k"] == int(test_flags.sum())
    assert cli_main(["inspect", "--calibration-report", "--bundle", str(tiny_bundle)]) == 0


def test_watch_judges_folders_as_they_appear(tiny_bundle, tmp_path):
    lot, inbox, out = tmp_path / "lot", tmp_path / "inbox", tmp_path / "line.csv"
    inbox.mkdir()
    assert cli_main(["render", "--n", "2", "--out", str(lot), "--bundle", str(tiny_bundle)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "vitinspect", "inspect", "--watch", str(inbox), "--out", str(out),
                             "--bundle", str(tiny_bundle), "--max-parts", "2", "--settle", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import shutil

    for p in sorted(d for d in lot.iterdir() if d.is_dir()):
        time.sleep(0.5)
        shutil.copytree(p, inbox / p.name)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    rows = list(csv.DictReader(open(out)))
    assert [Path(r["part"]).name for r in rows] == ["part-00000", "part-00001"]
    assert all(r["verdict"] in ("pass", "reject", "unknown") for r in rows)


def test_explain_writes_one_png_per_part(tiny_bundle, tmp_path):
    lot = tmp_path / "lot"
    assert cli_main(["render", "--n", "2", "--out", str(lot), "--bundle", str(tiny_bundle)]) == 0
    assert cli_main(["inspect", str(lot), "--explain", str(tmp_path / "why"), "--bundle", str(tiny_bundle)]) == 0
    from vitinspect.app.results import explain_name  # <part>-<hash of its path>.png: unique per part path

    names = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert names == sorted(explain_name(lot / f"part-0000{i}") for i in range(2))
    assert [n.rsplit("-", 1)[0] for n in names] == ["part-00000", "part-00001"]


@pytest.mark.parametrize("breakage, fragment", [
    ("missing_model", "no trained model"),
    ("bad_operating_point", "not an operating point"),
    ("missing_unit_space", "not a unit space"),
])
def test_bundle_stage_bad_input_one_line_nothing_written(trained_model, tmp_path, monkeypatch, breakage, fragment):
    from vitinspect.core.errors import VitinspectError

    d, model = trained_model
    monkeypatch.chdir(tmp_path)
    op = None
    if breakage == "missing_model":
        model = tmp_path / "no_model"
    if breakage == "bad_operating_point":
        op = tmp_path / "op.json"
        op.write_text("{not json")
    args = _bundle_args(d, d / "params.yaml", tmp_path / "out", model, op)
    if breakage == "missing_unit_space":
        args[args.index("--unit-space") + 1] = str(tmp_path / "none.npz")
    with pytest.raises(VitinspectError, match=fragment) as err:
        load_stage("bundle").main(args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
