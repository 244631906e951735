"""Shared fixtures: tiny params, and a temporary git+DVC copy of the project for end-to-end runs."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import shlex
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent
GUARDS = TESTS / "guards"

os.environ.update({
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # One BLAS/OpenMP thread in the workers and everything they start: two workers and the background builds
    # already keep both cores busy, and idle OpenMP threads spin when the cores are oversubscribed. (A stage
    # sets its own torch threads from `train.threads`; the tiny params say 1.)
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
})
_START_ENV = dict(os.environ)  # what a build in a background thread runs with, whatever a test has set since

TINY = {
    # One process and one torch thread: tiny work, two pytest workers, and bytes that cannot depend on what
    # else runs on the machine (`auto` counts the cores and the DVC queue workers at each stage start).
    "data": {"n_images": 120, "image_size": 32, "passed_ratio": 0.2, "jitter_px": 1.0, "num_proc": 1},
    "nsoartc": {"min_unit_space": 5},
    "model": {"patch_size": 8, "hidden_size": 32, "layers": 2, "heads": 2, "mlp_size": 64},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.003, "threads": 1},
    "pretrain": {"n_parts": 48, "epochs": 3, "batch_size": 16, "lr": 0.003, "decoder": {"hidden_size": 16, "layers": 1, "heads": 2, "mlp_size": 32}},
    "attention": {"panels": 1},
    "lot": {"n_parts": 60},
    "audit": {"reference_models": ["google/vit-base-patch16-224"]},
    "baseline": {"grid": {"C": [1.0, 10.0], "gamma": [0.01, 0.1]},
                 "cnn": {"widths": [4, 8], "epochs": 2, "batch_size": 16, "lr": 0.003, "threads": 1}},
}


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_dict(**override) -> dict:
    from vitinspect.config.params import defaults_dict

    return merge(merge(defaults_dict(), TINY), override)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path: stage outputs must lie inside the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_params():
    """The tiny Params object (validated)."""
    from vitinspect.config.params import params_from_dict

    return params_from_dict(tiny_dict())


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


def run(cmd, cwd, check=True, env=None, unset=()):
    """Run a command with the venv first on PATH; return the CompletedProcess (text).

    unset: prefixes of environment variables to leave out."""
    base = os.environ if threading.current_thread() is threading.main_thread() else _START_ENV
    e = dict(base, PATH=f"{BIN}{os.pathsep}{base['PATH']}", **(env or {}))
    e = {k: v for k, v in e.items() if not (unset and k.startswith(tuple(unset)))}
    paths = [str(GUARDS)]  # test-only hooks (network guard, kills), off unless their variables are set
    if (Path(cwd) / "src").is_dir():  # the project copy's own library, not the checkout's
        paths.insert(0, str(Path(cwd) / "src"))
    e["PYTHONPATH"] = os.pathsep.join(paths)
    proc = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_project(dest: Path, params: dict) -> Path:
    """A git repo holding the project's pipeline (dvc.yaml, stages, library) and ``params``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore", "Makefile"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "stages", dest / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "parts", dest / "parts")  # data.folders.path's default: a dependency even when not read
    # The folders' own .gitignore files the repo commits (e.g. dvclive/.gitignore for the pretrain stage's
    # cached out), as a clone has them. Without them, a `dvc repro` that fails after a stage has added a new
    # entry takes the entry back out (DVC's scm_context) while the stage's lock entry stays.
    tracked = subprocess.run(["git", "ls-files", "--", "*/.gitignore"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for rel in tracked:
        if not rel.startswith(".dvc/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git init -q -b main && git config user.email t@example.com && git config user.name test", dest)
    run("dvc init -q && dvc config core.analytics false && dvc config core.check_update false", dest)
    shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots", dirs_exist_ok=True)  # the custom plot templates
    run("git add -A && git commit -qm init", dest)
    return dest


def _shared_target(tmp_path_factory, name: str) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above every worker's own
    return base / f"shared_{name}"


def _build_once(target: Path, build, blocking: bool = True) -> None:
    """Build ``target`` unless a finished build is there; under a file lock, so one process builds at a time."""
    from filelock import FileLock

    with FileLock(str(target) + ".lock", blocking=blocking):
        if not (target / ".done").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            build(target)
            (target / ".done").touch()


_PREFETCH: dict[str, threading.Thread] = {}


def shared(tmp_path_factory, name: str, build) -> Path:
    """A folder built once per test run by ``build(folder)`` and shared by every pytest-xdist worker.

    The first worker to ask builds it under a file lock; the others wait, then reuse it. A build that
    failed leaves no ``.done`` marker, so the next worker to ask builds it again (and fails the same way).
    """
    target = _shared_target(tmp_path_factory, name)
    started = _PREFETCH.pop(name, None)
    if started is not None:
        started.join()  # this process began it in the background (prefetch)
    _build_once(target, build)
    return target


def prefetch(tmp_path_factory, name: str, build) -> None:
    """Begin ``shared(name)`` in a background thread (where no other worker has begun it), so that a build
    made of subprocesses runs while this worker runs other tests; ``shared`` then waits for it."""
    from filelock import Timeout

    target = _shared_target(tmp_path_factory, name)  # here: pytest makes its temp folders in this thread

    def work():
        try:
            _build_once(target, build, blocking=False)
        except Timeout:
            pass  # another worker is building it
        except Exception as exc:  # the test that needs it builds it again and fails with the real error
            print(f"prefetch of {name} failed: {exc}", file=sys.stderr)

    _PREFETCH[name] = threading.Thread(target=work, name=f"prefetch-{name}", daemon=True)
    _PREFETCH[name].start()


def _needs(base: Path, name: str, build) -> Path:
    """Inside a shared build: the shared folder ``name`` beside ``base``, built first (or waited for)."""
    target = base.parent / f"shared_{name}"
    _build_once(target, build)
    return target


HF_VARIABLES = ("HF_", "TRANSFORMERS_", "DO_NOT_TRACK")


def _build_project(base: Path) -> None:
    root = make_project(base / "proj", tiny_dict())
    (base / "net.log").write_text("")
    # Under the network guard, and with no Hugging Face variable set: each stage must go offline by itself,
    # before its first third-party import (net.log.hub records what the hub client read).
    run("dvc repro", root, env={"VITINSPECT_TEST_NET_LOG": str(base / "net.log")}, unset=HF_VARIABLES)
    run("git add -A && git commit -qm repro", root)


# Kills of a fresh clone's `dvc repro` (test_reliability.test_fresh_clone_...): the stage, and the test hook
# that SIGKILLs it (tests/guards/sitecustomize.py).
KILLS = [
    ("nsoartc", {"VITINSPECT_TEST_KILL_AT_REPLACE": "2"}),  # while renaming its outputs into place
    # 83 training parts, batch 16: 6 steps an epoch, a checkpoint each. Step 9 is in the middle of epoch 2.
    ("train", {"VITINSPECT_TEST_KILL_AT_STEP": "9"}),
    # Resumed from checkpoint-6, train saves checkpoint-12 with torch.save: training_args.bin, optimizer.pt,
    # scheduler.pt, rng_state.pth. The 2nd is cut in half, then SIGKILL.
    ("train", {"VITINSPECT_TEST_KILL_AT_SAVE": "2"}),
]


def _build_killed_clone(base: Path) -> None:
    """A git clone of the tiny project's commit (no data, no DVC cache) reproduced by plain `dvc repro`,
    SIGKILLed at each of ``KILLS`` in turn, then run to the end. What the test checks is recorded in
    ``facts.json``: how each killed run ended, and the checkpoints the kills left behind."""
    src = make_project(base / "src", tiny_dict())
    clone = base / "clone"
    run(["git", "clone", "-q", str(src), str(clone)], base)
    facts = {"kills": []}
    for stage, kill in KILLS:
        killed = run("dvc repro", clone, check=False, env={**kill, "VITINSPECT_TEST_KILL_SCRIPT": f"{stage}.py"})
        ran = re.findall(r"Running stage '([^']+)'", killed.stdout)
        facts["kills"].append({"stage": stage, "returncode": killed.returncode, "last_stage": ran[-1] if ran else None,
                               "tail": (killed.stdout[-1500:] + killed.stderr[-1500:])})
    ckpts = sorted((clone / ".cache/checkpoints/train").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    facts["checkpoints"] = [p.name for p in ckpts]
    facts["cut"] = sorted(p.name for p in ckpts[-1].iterdir()) if ckpts else []
    run("dvc repro", clone)
    (base / "facts.json").write_text(json.dumps(facts, indent=1))


def _build_toy_study(base: Path) -> None:
    """The study's toy plan run through `dvc queue` in a copy of the reproduced tiny project."""
    proj = copy_project(_needs(base, "e2e", _build_project) / "proj", base / "proj")
    # One base override (`--set`), applied to every experiment: the report must name it (test_study).
    run([sys.executable, "-m", "vitinspect.study", "run", "--plan", "toy", "--set", "train.weight_decay=0.01", "--timeout", "900"], proj)


# The shared builds, by the session fixture that serves each. They begin in the background as soon as
# collection ends, where a selected test needs them: the tiny project's build with the study run right after
# it, and the killed fresh clone, are the run's two longest chains of processes. They keep the worker's nice
# value while its own tests run at +NICE (Linux: the nice value is per thread, and inherited by the processes
# a thread starts): the chains get the cores first, and the many short tests fill what they leave.
BUILDS = {
    "built_project": ("e2e", _build_project),
    "toy_study": ("toy_study", _build_toy_study),
    "killed_clone": ("killed_clone", _build_killed_clone),
}
NICE = int(os.environ.get("VITINSPECT_TEST_NICE", "5"))

# Tests that only wait for a background build go last: every other test runs while the builds do.
LAST = ("test_fresh_clone", "test_toy_study")
# End-to-end tests that share the tiny build go after the unit tests, so the build (begun in the background
# at the start) has time to finish; the longest of them first, so the two workers end together.
LONGEST_FIRST = ("test_exp_run", "test_the_bad_params_table_through_dvc", "test_pretrain_costs")


# The two tiers: every test under tests/e2e/, and any test that uses a fixture that runs real dvc, is marked
# slow, so `pytest -m "not slow"` runs no dvc (and the guard below fails a test that would run it unmarked).
DVC_FIXTURES = ("built_project", "project", "killed_clone", "toy_study")


def pytest_itemcollected(item):
    if "e2e" in Path(str(item.fspath)).relative_to(TESTS).parts or set(DVC_FIXTURES) & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.slow)


def _runs_dvc(args) -> bool:
    words = args.split() if isinstance(args, str) else [str(a) for a in args]
    return any(Path(w).name == "dvc" or w.startswith("dvc.") for w in words) or "make repro" in " ".join(words)


@contextlib.contextmanager
def _no_dvc_unless_slow(item):
    """A test not marked slow that starts dvc (from its own thread, in its fixtures' setup or its body) fails:
    it belongs in tests/e2e/. The background builds (prefetch) run in their own threads, unguarded."""
    if item.get_closest_marker("slow"):
        yield
        return
    original, me = subprocess.Popen.__init__, threading.current_thread()

    def guarded(self, args, *a, **k):
        if threading.current_thread() is me and _runs_dvc(args):
            raise AssertionError(f"{item.nodeid} runs dvc ({args!r}): an end-to-end test, move it to tests/e2e/")
        return original(self, args, *a, **k)

    subprocess.Popen.__init__ = guarded
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _no_dvc_unless_slow(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _no_dvc_unless_slow(item):
        yield


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):  # after the deselection by -m: prefetch only what runs
    def key(item):
        if item.name.startswith(LAST):
            return 100
        if "built_project" not in getattr(item, "fixturenames", ()):
            return 0
        return 1 + next((i for i, prefix in enumerate(LONGEST_FIRST) if item.name.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=key)
    if config.option.collectonly:
        return
    wanted = [f for f in BUILDS if any(f in getattr(item, "fixturenames", ()) for item in items)]
    for fixture in wanted:
        prefetch(config._tmp_path_factory, *BUILDS[fixture])
    if wanted and NICE:
        os.nice(NICE)  # this thread: this worker's tests, not the builds begun above


@pytest.fixture(scope="session")
def built_project(tmp_path_factory):
    """One tiny project, reproduced once (under the network guard) and committed, shared by every test
    (and every xdist worker). Read-only: a test that runs anything in it uses ``project`` (a copy).

    ``net.log`` beside it lists every connection attempt that run made (none expected); ``net.log.hub`` what
    each stage's hub client read of an environment without any Hugging Face variable.
    """
    return shared(tmp_path_factory, "e2e", _build_project) / "proj"


@pytest.fixture(scope="session")
def killed_clone(tmp_path_factory):
    """The fresh clone killed at each of ``KILLS`` and then reproduced to the end (its folder: ``clone``,
    and ``facts.json``), built in the background from the start of the run."""
    return shared(tmp_path_factory, "killed_clone", _build_killed_clone)


@pytest.fixture(scope="session")
def toy_study(tmp_path_factory):
    """A copy of the tiny project in which the study's toy plan ran through `dvc queue`."""
    return shared(tmp_path_factory, "toy_study", _build_toy_study) / "proj"


def copy_project(src: Path, dest: Path) -> Path:
    """A private copy of a project (git history and DVC cache included; DVC's lock/tmp folder left out)."""
    shutil.copytree(src, dest, symlinks=True, ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
    return dest


@pytest.fixture
def project(built_project, tmp_path):
    """A private copy of the reproduced tiny project, for tests that run dvc or change files."""
    return copy_project(built_project, tmp_path / "proj")


def would_run(root: Path) -> set[str]:
    """The stages whose own deps, params or outs changed: what `dvc repro --dry` lists (nothing runs).

    Asked of DVC's own API in this process (`dvc status` without a CLI start per question)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {name.split(":")[-1] for name in repo.status()}


def load_stage(name: str):
    """Import stages/<name>.py as a module (stages/ is scripts, not a package). stages/ goes on sys.path,
    as `python stages/<name>.py` puts it there, for the stages' shared start (stages/_boot.py)."""
    import importlib.util

    if str(ROOT / "stages") not in sys.path:
        sys.path.insert(0, str(ROOT / "stages"))
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_params(path: Path, **override) -> Path:
    path.write_text(yaml.safe_dump(tiny_dict(**override), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """prepare + nsoartc at tiny params, run in-process; returns the folder holding data/."""
    return shared(tmp_path_factory, "tiny_data", _in_folder(_tiny_data_stages))


def _in_folder(build):
    """``build(d, params)`` run inside ``d`` (outputs must lie inside the working directory) with tiny params."""

    def wrapped(d: Path, **override) -> None:
        params = write_params(d / "params.yaml", **override)
        old = os.getcwd()
        os.chdir(d)
        try:
            build(d, params)
        finally:
            os.chdir(old)

    return wrapped


def _tiny_data_stages(d, params):
    load_stage("prepare").main(["--params", str(params), "--out", str(d / "parts"), "--gallery", str(d / "samples.png")])
    load_stage("nsoartc").main(["--params", str(params), "--parts", str(d / "parts"), "--out", str(d / "nsoartc"),
                                "--unit-space", str(d / "unit.npz"), "--metrics", str(d / "data.json"), "--figure", str(d / "nsoartc.png")])


def train_args(data_dir: Path, out: Path, params: Path) -> list[str]:
    return ["--params", str(params), "--data", str(data_dir / "nsoartc"), "--out", str(out / "vit"), "--init", str(out / "vit_init"),
            "--checkpoints", str(out / "checkpoints"), "--live", str(out / "live"), "--metrics", str(out / "train.json"), "--run-info", str(out / "train_run.json")]


# Tiny models trained once per session, shared by every test that only reads them (test_training,
# test_audit, ...): strategy -> train overrides. `full` runs 3 epochs (the per-epoch log is checked).
TRAINED = {"full": {"epochs": 3}, "head": {"epochs": 1}, "last_blocks": {"epochs": 1}, "lora": {"epochs": 1}}


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory):
    """strategy -> folder holding that strategy's train outputs (vit, vit_init, live, train.json, train_run.json).

    Each is trained in-process on first use. The `full` run starts beside checkpoints planted from
    another fingerprint, which it must discard rather than resume.
    """

    def train_in(out: Path) -> None:
        strategy = out.name.removeprefix("shared_trained_")
        params = write_params(out / "params.yaml", finetune={"strategy": strategy, "last_blocks": 1}, train=TRAINED[strategy])
        if strategy == "full":
            foreign = out / "checkpoints" / "checkpoint-1"
            foreign.mkdir(parents=True)
            (foreign / "trainer_state.json").write_text("{}")
            (out / "checkpoints" / "vitinspect_fingerprint.json").write_text('{"fingerprint": "another run"}')
        old = os.getcwd()
        os.chdir(out)  # outputs must lie inside the working directory
        try:
            load_stage("train").main(train_args(tiny_data, out, params))
        finally:
            os.chdir(old)

    return lambda strategy: shared(tmp_path_factory, f"trained_{strategy}", train_in)


# Shared by the unit and end-to-end tests of several subpackages.


def tiny_gate(d: Path) -> Path:
    """The unit-space gate of the tiny data in ``d`` (the evaluate stage's, fitted on its good parts), saved beside it
    (atomically: workers that race write the same bytes)."""
    import numpy as np

    from vitinspect.config.params import load_params
    from vitinspect.evaluation.gate import gate_and_scores, moves_from, save_gate

    p = load_params(d / "params.yaml")
    moves = moves_from(d / "unit.npz", p.nsoartc.gain, p.nsoartc.eps, p.gate.shift_px)
    gate, _ = gate_and_scores(d / "nsoartc", np.zeros((0, 8, 8, 3), np.uint8), 0, p.data.grid, 0.01, moves)
    if not (d / "gate.npz").exists():
        save_gate(gate, d / "gate.npz")
    return d / "gate.npz"


def _bundle_args(d: Path, params: Path, out: Path, model: Path, op: Path | None = None) -> list[str]:
    args = ["--params", str(params), "--parts", str(d / "parts"), "--unit-space", str(d / "unit.npz"), "--model", str(model),
            "--out", str(out / "bundle"), "--metrics", str(out / "ood.json"), "--report", str(out / "ood_report.json"),
            "--gate", str(tiny_gate(d))]
    return args + (["--operating-point", str(op)] if op else [])


@pytest.fixture(scope="session")
def trained_model(tiny_data, tmp_path_factory):
    """A tiny model trained in-process on tiny_data, once per test run for every worker (conftest.shared):
    (data dir, model dir)."""

    def build(out: Path) -> None:
        old = os.getcwd()
        os.chdir(out)  # outputs must lie inside the working directory
        try:
            load_stage("train").main(train_args(tiny_data, out, tiny_data / "params.yaml"))
        finally:
            os.chdir(old)

    return tiny_data, shared(tmp_path_factory, "inspect_model", build) / "vit"


@pytest.fixture(scope="session")
def tiny_bundle(trained_model, tmp_path_factory):
    """The bundle stage run in-process on the tiny model, once per test run; returns the bundle directory."""
    d, model = trained_model

    def build(out: Path) -> None:
        old = os.getcwd()
        os.chdir(out)
        try:
            load_stage("bundle").main(_bundle_args(d, d / "params.yaml", out, model))
        finally:
            os.chdir(old)

    return shared(tmp_path_factory, "inspect_bundle", build) / "bundle"


def with_value(key: str, value, base: dict | None = None) -> dict:
    """A copy of ``base`` (the defaults) with one key set, or removed by the value "~delete"."""
    from vitinspect.config.params import defaults_dict

    d = copy.deepcopy(defaults_dict() if base is None else base)
    *parents, leaf = key.split(".")
    node = d
    for k in parents:
        node = node[k]
    if value == "~delete":
        del node[leaf]
    else:
        node[leaf] = value
    return d


def stage_cmd(root: Path, stage: str) -> str:
    return " ".join(yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]["cmd"].split())


def outs_of(root: Path, stage: str) -> list[Path]:
    outs = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]["outs"]
    return [root / (o if isinstance(o, str) else next(iter(o))) for o in outs]


def digest(paths) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else ([p] if p.exists() else [])
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def run_in_process(cmd: str) -> None:
    """Run `python stages/<x>.py ARGS` as the stage's own entry point would, in this process."""
    argv = shlex.split(cmd)
    assert argv[0] == "python" and argv[1].startswith("stages/"), cmd
    from vitinspect.core.runtime import run_stage

    run_stage(load_stage(Path(argv[1]).stem).main, argv[2:])


def edit_params(path: Path, **values) -> None:
    """Set keys of the params file ``path`` in place, each named dotted (``train.epochs``) or with ``__``
    (``train__epochs``, as a keyword argument)."""
    d = yaml.safe_load(path.read_text())
    for key, value in values.items():
        d = with_value(key.replace("__", "."), value, d)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
