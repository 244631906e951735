"""Every stage sets the offline environment before any third-party import, as it runs under `dvc repro`
(dvc.yaml's deps against the code: tests/unit/test_deps.py)."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


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


