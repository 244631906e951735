"""Shared fixtures: tiny params, and a temporary git+DVC copy of the project for end-to-end runs."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GUARDS = Path(__file__).resolve().parent / "guards"

os.environ.update({
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
})

TINY = {
    "data": {"n_images": 120, "image_size": 32, "passed_ratio": 0.2, "jitter_px": 1.0},
    "nsoartc": {"min_unit_space": 5},
    "model": {"patch_size": 8, "hidden_size": 32, "layers": 2, "heads": 2, "mlp_size": 64},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.003},
    "pretrain": {"n_parts": 48, "epochs": 3, "batch_size": 16, "lr": 0.003, "decoder": {"hidden_size": 16, "layers": 1, "heads": 2, "mlp_size": 32}},
    "attention": {"panels": 1},
    "lot": {"n_parts": 60},
    "audit": {"reference_models": ["google/vit-base-patch16-224"]},
}


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_dict(**override) -> dict:
    from vitinspect.params import defaults_dict

    return merge(merge(defaults_dict(), TINY), override)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path: stage outputs must lie inside the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_params():
    """The tiny Params object (validated)."""
    from vitinspect.params import params_from_dict

    return params_from_dict(tiny_dict())


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


def run(cmd, cwd, check=True, env=None):
    """Run a command with the venv first on PATH; return the CompletedProcess (text)."""
    e = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {}))
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
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git init -q -b main && git config user.email t@example.com && git config user.name test", dest)
    run("dvc init -q && dvc config core.analytics false && dvc config core.check_update false", dest)
    shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots", dirs_exist_ok=True)  # the custom plot templates
    run("git add -A && git commit -qm init", dest)
    return dest


@pytest.fixture(scope="session")
def built_project(tmp_path_factory):
    """One tiny project, reproduced once (under the network guard) and committed; tests that only read it share it.

    ``net.log`` beside it lists every connection attempt that run made (none expected).
    """
    base = tmp_path_factory.mktemp("e2e")
    root = make_project(base / "proj", tiny_dict())
    (base / "net.log").write_text("")
    run("dvc repro", root, env={"VITINSPECT_TEST_NET_LOG": str(base / "net.log")})
    run("git add -A && git commit -qm repro", root)
    return root


def load_stage(name: str):
    """Import stages/<name>.py as a module (stages/ is scripts, not a package)."""
    import importlib.util

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
    d = tmp_path_factory.mktemp("tiny_data")
    params = write_params(d / "params.yaml")
    old = os.getcwd()
    os.chdir(d)  # outputs must lie inside the working directory
    try:
        _tiny_data_stages(d, params)
    finally:
        os.chdir(old)
    return d


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
    cache: dict[str, Path] = {}

    def get(strategy: str) -> Path:
        if strategy not in cache:
            out = tmp_path_factory.mktemp(f"trained_{strategy}")
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
            cache[strategy] = out
        return cache[strategy]

    return get
