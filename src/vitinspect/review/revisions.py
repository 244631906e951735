"""Files as committed at a git revision, or as they are in the workspace: JSON and YAML read with one-line errors.

What `make report` (``review``) reads of the base revision and the workspace, and what the study reads of
each experiment's commit. A file that is not there is None; one that is there but malformed is one line
naming the file and the revision, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitinspect.core.runtime import run_command
from vitinspect.core.errors import VitinspectError


def parse_json(text: str, where: str, kinds: tuple = (dict,)):
    """A JSON value of one of ``kinds`` (an object unless told) from ``text``; a malformed one is one line naming
    ``where`` (the file and the revision)."""
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and numbers too large for the parser
        raise VitinspectError(f"{where}: not valid JSON ({str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__}); "
                              "fix or regenerate the file (dvc repro)") from None
    if not isinstance(value, kinds):
        what = " or ".join({dict: "a JSON object", list: "a JSON list"}[k] for k in kinds)
        raise VitinspectError(f"{where}: must be {what}, got {type(value).__name__}; fix or regenerate the file (dvc repro)")
    return value


def at_revision(rev: str, path: str, kinds: tuple = (dict,)):
    """A JSON object (or one of ``kinds``) as committed at ``rev``; None if it is not there; a malformed one is one
    line naming it."""
    text = run_command(["git", "show", f"{rev}:{path}"], check=False)
    return parse_json(text, f"{path} at revision {rev}", kinds) if text.strip() else None


def in_workspace(path: str):
    p = Path(path)
    if not p.is_file():
        return None
    try:
        text = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VitinspectError(f"{path} (workspace): cannot read it ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    return parse_json(text, f"{path} (workspace)")


def check_yaml_at_revision(rev: str, path: str) -> None:
    """dvc.lock and params.yaml at the base: one line naming the file and revision when they are not YAML
    (dvc's own error on them names neither)."""
    import yaml

    text = run_command(["git", "show", f"{rev}:{path}"], check=False)
    if not text.strip():
        return
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise VitinspectError(f"{path} at revision {rev}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    if not isinstance(value, dict):
        raise VitinspectError(f"{path} at revision {rev}: must be a YAML mapping, got {type(value).__name__}")
