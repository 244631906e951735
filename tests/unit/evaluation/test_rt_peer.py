"""The classical peer: RT features per terminal cell, their unit space, the fitted SVM and its safe loading."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, load_stage, tiny_dict, write_params
from vitinspect.core.errors import VitinspectError
from vitinspect.evaluation.rt_peer import CellUnitSpace, cell_boxes, cell_features, feature_names, load_peer, rt_window, save_peer
from vitinspect.data.geometry import Geometry


def brute_force_rt(x_cell: np.ndarray, m_cell: np.ndarray, eps: float) -> tuple[float, float]:
    """Taguchi's RT for one sample, k values at a time, written out from the definitions."""
    xs, ms = [float(v) for v in x_cell.ravel()], [float(v) for v in m_cell.ravel()]
    k = len(xs)
    r = sum(m * m for m in ms) + eps
    L = sum(m * x for m, x in zip(ms, xs))
    beta = L / r
    st = sum(x * x for x in xs)
    se = max(st - L * L / r, 0.0)
    return beta, (se / (k - 1)) ** 0.5


def test_cells_tile_the_terminal_grid_around_each_base():
    geom = Geometry(64, 2, 6)
    boxes = cell_boxes(64, 2, 6)
    assert boxes.shape == (12, 4)
    for (x0, y0, x1, y1), (bx, by) in zip(boxes, geom.bases()):
        assert x0 <= bx < x1 and y0 <= by < y1  # the terminal's base is inside its own cell
        assert abs((x1 - x0) - geom.pitch) <= 1 and abs((y1 - y0) - geom.pitch) <= 1
    # neighbours in a row share an edge: no gap, no overlap
    assert all(boxes[i, 2] == boxes[i + 1, 0] for i in range(5))
    assert boxes[0, 3] == boxes[6, 1]


def test_features_of_a_hand_built_part_match_a_brute_force_rt_over_its_cells():
    rng = np.random.default_rng(3)
    size, rows, cols, eps = 32, 2, 3, 1e-6
    centre = rng.uniform(0.1, 0.9, (1, size, size))
    left = np.clip(centre * 0.8 + rng.normal(0, 0.05, centre.shape), 0, 1)
    right = np.clip(centre * 1.1 + rng.normal(0, 0.02, centre.shape), 0, 1)
    right[0, :, :8] = 0.0  # a dark strip: one cell's side view sees nothing of the standard
    views = {"center": centre, "left": left, "right": right}
    boxes = cell_boxes(size, rows, cols)
    got = cell_features(views, boxes, eps)
    assert got.shape == (1, rows * cols, 3)
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        bl, yl = brute_force_rt(left[0, y0:y1, x0:x1], centre[0, y0:y1, x0:x1], eps)
        br, yr = brute_force_rt(right[0, y0:y1, x0:x1], centre[0, y0:y1, x0:x1], eps)
        np.testing.assert_allclose(got[0, t], [bl - br, yl - yr, yl + yr], rtol=1e-10, atol=1e-12)
    assert len(feature_names(rows * cols)) == rows * cols * 3


def test_rt_window_of_a_scaled_standard_is_pure_sensitivity():
    m = np.random.default_rng(0).uniform(0.2, 0.8, (4, 5, 5))
    beta, y2 = rt_window(1.7 * m, m, eps=0.0)
    np.testing.assert_allclose(beta, 1.7)
    np.testing.assert_allclose(y2, 0.0, atol=1e-7)


def test_unit_space_zscores_each_cell_and_channel_of_passed_parts():
    f = np.random.default_rng(1).normal(5.0, 2.0, (50, 4, 3))
    space = CellUnitSpace.fit(f)
    z = space.zscore(f, 0.0).reshape(50, 4, 3)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-12)


