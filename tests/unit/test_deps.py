"""dvc.yaml's deps cannot drift from the code: each stage lists exactly the project modules its script
imports (transitively, read from the AST) and the params sections it reads; every stage sets the
offline environment before any third-party import."""

from __future__ import annotations

import ast
import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGE = "vitinspect"
SRC = ROOT / "src"


def _module_file(name: str) -> Path | None:
    """src/vitinspect/a/b.py (or its package __init__.py) for the dotted name, if it is ours; stages/<name>.py
    for a top-level name a stage script imports from its own folder (the shared start, stages/_boot.py)."""
    if "." not in name and (ROOT / "stages" / f"{name}.py").exists():
        return ROOT / "stages" / f"{name}.py"
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the project modules one file imports, at any depth (lazy imports too)."""
    return set(_imports_of(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=None)
def _imports_of(path: str, mtime_ns: int) -> frozenset[str]:
    """_imported_modules, parsed once per file version (every stage's closure shares most of the library)."""
    path = Path(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from vitinspect.core import runtime`
    found = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
            if _module_file(".".join(parts[:i])):
                found.add(".".join(parts[:i]))
    return frozenset(found)


def project_imports(script: Path) -> set[str]:
    """The project files (relative to ROOT) a script loads, followed transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for name in _imported_modules(path):
            f = _module_file(name)
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return {str(p.relative_to(ROOT)) for p in seen}


def params_read(script: Path) -> set[str]:
    """Params sections a stage script reads: ``load_params(...).x`` and ``p.x`` where ``p = load_params(...)``."""
    tree = ast.parse(script.read_text())
    holders = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "load_params":
            holders.update(t.id for t in node.targets if isinstance(t, ast.Name))
    sections = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            v = node.value
            if (isinstance(v, ast.Call) and getattr(v.func, "id", None) == "load_params") or (isinstance(v, ast.Name) and v.id in holders):
                sections.add(node.attr)
    return sections


def check_stage_deps(dvc: dict, root: Path = ROOT) -> list[str]:
    """Every disagreement between dvc.yaml's deps/params and what the stage scripts import and read."""
    problems = []
    for name, stage in dvc["stages"].items():
        script = root / "stages" / f"{name}.py"
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
        if f"stages/{name}.py" not in deps:
            problems.append(f"{name}: does not list its own script stages/{name}.py")
        listed = {d for d in deps if d.startswith("src/") or (d.startswith("stages/") and d != f"stages/{name}.py")}
        used = project_imports(script)
        problems += [f"{name}: lists {d} but does not import it" for d in sorted(listed - used)]
        problems += [f"{name}: imports {d} but does not list it" for d in sorted(used - listed)]
        keys = [k if isinstance(k, str) else next(iter(k)) for k in stage.get("params", [])]
        declared = {k.split(".")[0] for k in keys}
        read = params_read(script)
        problems += [f"{name}: declares params section {s!r} but never reads it" for s in sorted(declared - read)]
        problems += [f"{name}: reads params section {s!r} but does not declare it" for s in sorted(read - declared)]
    return problems


def load_dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_dvc_yaml_deps_match_the_code():
    assert check_stage_deps(load_dvc()) == []


def test_the_check_catches_a_wrong_dvc_yaml():
    good = load_dvc()
    stage = good["stages"]["evaluate"]
    missing = copy.deepcopy(good)
    missing["stages"]["evaluate"]["deps"] = [d for d in stage["deps"] if d != "src/vitinspect/evaluation/metrics.py"]
    assert "evaluate: imports src/vitinspect/evaluation/metrics.py but does not list it" in check_stage_deps(missing)
    extra = copy.deepcopy(good)
    extra["stages"]["evaluate"]["deps"] = [*stage["deps"], "src/vitinspect/data/render2d.py"]
    assert "evaluate: lists src/vitinspect/data/render2d.py but does not import it" in check_stage_deps(extra)
    params = copy.deepcopy(good)
    params["stages"]["train"]["params"] = [k for k in good["stages"]["train"]["params"] if not str(k).startswith("train")]
    assert "train: reads params section 'train' but does not declare it" in check_stage_deps(params)
    unread = copy.deepcopy(good)
    unread["stages"]["prepare"]["params"] = [*good["stages"]["prepare"]["params"], "audit"]
    assert "prepare: declares params section 'audit' but never reads it" in check_stage_deps(unread)


def test_transitive_imports_are_followed(tmp_path):
    # train imports training, which imports metrics: metrics must be found though train.py never names it.
    assert "src/vitinspect/evaluation/metrics.py" in project_imports(ROOT / "stages/train.py")
    assert "src/vitinspect/__init__.py" in project_imports(ROOT / "stages/prepare.py")
    assert "src/vitinspect/data/render2d.py" not in project_imports(ROOT / "stages/evaluate.py")


def _first_import_is_the_package(script: Path) -> bool:
    """The first import beyond the standard library is the package: in the script itself, or in the shared
    start it imports first (stages/_boot.py), whose guarded import must then come before any other."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if mods == ["_boot"] and script.name != "_boot.py":
                return _first_import_is_the_package(script.parent / "_boot.py")
            if any(m.split(".")[0] not in sys.stdlib_module_names for m in mods):
                return all(m.split(".")[0] == PACKAGE for m in mods)
        if isinstance(node, ast.Try):  # the guarded `from vitinspect.core import runtime`
            inner = [n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            return bool(inner) and all((n.module or "").startswith(PACKAGE) for n in inner if isinstance(n, ast.ImportFrom))
    return False


@pytest.mark.parametrize("stage", sorted(load_dvc()["stages"]))
def test_stage_imports_the_package_before_any_third_party_module(stage):
    assert _first_import_is_the_package(ROOT / "stages" / f"{stage}.py")


def test_every_stage_starts_from_the_shared_boot_and_the_check_sees_its_deps(tmp_path):
    """One guard and one set of common arguments (stages/_boot.py) for every stage; a stage that imports
    it must list it in dvc.yaml, and a start that imports a third-party module first is caught."""
    dvc = load_dvc()
    for name in dvc["stages"]:
        script = (ROOT / "stages" / f"{name}.py").read_text()
        assert "from _boot import runtime, stage_parser" in script and "except ModuleNotFoundError" not in script, name
        assert "stages/_boot.py" in project_imports(ROOT / "stages" / f"{name}.py")
    dropped = copy.deepcopy(dvc)
    dropped["stages"]["lot"]["deps"] = [d for d in dvc["stages"]["lot"]["deps"] if d != "stages/_boot.py"]
    assert "lot: imports stages/_boot.py but does not list it" in check_stage_deps(dropped)
    (tmp_path / "_boot.py").write_text("import numpy\nfrom vitinspect.core import runtime\n")
    (tmp_path / "s.py").write_text("from __future__ import annotations\n\nfrom _boot import runtime\n")
    assert not _first_import_is_the_package(tmp_path / "s.py")


def test_a_python_without_the_package_gets_one_line_naming_the_fix(tmp_path):
    """What `.venv/bin/dvc repro` without the venv on PATH runs into: the stage's python lacks vitinspect."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-S", str(ROOT / "stages/prepare.py")], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot import vitinspect" in lines[0] and "source .venv/bin/activate" in lines[0], proc.stderr
