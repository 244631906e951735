"""End to end with real dvc in a temporary git repo, at tiny params."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

from conftest import ROOT, run

pytestmark = pytest.mark.slow
STAGES = ("prepare", "nsoartc", "train", "lot", "evaluate", "attention", "audit")


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def project(built_project, tmp_path):
    """A private copy of the reproduced project (git history and DVC cache included)."""
    dest = tmp_path / "proj"
    shutil.copytree(built_project, dest, symlinks=True)
    return dest


def set_param(root, key, value):
    path = root / "params.yaml"
    d = yaml.safe_load(path.read_text())
    *parents, leaf = key.split(".")
    node = d
    for k in parents:
        node = node[k]
    node[leaf] = value
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def test_repro_writes_every_output_and_a_second_repro_does_nothing(built_project):
    for path in ("data/parts", "data/nsoartc", "models/vit/model.safetensors", "models/vit_init/model.safetensors",
                 "metrics/data.json", "metrics/train.json", "metrics/eval.json", "metrics/attention.json", "metrics/audit.json",
                 "data/lot", "models/operating_point.json", "metrics/lot.json", "reports/evaluation.json", "plots/roc.json", "plots/pr.json",
                 "reports/attention.json", "reports/audit.json", "reports/lot.json",
                 "plots/samples.png", "plots/nsoartc.png", "plots/confusion.json", "plots/confusion.png", "plots/predictions.csv",
                 "plots/audit_change.png", "reports/audit.md", "dvclive/train/metrics.json"):
        assert (built_project / path).exists(), path
    assert list((built_project / "plots/attention").glob("*.png"))
    out = run("dvc repro", built_project).stdout
    assert ran(out) == set()
    assert "up to date" in run("dvc status", built_project).stdout


def test_nsoartc_window_reruns_nsoartc_but_not_prepare(project):
    set_param(project, "nsoartc.window", 3)
    status = run("dvc status", project).stdout
    assert "nsoartc" in status and "prepare:" not in status
    out = run("dvc repro", project).stdout
    assert "nsoartc" in ran(out) and "prepare" not in ran(out)


def test_passed_ratio_reruns_from_prepare(project):
    set_param(project, "data.passed_ratio", 0.25)
    out = run("dvc repro prepare nsoartc", project).stdout  # the data stages; the rest follow the same way
    assert {"prepare", "nsoartc"} <= ran(out)


def test_evaluate_params_or_code_rerun_evaluate_alone(project):
    set_param(project, "evaluate.batch_size", 7)
    assert ran(run("dvc repro", project).stdout) == {"evaluate"}
    with open(project / "stages" / "evaluate.py", "a") as fh:
        fh.write("\n# a code change\n")
    assert ran(run("dvc repro", project).stdout) == {"evaluate"}


def test_attention_params_rerun_attention_alone(project):
    set_param(project, "attention.head_fusion", "max")
    assert ran(run("dvc repro", project).stdout) == {"attention"}


def test_exp_run_epochs_skips_the_data_stages(project):
    out = run("dvc exp run -S train.epochs=1", project).stdout
    assert "train" in ran(out) and not {"prepare", "nsoartc"} & ran(out)
    table = run("dvc exp show --md --no-pager", project).stdout
    assert "train.epochs" in table and "macro_f1" in table


def test_evaluation_agrees_with_sklearn_from_predictions_csv(built_project):
    report = json.loads((built_project / "reports/evaluation.json").read_text())
    op = json.loads((built_project / "models/operating_point.json").read_text())
    cm = json.loads((built_project / "metrics/confusion_matrix.json").read_text())
    table = pd.read_csv(built_project / "plots/predictions.csv")
    classes = cm["labels"]
    y, p = table["label"].to_numpy(), table["predicted"].to_numpy()
    t = op["threshold"]
    assert op["class"] == "passed" and op["chosen_on"] == "val" and op["mode"] == "auto" and 0 <= t <= 1
    ev = report["test"]["operating_point"]
    assert ev["threshold"] == t and ev["n"] == len(table)
    assert ev["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-6)
    assert ev["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p), abs=1e-6)
    assert ev["macro_f1"] == pytest.approx(f1_score(y, p, labels=classes, average="macro", zero_division=0), abs=1e-6)
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    for i, c in enumerate(classes):
        assert ev["per_class"][c]["recall"] == pytest.approx(rec[i], abs=1e-6)
        assert ev["per_class"][c]["precision"] == pytest.approx(prec[i], abs=1e-6)
        assert ev["per_class"][c]["support"] == sup[i]
    defective = y != "passed"
    assert ev["escape"]["k"] == np.sum(p[defective] == "passed") and ev["escape"]["n"] == defective.sum()
    assert ev["false_reject"]["k"] == np.sum(p[~defective] != "passed") and ev["false_reject"]["n"] == (~defective).sum()
    assert ev["escape"]["low"] <= ev["escape"]["rate"] <= ev["escape"]["high"]
    assert np.asarray(cm["counts"]).sum() == len(table)
    records = json.loads((built_project / "plots/confusion.json").read_text())
    assert len(records) == len(table) and {"actual", "predicted"} <= set(records[0])
    # The operating point decides: p(passed) >= t passes, else the most probable defect class.
    probs = table[[f"p_{c}" for c in classes]].to_numpy()
    defect_best = np.asarray(classes[1:])[probs[:, 1:].argmax(1)]
    assert (np.where(probs[:, 0] >= t, "passed", defect_best) == p).all()
    assert (np.asarray(classes)[probs.argmax(1)] == table["predicted_argmax"]).all()
    # The lot: its own size, the headline file holds the same keys as the test split's.
    lot = json.loads((built_project / "metrics/lot.json").read_text())
    test = json.loads((built_project / "metrics/eval.json").read_text())
    assert set(lot) == set(test) and lot["n_parts"] == 60 and lot["threshold"] == t
    roc = json.loads((built_project / "plots/roc.json").read_text())
    assert sum(r["operating_point"] for r in roc) == 1


def test_metric_surface_is_small(built_project):
    shown = json.loads(run("dvc metrics show --json", built_project).stdout)

    def numbers(o):
        if isinstance(o, bool):
            return 0
        if isinstance(o, (int, float)):
            return 1
        if isinstance(o, dict):
            return sum(numbers(v) for v in o.values())
        return sum(numbers(v) for v in o) if isinstance(o, list) else 0

    assert 20 <= numbers(shown) <= 40
    files = set(shown[0]["data"]) if isinstance(shown, list) else set(shown[""]["data"])
    assert "reports/train_run.json" not in files


def test_lot_params_rerun_only_lot_and_evaluate(project):
    out = run("dvc exp run -S lot.passed_ratio=0.5", project).stdout
    assert ran(out) == {"lot", "evaluate"}
    lot = json.loads((project / "reports/evaluation.json").read_text())["lot"]["argmax"]
    assert lot["false_reject"]["n"] == 30 and lot["escape"]["n"] == 30


def test_report_compares_a_branch_with_main(project):
    run("git checkout -q -b more-epochs", project)
    set_param(project, "train.epochs", 3)
    run("dvc repro", project)
    run("git add -A && git commit -qm 'three epochs'", project)
    run([sys.executable, "-m", "vitinspect.review", "--base", "main", "--out", "reports/pr.md"], project)
    report = (project / "reports/pr.md").read_text()
    assert "train.epochs" in report and "| 2 " in report.replace("|  2", "| 2") and "3" in report
    assert "metrics/eval.json" in report and "macro_f1" in report
    assert re.search(r"## Verdict: \*\*(better|worse|unchanged within noise)\*\*", report)
    assert "escapes per million defective parts" in report and "<details>" in report
    assert (project / "reports/pr_confusion.png").stat().st_size > 5000
    # A base that does not exist is one clear line, exit 2.
    bad = run([sys.executable, "-m", "vitinspect.review", "--base", "nope"], project, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


def test_plots_show_draws_in_headless_chromium(built_project, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    vega = ROOT / ".vega" / "node_modules"
    if not chromium or not vega.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must provide chromium and .vega (see .ci/run)")
        pytest.skip("needs Debian's chromium and `make vega`")
    proj = tmp_path / "proj"
    shutil.copytree(built_project, proj, symlinks=True)
    (proj / ".vega").symlink_to(ROOT / ".vega")
    shutil.copytree(ROOT / ".dvc" / "plots", proj / ".dvc" / "plots", dirs_exist_ok=True)
    run("dvc plots show --html-template .dvc/plots/offline.html", proj)
    page = proj / "dvc_plots" / "index.html"
    html = page.read_text()
    assert html.count("vegaEmbed(") >= 3 and "cdn.jsdelivr" not in html
    shot = tmp_path / "shot.png"
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files", "--virtual-time-budget=15000",
         "--window-size=1400,3000", f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    # vega-embed replaced each plot div's content with a rendered canvas or svg.
    rendered = dom.stdout.count("<canvas") + dom.stdout.count('class="marks"')
    assert rendered >= 3, dom.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.std() > 10 and len(np.unique(img)) > 50  # not a blank page


def test_exp_compare_two_epoch_counts_diff_and_plots_diff(project):
    run("dvc exp run -n e1 -S train.epochs=1", project)
    run("dvc exp run -n e2 -S train.epochs=2", project)
    table = run("dvc exp show --md --no-pager", project).stdout
    assert "e1" in table and "e2" in table and "accuracy" in table
    diff = run("dvc exp diff e1 e2 --md", project).stdout
    assert "train.epochs" in diff
    plots = json.loads(run("dvc plots diff e1 e2 --json", project).stdout)["data"]
    for name in ("confusion matrix (test, operating point, share of each actual class = recall)",
                 "ROC, defect detection on the lot (operating point marked)"):
        block = plots[name][0]
        assert set(block["revisions"]) == {"e1", "e2"}
        assert {d["rev"] for d in block["content"]["data"]["values"]} == {"e1", "e2"}


def test_queue_two_passed_ratios(project):
    run("dvc exp run --queue -S 'data.passed_ratio=0.2,0.25'", project)
    run("dvc queue start -j 1", project)
    import time

    deadline = time.time() + 900
    while time.time() < deadline:
        status = run("dvc queue status", project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    table = run("dvc exp show --md --no-pager", project).stdout
    assert "0.25" in table and "0.2" in table
