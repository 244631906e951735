"""The pull-request comment: `python -m vitinspect.review --comment` as pr-metrics.yml runs it, on a two-commit repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_project, run, tiny_dict
from vitinspect.review.pr_comment import COMMENT_MARKER

pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE_BASE = f"https://raw.githubusercontent.com/acme/vitinspect/pr-reports/pr-7/{SHA}"
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow_step(workflow: str, name: str) -> str:
    """The `run:` script of the step called ``name`` (it must hold no ${{ }} expression: it runs as is here)."""
    doc = yaml.safe_load((WORKFLOWS / workflow).read_text())
    for job in doc["jobs"].values():
        for step in job["steps"]:
            if step.get("name") == name:
                assert "${{" not in step["run"], f"{name}: pass values through env, not ${{{{ }}}}"
                return step["run"]
    raise AssertionError(f"{workflow}: no step {name!r}")


def run_step(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """A workflow step's script the way GitHub runs it (bash -eo pipefail)."""
    e = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    e.update(env)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env=e, capture_output=True, text=True)


# ---- comment_body (pure) -------------------------------------------------------------------------


# ---- the workflow's own step, on a two-commit repository ------------------------------------------

def _metrics(project: Path, escape: float, macro_f1: float, counts: list[list[int]]) -> None:
    labels = ["passed", "tilt_x", "tilt_y", "retracted"]
    (project / "metrics").mkdir(exist_ok=True)
    (project / "metrics/eval.json").write_text(json.dumps(
        {"accuracy": 0.9, "escape_rate": escape, "false_reject_rate": 0.25, "macro_f1": macro_f1, "n": 40}, indent=2))
    norm = [[c / max(sum(row), 1) for c in row] for row in counts]
    (project / "metrics/confusion_matrix.json").write_text(json.dumps({"counts": counts, "labels": labels, "normalized": norm}))


def _evaluation(project: Path, lot_escapes: int, lot_rejects: int, f1: tuple[float, float, float]) -> None:
    """reports/evaluation.json as evaluate writes it, reduced to what the verdict reads: a lot of 200 defective
    and 1,800 good parts, a 40-part test split."""
    from vitinspect.evaluation.decision import rate

    def block(n, esc, fr, f1_value):
        return {"n": n, "escape": esc, "false_reject": fr, "rejected": rate(fr["k"] + esc["n"] - esc["k"], n),
                "predicted_counts": {"passed": 1, "tilt_x": 1, "tilt_y": 1, "retracted": 1},
                "macro_f1_defects": dict(zip(("value", "low", "high"), f1_value))}

    lot = block(2000, rate(lot_escapes, 200), rate(lot_rejects, 1800), (None, None, None))
    test = block(40, rate(1, 30), rate(2, 10), f1)
    (project / "reports").mkdir(exist_ok=True)
    (project / "reports/evaluation.json").write_text(json.dumps(
        {"operating_point": {"threshold": 0.5}, "lot": {"operating_point": lot, "argmax": lot},
         "test": {"operating_point": test, "argmax": test}}, indent=2))


