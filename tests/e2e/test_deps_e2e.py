"""dvc.yaml's deps cannot drift from the code: each stage lists exactly the project modules its script
imports (transitively, read from the AST) and the params sections it reads; every stage sets the
offline environment before any third-party import."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


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


def load_dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_offline_environment_is_in_force_when_transformers_reads_it(built_project):
    """Every stage of the tiny project's `dvc repro` ran with no Hugging Face variable in its environment and
    under the network guard (conftest._build_project): each stage that imported huggingface_hub found it
    offline (the client reads its environment once, when imported), and nothing tried to connect."""
    hub = [line.split() for line in (built_project.parent / "net.log.hub").read_text().splitlines()]
    by_script = {script: (offline, transformers) for script, offline, transformers in hub if script.endswith(".py")}
    stages = {f"{name}.py" for name in load_dvc()["stages"]}
    assert stages <= set(by_script), stages - set(by_script)  # every stage ran, guarded, and exited normally
    read = {s for s in stages if by_script[s][0] != "-"}
    assert {"train.py", "evaluate.py", "attention.py", "audit.py"} <= read  # the stages that load transformers
    assert all(by_script[s][1] == "True" for s in ("train.py", "evaluate.py", "attention.py"))
    assert {s: by_script[s][0] for s in read} == {s: "True" for s in read}
    assert (built_project.parent / "net.log").read_text() == ""


