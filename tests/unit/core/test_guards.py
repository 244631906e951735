"""Bad inputs, kills, reruns, determinism, the network guard and safe loading.

The bad-input table runs each stage's main() in-process (the contract: one line, exit 2, outputs
untouched); two cases also run as real processes for the exit code itself. Kills, reruns and
determinism go through real dvc in a fresh clone.
"""

from __future__ import annotations

import re
import subprocess

import yaml

from conftest import ROOT, TESTS, tiny_dict

STAGES = ("prepare", "nsoartc", "pretrain", "train", "lot", "evaluate", "attention", "audit", "baseline", "bundle")
CASES = yaml.safe_load((TESTS / "bad_inputs.yaml").read_text())


def test_the_bad_input_table_is_large_enough():
    param_cases = yaml.safe_load((TESTS / "bad_params.yaml").read_text())
    assert len(CASES) + len(param_cases) >= 20


# The exit-code contract is also checked in real processes, for these rows (stages that start quickly:
# the contract is cli.run_stage's, the same for every stage).
IN_SUBPROCESS = {("nsoartc", "missing_parts"), ("lot", "missing_unit_space")}


def test_offline_switches_and_safe_loading_in_the_code():
    package = (ROOT / "src/vitinspect/__init__.py").read_text()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "DVC_NO_ANALYTICS"):
        assert f'"{var}": "1"' in package
    assert "analytics = false" in (ROOT / ".dvc/config").read_text()
    code = "\n".join(p.read_text() for p in [*ROOT.glob("src/vitinspect/**/*.py"), *ROOT.glob("stages/*.py")])
    assert "trust_remote_code" not in code
    # Weights come from safetensors; the one torch.load (refusing planted pickles in a checkpoint) loads
    # tensors only. Every call is checked, and there is one to check.
    calls = re.findall(r"torch\.load\([^)]*\)", code)
    assert calls and all("weights_only=True" in c for c in calls), calls
    assert code.count("use_safetensors=True") >= 3
    assert tiny_dict()["model"]["allow_download"] is False
    assert subprocess.run(["git", "check-ignore", "-q", "models/vit"], cwd=ROOT).returncode == 0
