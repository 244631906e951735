"""An interrupted `study run` stops its queue worker and leaves the project as it found it (issue 36).

The toy plan in a fresh tiny project (nothing reproduced): killed by SIGINT to its process group (a Ctrl-C)
while the queue trains, and by SIGTERM to the study alone in the middle of `dvc exp run --queue` (HEAD
detached, the user's uncommitted change stashed), the moment that used to leave params.yaml rewritten and
staged, HEAD detached and a stray `git stash` entry behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, make_project, tiny_dict

pytestmark = pytest.mark.slow


def _start(proj: Path) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(proj / "src"))
    return subprocess.Popen([sys.executable, "-m", "vitinspect.study", "run", "--plan", "toy", "--timeout", "600"],
                            cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(what, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if what():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def _git(proj, *args):
    return subprocess.run(["git", *args], cwd=proj, capture_output=True, text=True).stdout


def _left_running(proj: Path) -> list[str]:
    """Processes (the queue worker, its task, a stage) working inside the project."""
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(p / "cwd")).is_relative_to(proj):
                out.append((p / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except OSError:
            continue
    return out


def _state(proj: Path) -> dict:
    return {"params": (proj / "params.yaml").read_bytes(), "status": _git(proj, "status", "--porcelain"),
            "head": _git(proj, "symbolic-ref", "-q", "HEAD"), "stash": _git(proj, "stash", "list"),
            "staged": _git(proj, "diff", "--cached", "--name-only")}


def _queue(proj: Path) -> str:
    return subprocess.run([str(BIN / "dvc"), "queue", "status"], cwd=proj, capture_output=True, text=True).stdout


@pytest.mark.parametrize("sig, to_group, moment", [(signal.SIGINT, True, "running"), (signal.SIGTERM, False, "queueing")])
def test_an_interrupted_study_stops_its_worker_and_restores_the_workspace(tmp_path, sig, to_group, moment):
    proj = make_project(tmp_path / "proj", tiny_dict())
    (proj / "README.md").write_text("an uncommitted change of the user's\n")
    _git(proj, "add", "README.md")
    _git(proj, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "readme")
    (proj / "README.md").write_text("an uncommitted change of the user's, edited\n")
    before = _state(proj)
    study = _start(proj)
    if moment == "running":  # the worker has taken the first experiment
        _wait_for(lambda: any((proj / ".dvc/tmp/exps/run").glob("*/*.run")))
    else:  # `dvc exp run --queue` has stashed the user's change and detached HEAD
        _wait_for(lambda: not (proj / ".git/HEAD").read_text().startswith("ref:"))
    t = time.time()
    (os.killpg if to_group else os.kill)(study.pid, sig)
    out, err = study.communicate(timeout=60)
    assert study.returncode == 128 + sig, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: study run interrupted by {sig.name}"), err
    assert time.time() - t < 30
    if moment == "running":
        assert "queue worker stopped, study-base-s0 killed" in lines[0] and "1 queued experiment(s) removed" in lines[0], err
    _wait_for(lambda: not _left_running(proj), timeout=15)
    assert _state(proj) == before
    assert "study-" not in _queue(proj)
