"""Issue 14: every failure ends in one line and leaves outputs whole.

Bad params through dvc repro (the validate stage), a kill in the middle of a checkpoint write, a
diverged training run, non-finite figures, all-or-nothing outputs, and the catch-all.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import TESTS, load_stage, train_args, write_params
from vitinspect.core.errors import VitinspectError


# --------------------------------------------------------------------------- cheap, in-process


def fake_checkpoint(path: Path, *, state=True, weights=True, optimizer=True) -> Path:
    path.mkdir(parents=True)
    if weights:
        save_file({"w": torch.zeros(2)}, str(path / "model.safetensors"))
    if state:
        (path / "trainer_state.json").write_text("{}")
    if optimizer:
        torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
        torch.save({"last_epoch": 1}, path / "scheduler.pt")
    return path


def test_resume_point_removes_incomplete_checkpoints_highest_first(tmp_path):
    from vitinspect.model.training import resume_point

    good = fake_checkpoint(tmp_path / "checkpoint-6")
    cut = [fake_checkpoint(tmp_path / "checkpoint-12", state=False),  # killed before trainer_state.json
           fake_checkpoint(tmp_path / "checkpoint-18", weights=False, state=False, optimizer=False),  # killed at once
           fake_checkpoint(tmp_path / "checkpoint-24", optimizer=False)]
    (cut[0] / "optimizer.pt").write_bytes((cut[0] / "optimizer.pt").read_bytes()[:10])
    truncated = fake_checkpoint(tmp_path / "checkpoint-30")
    (truncated / "model.safetensors").write_bytes((truncated / "model.safetensors").read_bytes()[:20])
    assert resume_point(tmp_path) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6"]
    assert resume_point(tmp_path / "absent") is None


def test_a_planted_pickle_in_the_checkpoint_is_refused_in_one_line(tmp_path):
    from vitinspect.model.training import resume_point

    class Planted:
        def __reduce__(self):
            return (print, ("pwned",))

    ckpt = fake_checkpoint(tmp_path / "checkpoint-6")
    torch.save(Planted(), ckpt / "rng_state.pth")
    with pytest.raises(VitinspectError, match=r"rng_state.pth: refused, not plain tensors \(it calls [\w.]*print\)"):
        resume_point(tmp_path)
    assert ckpt.is_dir()  # refused, not silently deleted


def test_write_json_refuses_nan_and_inf_naming_the_figure(in_tmp):
    from vitinspect.core.storage import write_json

    with pytest.raises(VitinspectError, match=r"m.json: defect_contrast.tilt_x is nan \(not a finite number\); check nsoartc.eps"):
        write_json("m.json", {"defect_contrast": {"tilt_x": float("nan")}}, hint="check nsoartc.eps")
    with pytest.raises(VitinspectError, match=r"rows\[1\] is inf"):
        write_json("m.json", {"rows": [1.0, float("inf")]})
    assert not Path("m.json").exists()


def test_all_or_nothing_renames_every_output_or_none(in_tmp):
    from vitinspect.core.storage import all_or_nothing, write_json, write_text

    write_text("a.txt", "old a")
    write_text("b.txt", "old b")
    with pytest.raises(VitinspectError):
        with all_or_nothing():
            write_text("a.txt", "new a")
            write_json("b.txt", {"x": float("nan")})
    assert Path("a.txt").read_text() == "old a" and Path("b.txt").read_text() == "old b"
    assert not list(Path().glob(".*.tmp"))
    with all_or_nothing():
        write_text("a.txt", "new a")
        assert Path("a.txt").read_text() == "old a"  # nothing renamed before the end
        write_text("b.txt", "new b")
    assert Path("a.txt").read_text() == "new a" and Path("b.txt").read_text() == "new b"


def test_a_finished_stage_exits_0_with_its_exit_handlers_run_and_a_call_from_python_returns(tmp_path):
    """A stage run as a script ends without the interpreter's teardown (runtime.exit_finished), yet with its exit
    handlers run and its output flushed; a call of run_stage from Python (a test, a notebook) just returns."""
    from vitinspect.core import runtime

    done = []
    runtime.run_stage(lambda argv: done.append(argv), ["x"])
    assert done == [["x"]]
    marker = tmp_path / "atexit.txt"
    code = ("import atexit, sys, threading\n"
            "from vitinspect.core.runtime import run_stage\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
            "def main(argv):\n"
            "    sys.stdout.write('unflushed output')\n"
            "run_stage(main)\n"
            "raise SystemExit(7)  # not reached: the finished stage has exited\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "unflushed output" and marker.read_text() == "ran", proc.stderr


def test_catch_all_prints_one_line_and_exits_2(capsys, monkeypatch):
    from vitinspect.core import runtime

    def boom(argv):
        raise KeyError("x" * 1000)

    monkeypatch.delenv("VITINSPECT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        runtime.run_stage(boom, [])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and len(err) < 400
    assert err.startswith("error: unexpected KeyError") and "run with VITINSPECT_DEBUG=1 for the traceback" in err

    def missing(argv):
        open("/nonexistent/file.bin")

    with pytest.raises(SystemExit):
        runtime.run_stage(missing, [])
    assert capsys.readouterr().err.startswith("error: /nonexistent/file.bin: No such file or directory; run with")
    monkeypatch.setenv("VITINSPECT_DEBUG", "1")
    with pytest.raises(KeyError):
        runtime.run_stage(boom, [])


def test_review_refuses_an_output_outside_the_project(in_tmp):
    from vitinspect.review import pr_report as review

    with pytest.raises(VitinspectError, match="is outside the project"):
        review.main(["--out", "../pr.md"])


def test_validate_stage_refuses_without_importing_torch(tmp_path):
    import subprocess
    import sys

    bad = write_params(tmp_path / "params.yaml", data={"passed_ratio": 0})
    code = ("import sys, runpy; sys.argv = ['validate.py', '--params', %r, '--out', 'ok.json'];"
            "import atexit; atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr));"
            "sys.path.insert(0, %r); runpy.run_path(%r, run_name='__main__')") % (str(bad), str(TESTS.parent / "stages"), str(TESTS.parent / "stages/validate.py"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: params.yaml: data.passed_ratio must be in (0, 1), got 0.0", "NO-TORCH"]
    good = write_params(tmp_path / "params.yaml")
    validate = load_stage("validate")
    old = Path.cwd()
    try:
        import os

        os.chdir(tmp_path)
        validate.main(["--params", str(good), "--out", "ok.json"])
        first = (tmp_path / "ok.json").read_bytes()
        write_params(tmp_path / "params.yaml", train={"epochs": 7})
        validate.main(["--params", str(good), "--out", "ok.json"])
    finally:
        os.chdir(old)
    assert (tmp_path / "ok.json").read_bytes() == first  # valid params, same bytes: nothing downstream reruns


def test_diverged_training_fails_in_one_line_and_writes_no_model(tiny_data, in_tmp, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"epochs": 3, "lr": 1e6})  # the largest lr validate lets through
    with pytest.raises(VitinspectError, match=r"params.yaml: train.lr=1e\+06: training diverged \((loss|grad_norm|eval_loss) is nan at epoch 1\).*lower train.lr"):
        load_stage("train").main(train_args(tiny_data, tmp_path, params))
    assert not (tmp_path / "vit").exists() and not (tmp_path / "train.json").exists()
    # Stopped at the first non-finite loss, and no checkpoint of NaN weights was kept to resume from.
    assert not list((tmp_path / "checkpoints").glob("checkpoint-*"))


class Planted:
    """What an attacker plants: a pickle that runs a command when loaded."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_train_refuses_a_planted_pickle_in_its_checkpoint_before_loading_it(tiny_data, in_tmp, tmp_path, monkeypatch):
    import types

    params = write_params(tmp_path / "params.yaml", train={"epochs": 2})
    stage = load_stage("train")
    with monkeypatch.context() as m:  # keep the checkpoints a finished run would remove
        m.setattr(stage, "shutil", types.SimpleNamespace(rmtree=lambda *a, **k: None))
        stage.main(train_args(tiny_data, tmp_path, params))
    last = max((tmp_path / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    torch.save(Planted(), last / "rng_state.pth")
    before = (tmp_path / "train.json").read_bytes()
    with pytest.raises(VitinspectError, match=r"checkpoint-12/rng_state.pth: refused, not plain tensors \((it calls [\w.]*system|its pickle names code to run)\)"):
        stage.main(train_args(tiny_data, tmp_path, params))
    assert not (tmp_path / "PWNED").exists() and (tmp_path / "train.json").read_bytes() == before


# --------------------------------------------------------------------------- end to end, real dvc

STAGE_OUTS = None


# A kill in the middle of a checkpoint write, then `dvc repro`: in the fresh-clone kill test
# (test_reliability.py), which cuts the resumed run's checkpoint.


