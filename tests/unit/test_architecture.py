"""The folder tree is the architecture: dependencies between subpackages flow one way (no cycle, no upward
import), only the `vitinspect` command and the study read params, subpackage ``__init__`` files hold no code (the stages'
DVC deps are computed from imports), and no module or stage ``main`` outgrows a reader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "vitinspect"

# Bottom to top: a module may import its own subpackage and any below it, never one above.
LAYERS = ("core", "data", "composite", "evaluation", "model", "explain", "visualization", "deploy", "config",
          "app", "review", "study")
# Who may read params.yaml's schema: config itself, the command that renders parts with a params file, and
# the study, which validates its --set overrides with the params schema before queueing.
CONFIG_READERS = {"config", "app", "study"}
MAX_MODULE_LINES = 400
MAX_STAGE_MAIN_LINES = 50


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The subpackage of ``vitinspect.x.y`` (x); the package's own ``__init__``/``__main__`` sit at the
    bottom and the top."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    if parts[1] == "__main__":
        return "app"
    return parts[1]


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it (lazy imports count), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "vitinspect" and _exists(name):
                found.add(name)
    return found


def _exists(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(root.rglob("*.py"))}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for mod, targets in graph.items():
        for t in sorted(targets):
            a, b = layer_of(mod), layer_of(t)
            if a not in rank or b not in rank:
                bad.append(f"{mod} -> {t}: {a if a not in rank else b} is not a known layer")
            elif rank[b] > rank[a]:
                bad.append(f"{mod} ({a}) imports {t} ({b}), a layer above it")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each a cycle of imports."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def config_readers(graph: dict[str, set[str]]) -> list[str]:
    return [f"{mod} imports {t}" for mod, targets in graph.items() for t in sorted(targets)
            if layer_of(t) == "config" and layer_of(mod) not in CONFIG_READERS]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_upward_import():
    assert upward_imports(import_graph()) == []


def test_deploy_and_the_library_never_read_params():
    assert config_readers(import_graph()) == []


def test_the_checks_catch_what_they_are_for():
    graph = {"vitinspect.data.a": {"vitinspect.model.b"}, "vitinspect.model.b": {"vitinspect.data.a"},
             "vitinspect.deploy.c": {"vitinspect.config.params"}, "vitinspect.core.d": set()}
    assert cycles(graph) == [["vitinspect.data.a", "vitinspect.model.b"]]
    assert upward_imports(graph) == ["vitinspect.data.a (data) imports vitinspect.model.b (model), a layer above it",
                                     "vitinspect.deploy.c (deploy) imports vitinspect.config.params (config), a layer above it"]
    assert config_readers(graph) == ["vitinspect.deploy.c imports vitinspect.config.params"]


def test_every_subpackage_is_a_known_layer_and_its_init_holds_no_code():
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert set(subpackages) == set(LAYERS), subpackages
    for sub in subpackages:
        body = ast.parse((PACKAGE / sub / "__init__.py").read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), f"{sub}/__init__.py"
    assert not [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]


def test_no_module_outgrows_a_reader():
    long = {str(p.relative_to(ROOT)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


@pytest.mark.parametrize("script", sorted((ROOT / "stages").glob("[!_]*.py")), ids=lambda p: p.stem)
def test_a_stage_main_reads_params_calls_the_library_and_writes(script):
    mains = [n for n in ast.parse(script.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1
    assert mains[0].end_lineno - mains[0].lineno + 1 <= MAX_STAGE_MAIN_LINES