def test_pr_metrics_step_writes_the_comment_the_poster_accepts(tmp_path):
    # origin: main with the base metrics, a branch `more-epochs` that changes a param and the metrics.
    origin = make_project(tmp_path / "origin", tiny_dict())
    _metrics(origin, 0.05, 0.80, [[8, 1, 1, 0], [1, 9, 0, 0], [0, 1, 9, 0], [0, 0, 1, 9]])
    _evaluation(origin, 8, 90, (0.80, 0.75, 0.85))
    run("git add -A && git commit -qm base", origin)
    run("git checkout -q -b more-epochs", origin)
    params = yaml.safe_load((origin / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    (origin / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _metrics(origin, 0.02, 0.85, [[9, 1, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0], [0, 0, 1, 9]])
    _evaluation(origin, 1, 20, (0.85, 0.80, 0.90))
    run("git add -A && git commit -qm 'three epochs'", origin)

    # The runner's checkout: a clone holding origin/<base> (as checkout with fetch-depth 0), the venv's python.
    work = tmp_path / "work"
    run(f"git clone -q -b more-epochs {origin} {work}", tmp_path)
    (work / ".venv/bin").mkdir(parents=True)
    wrapper = work / ".venv/bin/python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{work / "src"}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    step = workflow_step("pr-metrics.yml", "Report and comment body against the base branch")
    env = {"BASE_REF": "main", "PR_NUMBER": "7", "HEAD_SHA": SHA, "GITHUB_REPOSITORY": "acme/vitinspect",
           "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "99", "DVC_NO_ANALYTICS": "1"}
    proc = run_step(step, work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    artifact = work / "pr-comment"
    body = (artifact / "pr_comment.md").read_text()
    lines = body.splitlines()
    assert lines[0] == COMMENT_MARKER
    # The verdict, from the two commits' metrics.
    assert "## Verdict: **better**" in lines  # fewer escapes and false rejects, beyond the noise
    assert any(line.startswith("| **lot**: escapes per million defective parts | 40,000 (8 of 200;") and "**better**" in line for line in lines)
    assert any(line.startswith("| **test**: defect macro-F1 | 0.800") and "**unchanged within noise**" in line for line in lines)
    # The tables: the changed metrics and the changed param, with both values.
    assert re.search(r"\| metrics/eval\.json\s*\| escape_rate\s*\| 0\.05\s*\| 0\.02 ", body)
    assert re.search(r"\| params\.yaml\s*\| train\.epochs\s*\| 2\s*\| 3 ", body)
    # The confusion matrices by absolute URL, and that very image in the artifact, a real PNG.
    assert f"![base vs workspace]({IMAGE_BASE}/pr_confusion.png)" in body
    assert "](pr_confusion.png)" not in body
    png = (artifact / "pr_confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "https://github.com/acme/vitinspect/actions/runs/99" in body and f"commit {SHA[:12]}" in body
    assert (artifact / "pr_number").read_text().strip() == "7"
    assert (artifact / "head_sha").read_text().strip() == SHA
    assert (artifact / "pr.md").read_text().startswith("# vitinspect: workspace vs `origin/main`")

    # pr-comment.yml's check accepts exactly this artifact...
    check = workflow_step("pr-comment.yml", "Check the artifact (it was made by the pull request's code)")
    out, ok = _poster_check(check, tmp_path, artifact, pr_head=SHA)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert out.read_text().split() == ["post=true", "pr=7"]
    # ...posts nothing for a PR that moved on (an older run finishing late)...
    out, stale = _poster_check(check, tmp_path, artifact, pr_head="f" * 40)
    assert stale.returncode == 0 and out.read_text().split() == ["post=false"]
    # ...and refuses a tampered one.
    (artifact / "evil.png").write_text("<svg/>")
    out, bad = _poster_check(check, tmp_path, artifact, pr_head=SHA)
    assert bad.returncode != 0 and "evil.png: not a PNG" in bad.stdout
    (artifact / "evil.png").unlink()
    (artifact / "pr_comment.md").write_text("hello\n" + body)
    out, bad = _poster_check(check, tmp_path, artifact, pr_head=SHA)
    assert bad.returncode != 0 and "marker" in bad.stdout
    (artifact / "pr_comment.md").write_text(body)

    # The images land on the pr-reports branch at the very path the comment links (a local bare
    # repository stands in for GitHub); a second pull request's images join them on the branch.
    github = tmp_path / "github"
    run(f"git init -q --bare {github}/acme/vitinspect.git", tmp_path)
    publish = workflow_step("pr-comment.yml", "Publish the images to the pr-reports branch")
    for pr in ("7", "8"):
        env = {"GH_TOKEN": "t", "REPO": "acme/vitinspect", "RUN_HEAD_SHA": SHA, "PR": pr, "GITHUB_SERVER_URL": f"file://{github}"}
        shutil.rmtree(tmp_path / "poster" / "publish", ignore_errors=True)
        proc = run_step(publish, tmp_path / "poster", env)
        assert proc.returncode == 0, proc.stderr
    branch = run(f"git --git-dir={github}/acme/vitinspect.git ls-tree -r --name-only pr-reports", tmp_path).stdout.split()
    assert branch == [f"pr-7/{SHA}/pr_confusion.png", f"pr-8/{SHA}/pr_confusion.png"]
    assert f"{IMAGE_BASE.split('/pr-reports/')[1]}/pr_confusion.png" == branch[0]

    # The first post creates the comment, later ones edit the comment that carries the marker.
    post = workflow_step("pr-comment.yml", "Create or update the sticky comment")
    for existing, expected in (("", "-X POST repos/acme/vitinspect/issues/7/comments"), ("4242", "-X PATCH repos/acme/vitinspect/issues/comments/4242")):
        log = tmp_path / "gh.log"
        log.write_text("")
        gh = tmp_path / "poster" / "bin" / "gh"
        gh.write_text(f'#!/bin/sh\ncase "$*" in *--paginate*) echo "{existing}";; *) echo "$*" >> {log};; esac\n')
        env = {"GH_TOKEN": "t", "REPO": "acme/vitinspect", "PR": "7", "MARKER": COMMENT_MARKER,
               "PATH": f"{gh.parent}{os.pathsep}{os.environ['PATH']}"}
        proc = run_step(post, tmp_path / "poster", env)
        assert proc.returncode == 0, proc.stderr
        assert log.read_text().startswith(f"api {expected} -F body=@artifact/pr_comment.md")


def _poster_check(script: str, tmp: Path, artifact: Path, pr_head: str):
    """Run the check step with `artifact/` beside it and a stand-in `gh` that answers the PR's head commit."""
    where = tmp / "poster"
    (where / "bin").mkdir(parents=True, exist_ok=True)
    if (where / "artifact").exists():
        (where / "artifact").unlink()
    (where / "artifact").symlink_to(artifact)
    gh = where / "bin" / "gh"
    gh.write_text(f'#!/bin/sh\n[ "$2" = "repos/acme/vitinspect/pulls/7" ] && echo {pr_head}\n')
    gh.chmod(0o755)
    out = where / "github_output"
    out.write_text("")
    doc = yaml.safe_load((WORKFLOWS / "pr-comment.yml").read_text())
    env = {"GITHUB_OUTPUT": str(out), "REPO": "acme/vitinspect", "RUN_HEAD_SHA": SHA,
           "MARKER": doc["jobs"]["comment"]["env"]["MARKER"], "PATH": f"{where / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return out, run_step(script, where, env)
