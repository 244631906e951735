"""The README and docs/ lead somewhere: every relative link resolves (the file, and the heading of an
``#anchor`` by GitHub's slug), and every command in README's shell blocks exists (a Makefile target, a
console script of pyproject.toml and its subcommand, a ``python -m`` module, a dvc subcommand)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "parts" / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, spaces and
    hyphens kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())  # a '#' line inside a code block is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?) *#*$", text, re.M)}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    name = page.relative_to(root)
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{name}: {target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{name}: {target}: no heading with that anchor")
    return problems


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):(?!=)", (ROOT / "Makefile").read_text(), re.M))


def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def subcommands_of(parser) -> set[str]:
    import argparse

    return {name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices}


def dvc_subcommands() -> set[str]:
    from dvc.cli.parser import get_main_parser

    return subcommands_of(get_main_parser())


def vitinspect_subcommands() -> set[str]:
    from vitinspect.app.command import parser

    return subcommands_of(parser())


def shell_commands(page: Path) -> list[list[str]]:
    """Each simple command (split at &&, ||, | and ;) on the lines of the page's sh/bash code blocks."""
    out = []
    for lang, body in FENCE.findall(page.read_text()):
        if lang not in ("sh", "bash", "shell"):
            continue
        for line in body.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|\|\||[|;]", line):
                if part.strip():
                    out.append(shlex.split(part))
    return out


def missing_commands(commands: list[list[str]]) -> list[str]:
    targets, scripts = make_targets(), console_scripts()
    dvc_subs, vit_subs = dvc_subcommands(), vitinspect_subcommands()
    problems = []
    for argv in commands:
        words = [w for w in argv if "=" not in w or w.startswith("-")]  # VAR=value arguments of make
        tool, rest = words[0], words[1:]
        if tool == "make":
            problems += [f"make {t}: no such Makefile target" for t in rest if not t.startswith("-") and t not in targets]
        elif tool == "dvc":
            if not rest or rest[0] not in dvc_subs:
                problems.append(f"{' '.join(argv)}: no such dvc subcommand")
        elif tool in scripts:
            if tool == "vitinspect" and rest and not rest[0].startswith("-") and rest[0] not in vit_subs:
                problems.append(f"{' '.join(argv)}: no such vitinspect subcommand")
        elif tool == "git":  # git's everyday porcelain, as a DVC user types it beside dvc
            if not rest or rest[0] not in ("add", "commit", "checkout", "push", "pull", "clone", "status", "diff", "log", "switch"):
                problems.append(f"{' '.join(argv)}: not a git command a README should need")
        elif tool in ("python", "python3") and rest[:1] == ["-m"]:
            if importlib.util.find_spec(rest[1]) is None:
                problems.append(f"python -m {rest[1]}: no such module")
        else:
            problems.append(f"{' '.join(argv)}: not a make target, console script, python -m module or dvc command")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_readme_is_short_and_keeps_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make repro" in text and "make test" in text
    for doc in ("pipeline", "data", "decisions", "attention", "audit", "peer", "pretraining", "study", "inspection",
                "scale", "pull-requests", "errors", "tests"):
        assert f"](docs/{doc}.md)" in text, doc  # every topic page is reachable from the README


def test_every_command_in_the_readme_exists():
    commands = shell_commands(ROOT / "README.md")
    assert len(commands) >= 10
    assert missing_commands(commands) == []


def test_the_checks_catch_a_broken_link_anchor_and_command(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## The lot, and 95 % intervals\n\n```sh\n# not a heading\n```\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#the-lot-and-95--intervals) [self](#top-b) [gone](c.md) [bad](a.md#not-a-heading)\n\n# Top b\n")
    problems = broken_links(page, root=tmp_path)
    assert problems == ["b.md: c.md: no such file", "b.md: a.md#not-a-heading: no heading with that anchor"]
    assert missing_commands([["make", "repro"], ["make", "nosuch"], ["dvc", "exp", "run"], ["dvc", "nosuch"],
                             ["vitinspect", "inspect"], ["vitinspect", "nosuch"], ["python", "-m", "vitinspect.study"],
                             ["python", "-m", "vitinspect.nosuch"], ["rm", "-rf", "x"], ["make", "study", "STUDY_ARGS=--seeds 5"]]) == [
        "make nosuch: no such Makefile target", "dvc nosuch: no such dvc subcommand", "vitinspect nosuch: no such vitinspect subcommand",
        "python -m vitinspect.nosuch: no such module", "rm -rf x: not a make target, console script, python -m module or dvc command"]


def test_the_code_map_names_every_module():
    """docs/pipeline.md's code map has one line per module of the library, under its subpackage's heading."""
    text = (ROOT / "docs/pipeline.md").read_text()
    block = text[text.index("## Layout"):]
    lines = block.splitlines()
    missing = []
    for path in sorted((ROOT / "src/vitinspect").rglob("*.py")):
        rel = path.relative_to(ROOT / "src/vitinspect")
        if rel.name == "__init__.py" and len(rel.parts) > 1:
            continue
        sub = f"  {rel.parts[0]}/" if len(rel.parts) > 1 else None
        start = next((i for i, line in enumerate(lines) if sub and line.startswith(sub)), 0)
        if not any(line.strip().startswith(rel.name + " ") for line in lines[start:]):
            missing.append(str(rel))
    assert missing == []
