"""How a stage script starts and fails: one line on stderr and exit code 2 for user errors.

(The offline environment is set by the package itself, ``vitinspect/__init__.py``, on import.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vitinspect.errors import VitinspectError


def output_path(value: str) -> str:
    """argparse type for an output: it must resolve inside the project (the working directory,
    where dvc runs stages), so no stage writes elsewhere, whether by an absolute path or '..'."""
    root = Path.cwd().resolve()
    target = (root / value).resolve()
    if not value or (target != root and root not in target.parents):
        raise VitinspectError(f"output path {value!r} is outside the project ({root}); give a path inside it")
    return value


def run_command(cmd: list[str], check: bool = True) -> str:
    """Run a tool (dvc, git) and return its stdout; a failure becomes one line naming the command."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise VitinspectError(f"{' '.join(cmd)} failed: {last[-1] if last else proc.returncode}")
    return proc.stdout


def run_stage(main, argv=None) -> None:
    """Call ``main(argv)``; turn a VitinspectError into ``error: <message>`` and exit 2.

    Set VITINSPECT_DEBUG=1 to see the traceback instead.
    """
    try:
        main(argv)
    except VitinspectError as exc:
        if os.environ.get("VITINSPECT_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
