"""`study run` checks everything before it queues anything; an interrupt puts the workspace back."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import yaml

from conftest import tiny_dict
from vitinspect.core.errors import VitinspectError
from vitinspect.study import __main__ as study
from vitinspect.study.arguments import check_experiments
from vitinspect.study.interrupt import Guard, Interrupted, Workspace
from vitinspect.study.plan import plan


@pytest.fixture
def study_dir(in_tmp, monkeypatch):
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(tiny_dict(), sort_keys=False))
    (in_tmp / "parts").mkdir()

    def never(*a, **k):
        raise AssertionError("queued although an argument was bad")

    monkeypatch.setattr(study, "run_plan", never)
    return in_tmp


@pytest.mark.parametrize("args, fragment", [
    (["--seeds", "0"], "--seeds must be an integer from 1 to 20"),
    (["--seeds", "-1"], "--seeds must be an integer from 1 to 20"),
    (["--seeds", "1000000"], "got 1000000"),
    (["--timeout", "nan"], "--timeout must be a number of seconds"),
    (["--set", "data.n_images=abc"], "--set 'data.n_images=abc': params.yaml: data.n_images must be an integer, got 'abc'"),
    (["--set", "train.epochs=-1"], "--set 'train.epochs=-1': params.yaml: train.epochs must be positive, got -1"),
    (["--set", "data.folders.path=/nonexistent"], "data.folders.path '/nonexistent' is not a folder"),
    (["--set", "nosuch.key=1"], "--set 'nosuch.key=1': params.yaml has no key 'nosuch.key'"),
    (["--set", "data.n_images=1e12"], "data.n_images must be"),
    (["--set", "train.epochs=[1"], "--set 'train.epochs=[1': DVC cannot apply it"),
    (["--set", "data.blender.samples=100000"], "data.blender.samples must be at most 4,096"),
    (["--out", "/elsewhere/study.md"], "is outside the project"),
])
def test_bad_study_arguments_are_refused_before_anything_is_queued(study_dir, args, fragment):
    before = (study_dir / "params.yaml").read_bytes()
    with pytest.raises(VitinspectError) as err:
        study.main(["run", "--plan", "toy", *args])
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert (study_dir / "params.yaml").read_bytes() == before


def test_an_experiment_the_plan_makes_invalid_is_named(study_dir):
    """Valid params whose pretrain.seed only matters with model.source pretrain, which the pretrain plan sets."""
    params = _with(study_dir, {"pretrain": {"seed": 0}, "data": {"seed": 0}})
    check_experiments(plan("toy"), {}, params=params)
    with pytest.raises(VitinspectError, match=r"^experiment study-pt-full-s0 of the plan: params.yaml: pretrain.seed \(0\) must differ"):
        check_experiments(plan("pretrain", 2), {}, params=params)
    with pytest.raises(VitinspectError, match=r"^params.yaml: data.n_images must be at most"):  # no --set: the file's own fault
        check_experiments(plan("toy"), {}, params=_with(study_dir, {"data": {"n_images": 2_000_000}}))


def test_every_plan_passes_on_valid_params(study_dir):
    # 400 parts: the full plan's passed ratio 0.05 still leaves the gate its 12 good training parts (tiny's 120 would not)
    (study_dir / "params.yaml").write_text(yaml.safe_dump(tiny_dict(data={"n_images": 400}), sort_keys=False))
    for kind in ("toy", "full", "f6", "pretrain", "pretrain-raw"):
        check_experiments(plan(kind, 2), {"train.weight_decay": "0.01"})


def _with(root, override):
    from conftest import merge

    path = root / "bad.yaml"
    path.write_text(yaml.safe_dump(merge(tiny_dict(), override), sort_keys=False))
    return path


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(in_tmp):
    (in_tmp / "params.yaml").write_text("train:\n  epochs: 2\n")
    (in_tmp / "notes.txt").write_text("one\n")
    _git(in_tmp, "init", "-q", "-b", "main")
    _git(in_tmp, "-c", "user.email=t@e", "-c", "user.name=t", "add", "-A")
    _git(in_tmp, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "init")
    (in_tmp / "notes.txt").write_text("one\ntwo (uncommitted)\n")
    return in_tmp


def test_workspace_restore_undoes_what_a_cut_short_dvc_exp_run_queue_leaves(repo):
    """What `dvc exp run --queue` killed halfway leaves: the user's changes stashed and applied back, HEAD
    detached, params.yaml rewritten and staged."""
    ws = Workspace()
    _git(repo, "stash", "push", "-q")
    _git(repo, "checkout", "-q", "--detach")
    _git(repo, "stash", "apply", "-q")
    (repo / "params.yaml").write_text("train:\n  epochs: 5\n")
    _git(repo, "add", "params.yaml")
    done = ws.restore()
    assert (repo / "params.yaml").read_text() == "train:\n  epochs: 2\n"
    assert _git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert _git(repo, "stash", "list") == "" and _git(repo, "diff", "--cached") == ""
    assert (repo / "notes.txt").read_text() == "one\ntwo (uncommitted)\n"
    assert len(done) == 4, done
    assert Workspace().restore() == []  # nothing to do the second time


def test_a_signal_waits_for_the_dvc_command_then_the_workspace_is_restored(repo):
    with pytest.raises(Interrupted) as err:
        with Guard(["study-base-s0"], status=lambda: {}) as guard:
            with guard.held():
                os.kill(os.getpid(), signal.SIGTERM)  # held back: the "dvc command" goes on
                (repo / "params.yaml").write_text("train:\n  epochs: 5\n")
            raise AssertionError("not interrupted")
    assert err.value.signum == signal.SIGTERM
    assert str(err.value) == "study run interrupted by SIGTERM: params.yaml restored"
    assert (repo / "params.yaml").read_text() == "train:\n  epochs: 2\n"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
