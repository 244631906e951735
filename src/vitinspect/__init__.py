"""vitinspect: a DVC pipeline for visual inspection of connector terminals with a Vision Transformer.

Importing the package (any of its modules) first makes the run offline: nothing reaches a model or
dataset hub or an analytics server. It happens here, before any module of the package imports
transformers, datasets or huggingface_hub, which read these variables once, when first imported.
A user who sets one of them keeps their value.

It also pins the CPU numerics (whatever the environment says, unless ``VITINSPECT_NUMERICS=native``), for the
same reason (torch reads these once, when loaded): the same bytes on
any x86-64 CPU with AVX2 (docs/scale.md, "The same bytes on any CPU"). ATen's vectorised kernels run their
AVX2 build even where AVX-512 is there (``ATEN_CPU_CAPABILITY``); MKL runs its SSE2 code path, the one it
keeps bit for bit on Intel and other vendors' CPUs alike (``MKL_CBWR=COMPATIBLE``), with the thread count
it is given (``MKL_DYNAMIC``); oneDNN is switched off where torch is set up (vitinspect.core.runtime.set_threads).
"""

import os
import platform

__version__ = "0.1.0"

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_name, _value)

# Pinned, not defaulted: a capability or code path set in the environment (or by a CPU) must not change the
# bytes dvc.lock records. VITINSPECT_NUMERICS=native leaves them to the CPU: faster, other bytes elsewhere.
if os.environ.get("VITINSPECT_NUMERICS") != "native":
    if platform.machine().lower() in ("x86_64", "amd64"):  # other CPUs have other capability names
        os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
    os.environ["MKL_CBWR"] = "COMPATIBLE"
    os.environ["MKL_DYNAMIC"] = "FALSE"