def test_a_planted_foreign_model_file_is_refused_before_unpickling(tmp_path):
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "svm.joblib"
    digest = save_peer(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    assert load_peer(path, digest).predict([[1.0]])[0] == 1
    # A pickle that would run code when loaded: it must never be unpickled.
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('ran')" % str(tmp_path / "ran.txt"),))

    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(VitinspectError) as err:
        load_peer(path, digest)
    msg = str(err.value)
    assert "\n" not in msg and "refusing to unpickle" in msg and str(path) in msg
    assert not (tmp_path / "ran.txt").exists()


@pytest.fixture(scope="module")
def baseline_run(tiny_data, tmp_path_factory):
    """The baseline stage in-process on the shared tiny data."""
    d = tmp_path_factory.mktemp("baseline")
    params = write_params(d / "params.yaml", baseline={"grid": {"C": [1.0, 10.0], "gamma": [0.01, 0.1]},
                                                      "cnn": {"widths": [4, 8], "epochs": 2, "batch_size": 16, "threads": 1}})
    import os

    old = os.getcwd()
    os.chdir(d)
    try:
        load_stage("lot").main(["--params", str(params), "--unit-space", str(tiny_data / "unit.npz"), "--out", "lot"])
        load_stage("baseline").main(["--params", str(params), "--parts", str(tiny_data / "parts"), "--data", str(tiny_data / "nsoartc"),
                                     "--lot", "lot", "--model", "peer", "--metrics", "baseline.json", "--confusion-records", "records.json",
                                     "--cnn-metrics", "cnn.json", "--cnn-confusion-records", "cnn_records.json",
                                     "--figure", "confusion.png", "--report", "report.json", "--run-info", "run.json"])
    finally:
        os.chdir(old)
    return d


def test_baseline_stage_writes_eval_shaped_metrics_and_hashes_its_models(baseline_run):
    d = baseline_run
    metrics = json.loads((d / "baseline.json").read_text())
    report = json.loads((d / "report.json").read_text())
    records = json.loads((d / "records.json").read_text())
    assert report["input"] == "rt_cells"
    assert set(records[0]) == {"actual", "predicted"}
    # The SVM's own operating point, chosen on val by the ViT's rule: what metrics/baseline.json is at.
    assert report["operating_point"]["chosen_on"] == "val" and metrics["threshold"] == report["operating_point"]["threshold"]
    assert sum(map(sum, report["confusion_matrix"]["counts"])) == len(records)
    assert report["svm"]["chosen"] in [{"C": c, "gamma": g} for c in (1.0, 10.0) for g in (0.01, 0.1)]
    assert len(report["svm"]["grid"]) == 4 and len(report["logistic"]["grid"]) == 2
    assert report["features"]["per_part"] == 3 * 12
    run_info = json.loads((d / "run.json").read_text())  # timings: a log, not the tracked report
    assert run_info["svm"]["predict_ms_per_part"] > 0 and "predict_ms_per_part" not in report["svm"]
    # each peer on the lot (60 parts, 54 good): at its operating point and at the escape target evaluate compares at
    for lot in (report["lot"], report["cnn"]["lot"]):
        assert lot["scored"] and lot["operating_point"]["false_reject"]["n"] == 54 and lot["operating_point"]["escape"]["n"] == 6
        at = lot["at_escape_target"]
        assert at["escapes_allowed"] == 0 and at["escape"]["k"] == 0 and 0 <= at["false_reject"]["k"] <= 54
    for name in ("svm", "logistic"):
        model = load_peer(d / "peer" / f"{name}.joblib", report["models"][name]["sha256"])
        assert hasattr(model, "predict_proba")
    # The same predictions come back from the saved SVM: recompute the accuracy.
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1_defects"] <= 1.0


def test_baseline_stage_trains_the_cnn_peer_and_scores_it_as_the_svm(baseline_run):
    """The CNN's figures hold exactly the SVM's keys, at its own operating point chosen on val; its weights load back."""
    from vitinspect.model.cnn_peer import load_cnn

    d = baseline_run
    svm, cnn = (json.loads((d / name).read_text()) for name in ("baseline.json", "cnn.json"))
    report, records = json.loads((d / "report.json").read_text()), json.loads((d / "cnn_records.json").read_text())
    assert set(cnn) == set(svm) and cnn["threshold"] == report["cnn"]["operating_point"]["threshold"]
    assert report["cnn"]["widths"] == [4, 8] and report["cnn"]["epochs"] == 2 and report["cnn"]["input"] == "nsoartc"
    assert len(records) == len(json.loads((d / "records.json").read_text())) and set(records[0]) == {"actual", "predicted"}
    assert sum(map(sum, report["cnn"]["confusion_matrix"]["counts"])) == len(records)
    assert json.loads((d / "run.json").read_text())["cnn"]["train_wall_seconds"] > 0  # timings: the log only
    assert "train_wall_seconds" not in report["cnn"]
    model = load_cnn(d / "peer" / "cnn")
    assert model.config.widths == [4, 8] and model.config.input_name == "nsoartc"


def test_a_planted_model_file_makes_a_loader_fail_with_one_line(baseline_run, tmp_path):
    """Through a process, the way bench or a user would load it: `error: <file>: ...`, exit 2."""
    d = baseline_run
    report = json.loads((d / "report.json").read_text())
    planted = d / "peer" / "svm.joblib"
    original = planted.read_bytes()
    try:
        planted.write_bytes(original[:-1] + b"\x00")
        code = ("import sys; from vitinspect.core.runtime import run_stage; from vitinspect.evaluation.rt_peer import load_peer\n"
                f"run_stage(lambda argv: load_peer({str(planted)!r}, {report['models']['svm']['sha256']!r}))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    finally:
        planted.write_bytes(original)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {planted}:") and "refusing to unpickle" in lines[0]


def test_baseline_params_are_validated():
    from vitinspect.config.params import ParamsError, params_from_dict

    with pytest.raises(ParamsError, match="baseline.grid.C must hold positive numbers"):
        params_from_dict(tiny_dict(baseline={"grid": {"C": [1.0, -1.0], "gamma": [0.1]}}))
    with pytest.raises(ParamsError, match="baseline.class_weight must be one of"):
        params_from_dict(tiny_dict(baseline={"class_weight": "auto"}))
    with pytest.raises(ParamsError, match="baseline.grid.gamma must not be empty"):
        params_from_dict(tiny_dict(baseline={"grid": {"C": [1.0], "gamma": []}}))
    assert (ROOT / "params.yaml").read_text().count("baseline:") == 1


def test_baseline_stage_reads_the_parts_never_a_model_of_train():
    """(test_deps.py checks the module deps against the AST for every stage.)"""
    import yaml

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["baseline"]
    assert "data/parts" in stage["deps"] and "data/nsoartc" in stage["deps"]  # the CNN peer reads the composites
    assert not any(d.startswith("models/") for d in stage["deps"])  # never a model of train's
    # The ViT's operating-point rule and settings too (the peer is decided the same way), never train.*.
    assert set(stage["params"]) == {"data.views", "data.grid", "data.good_class", "nsoartc.eps", "nsoartc.min_unit_space",
                                    "evaluate.threshold", "evaluate.target_escape_rate", "baseline"}


def test_f6_pieces_paired_interval_answer_and_splice():
    from vitinspect.study.findings import f6_answer
    from vitinspect.study.paired import paired_accuracy
    from vitinspect.study.report import splice_section

    truth = ["a"] * 50 + ["b"] * 50
    vit = list(truth)
    peer = ["b"] * 20 + truth[20:]
    p = paired_accuracy(vit, truth, peer, truth)
    assert p["diff"] == pytest.approx(0.2) and p["low"] > 0 and p["only_vit"] == 20 and p["only_peer"] == 0
    assert paired_accuracy(vit, truth, peer, truth[::-1]) is None  # not the same parts: no paired figure
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    truth3, vit3, peer3 = (list(rng.choice(["p", "x", "y"], 200, p=[0.05, 0.5, 0.45])) for _ in range(3))
    q = paired_accuracy(vit3, truth3, peer3, truth3)
    sk = f1_score(truth3, vit3, average="macro", zero_division=0) - f1_score(truth3, peer3, average="macro", zero_division=0)
    assert q["f1_diff"] == pytest.approx(sk, abs=1e-12) and q["f1_low"] <= q["f1_diff"] <= q["f1_high"]
    assert "yes, in every seed (3 of 3)" in f6_answer([("default data", 3, 0, 3, "")])
    assert "no: the SVM is ahead in every seed (1 of 1)" in f6_answer([("n_images 1000", 0, 1, 1, "")])
    report = "# T\n\n## F1: x\n\none\n\n## F5: y\n\nfive\n\n## All runs\n\n| a |\n"
    once = splice_section(report, ["## F6: z", "", "six", ""], "## F6")
    assert once.index("## F5") < once.index("## F6") < once.index("## All runs") and "one" in once and "five" in once
    twice = splice_section(once, ["## F6: z", "", "six again", ""], "## F6")
    assert twice.count("## F6") == 1 and "six again" in twice and "six\n" not in twice


def test_review_peer_section_names_who_is_ahead():
    """Without CNN figures (a revision before the CNN peer, or baseline.cnn.enabled false): the SVM is the stronger
    peer by default, and the CNN's column says n/a."""
    from vitinspect.review.pr_report import peer_section

    vit = {"accuracy": 0.9, "macro_f1": 0.8, "macro_f1_defects": 0.85, "escapes_per_million": 100.0,
           "false_reject_rate": 0.3, "threshold": 0.3}
    peer = {**vit, "accuracy": 0.95, "escapes_per_million": 500.0, "threshold": 0.6}
    for cnn in (None, {}):
        md = peer_section(vit, peer, cnn)
        assert "| figure | ViT | RT+SVM | CNN | ahead (ViT vs RT+SVM) |" in md
        assert "| accuracy | 0.9000 | 0.9500 | n/a | RT+SVM |" in md
        assert "| escapes per million defective | 100.0000 | 500.0000 | n/a | ViT |" in md
        assert "| operating point t | 0.3000 | 0.6000 | n/a |  |" in md
        assert "| macro-F1 | 0.8000 | 0.8000 | n/a | tie |" in md
        assert "stronger peer, the one with the higher macro-F1: **RT+SVM** (RT+SVM 0.8000)" in md and "no figures here" in md
    assert peer_section(vit, None) == "" and peer_section(None, peer, vit) == ""


def test_review_peer_section_judges_the_vit_against_the_stronger_peer():
    from vitinspect.review.peer_table import stronger_peer
    from vitinspect.review.pr_report import peer_section

    vit = {"classifier_accuracy": 0.9, "macro_f1": 0.8, "classifier_macro_f1_defects": 0.85, "classifier_escapes_per_million": 100.0,
           "classifier_false_reject_rate": 0.3, "classifier_threshold": 0.3}
    svm = {"accuracy": 0.95, "macro_f1": 0.7, "macro_f1_defects": 0.9, "escapes_per_million": 500.0, "false_reject_rate": 0.2,
           "threshold": 0.6}
    cnn = {**svm, "accuracy": 0.85, "macro_f1": 0.82, "escapes_per_million": 50.0, "threshold": 0.5}
    md = peer_section(vit, svm, cnn)
    assert "| figure | ViT | RT+SVM | CNN | ahead (ViT vs CNN) |" in md
    assert "| accuracy | 0.9000 | 0.9500 | 0.8500 | ViT |" in md  # against the CNN, not the SVM's higher accuracy
    assert "| macro-F1 | 0.8000 | 0.7000 | 0.8200 | CNN |" in md
    assert "| escapes per million defective | 100.0000 | 500.0000 | 50.0000 | CNN |" in md
    assert "**CNN** (RT+SVM 0.7000 and CNN 0.8200)" in md and "no figures here" not in md
    assert stronger_peer({"RT+SVM": svm, "CNN": {**cnn, "macro_f1": 0.7}}) == "RT+SVM"  # a tie: the first named
    assert stronger_peer({"RT+SVM": {"macro_f1": float("nan")}, "CNN": None}) is None
    assert "ahead (ViT vs the stronger peer)" in peer_section(vit, {"accuracy": 0.9})


@pytest.mark.parametrize("option", ["--metrics", "--cnn-metrics", "--cnn-confusion-records", "--report"])
def test_a_folder_where_a_baseline_file_goes_is_refused_before_any_work(in_tmp, option):
    # the CNN makes the stage minutes long: a folder at a file output is refused when the arguments are read, not
    # when the file is written, and the user's folder stays as it was
    folder = in_tmp / "taken"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    outs = {"--metrics": "m.json", "--confusion-records": "c.json", "--cnn-metrics": "cm.json",
            "--cnn-confusion-records": "cc.json", "--figure": "f.png", "--report": "r.json"}
    outs[option] = "taken"
    args = ["--parts", "no/parts", "--data", "no/nsoartc", "--lot", "no/lot", "--model", "models/baseline"]
    for k, v in outs.items():
        args += [k, v]
    with pytest.raises(VitinspectError, match=r"^taken: is a folder, where a file is to be written; left as it is"):
        load_stage("baseline").main(args)
    assert (folder / "mine.txt").read_text() == "keep" and sorted(p.name for p in in_tmp.iterdir()) == ["taken"]
