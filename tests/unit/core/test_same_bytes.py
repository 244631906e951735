"""The same bytes on any x86-64 CPU (issue 36, docs/scale.md "The same bytes on any CPU").

One machine stands in for others: ATen takes the capability to dispatch to (``ATEN_CPU_CAPABILITY``: default,
avx2, avx512), MKL a code path and an instruction cap (``MKL_CBWR``, ``MKL_ENABLE_INSTRUCTIONS``) and oneDNN its own
cap (``ONEDNN_MAX_CPU_ISA``). The package pins ATen and MKL whatever the environment says. The train stage's script runs in fresh
processes under each cap, with the package's pins, and writes the same model and metrics, byte for byte.
A control shows the emulation is real: with the pins off (``VITINSPECT_NUMERICS=native``) the same settings change the weights.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, train_args

# The caps a machine of each kind would impose; "this CPU" imposes none.
EMULATED = {
    "this CPU": {},
    "AVX-512 CPU": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512"},
    "AVX2 CPU": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "SSE4 CPU": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
PINS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_DYNAMIC", "VITINSPECT_NUMERICS", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def _env(extra: dict) -> dict:
    """This environment without any pin or cap (the package sets its own pins), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PINS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _train(data: Path, out: Path, extra: dict) -> dict[str, str]:
    out.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "stages/train.py"), *train_args(data, out, data / "params.yaml")],
                          cwd=out, env=_env(extra), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("vit/model.safetensors", "train.json")}


def test_the_pins_run_avx2_kernels_on_this_cpu():
    code = "import vitinspect, torch; print(torch.backends.cpu.get_cpu_capability())"
    proc = subprocess.run([sys.executable, "-c", code], env=_env({}), capture_output=True, text=True, check=True)
    capability = proc.stdout.strip()
    if capability == "DEFAULT":
        pytest.skip("this CPU has no AVX2: the pinned kernels cannot run here")
    assert capability == "AVX2"


@pytest.mark.slow  # six trainings in fresh processes, about a minute: `make test` runs it, the quick tier does not
def test_train_writes_the_same_bytes_on_every_emulated_cpu(tiny_data, tmp_path):
    """tiny params: 1 torch thread (the thread count is part of what fixes the bytes)."""
    runs = {cpu: _train(tiny_data, tmp_path / cpu.replace(" ", "_"), caps) for cpu, caps in EMULATED.items()}
    assert len({tuple(r.items()) for r in runs.values()}) == 1, runs
    # The control: with oneDNN on (its convolution and GELU), the SSE4 cap alone gives other weights.
    on = {"VITINSPECT_NUMERICS": "native"}
    control = [_train(tiny_data, tmp_path / f"native_{cpu.split()[0]}", {**on, **EMULATED[cpu]}) for cpu in ("this CPU", "SSE4 CPU")]
    assert control[0]["vit/model.safetensors"] != control[1]["vit/model.safetensors"]
