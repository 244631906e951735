"""Test-only hooks, active in subprocesses whose PYTHONPATH holds this folder (see conftest.run).

- VITINSPECT_TEST_NET_LOG=<file>: every AF_INET/AF_INET6 connect is refused and recorded in <file>;
  each guarded process adds its pid and script name to <file>.on.
- VITINSPECT_TEST_KILL_AT_REPLACE=<n>: the process SIGKILLs itself at its n-th os.replace (an output
  about to be renamed into place: the middle of writing outputs).
- VITINSPECT_TEST_KILL_AT_STEP=<n>: the process SIGKILLs itself at its n-th optimizer step.
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
