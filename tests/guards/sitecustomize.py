"""Test-only hooks, active in subprocesses whose PYTHONPATH holds this folder (see conftest.run).

- VITINSPECT_TEST_NET_LOG=<file>: every AF_INET/AF_INET6 connect is refused and recorded in <file>;
  each guarded process adds its pid and script name to <file>.on and, when it exits, what its Hugging Face
  clients read of the environment to <file>.hub: the script name, huggingface_hub's HF_HUB_OFFLINE (or "-"
  where it was never imported) and whether transformers was imported.
- VITINSPECT_TEST_KILL_AT_REPLACE=<n>: the process SIGKILLs itself at its n-th os.replace (an output
  about to be renamed into place: the middle of writing outputs).
- VITINSPECT_TEST_KILL_AT_STEP=<n>: the process SIGKILLs itself at its n-th optimizer step.
- VITINSPECT_TEST_KILL_AT_SAVE=<n>: at its n-th torch.save (the Trainer saves a checkpoint's optimizer,
  scheduler and RNG state with it, after the weights and before trainer_state.json), the process writes
  the first half of the file and SIGKILLs itself: a kill in the middle of a checkpoint write.
- VITINSPECT_TEST_KILL_SCRIPT=<file name>: kills happen only in a process running that script
  (e.g. train.py), not in dvc itself.
"""

import os
import signal
import socket
import sys

_net_log = os.environ.get("VITINSPECT_TEST_NET_LOG")
if _net_log:
    with open(_net_log + ".on", "a") as _fh:  # which processes ran under the guard (the tests check the stages did)
        _fh.write(f"{os.getpid()} {os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else '-'}\n")
    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _refuse(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with open(_net_log, "a") as fh:
                fh.write(f"{os.getpid()} connect {address!r}\n")
            raise OSError(f"network disabled by the test guard: connect to {address!r}")

    def connect(self, address):
        _refuse(self, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _refuse(self, address)
        return _connect_ex(self, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex

    def _record_hub():
        hub = sys.modules.get("huggingface_hub.constants")
        with open(_net_log + ".hub", "a") as fh:
            fh.write(f"{os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else '-'} "
                     f"{getattr(hub, 'HF_HUB_OFFLINE', '-')} {'transformers' in sys.modules}\n")

    import atexit

    atexit.register(_record_hub)


def _kill_on_nth(obj, name, n):
    original, count = getattr(obj, name), [0]

    def wrapper(*args, **kwargs):
        script = os.environ.get("VITINSPECT_TEST_KILL_SCRIPT")
        if script and os.path.basename(sys.argv[0] if sys.argv else "") != script:
            return original(*args, **kwargs)
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)


if os.environ.get("VITINSPECT_TEST_KILL_AT_REPLACE"):
    _kill_on_nth(os, "replace", int(os.environ["VITINSPECT_TEST_KILL_AT_REPLACE"]))

if os.environ.get("VITINSPECT_TEST_KILL_AT_STEP"):
    import torch

    _kill_on_nth(torch.optim.AdamW, "step", int(os.environ["VITINSPECT_TEST_KILL_AT_STEP"]))

if os.environ.get("VITINSPECT_TEST_KILL_AT_SAVE"):
    import torch

    _save, _saves = torch.save, [0]

    def _save_then_cut(obj, f, *args, **kwargs):
        script = os.environ.get("VITINSPECT_TEST_KILL_SCRIPT")
        mine = not script or os.path.basename(sys.argv[0] if sys.argv else "") == script
        result = _save(obj, f, *args, **kwargs)
        _saves[0] += mine
        if mine and _saves[0] == int(os.environ["VITINSPECT_TEST_KILL_AT_SAVE"]) and isinstance(f, (str, os.PathLike)):
            size = os.path.getsize(f)
            with open(f, "r+b") as fh:
                fh.truncate(size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    torch.save = _save_then_cut
