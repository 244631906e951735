"""How a stage script starts and fails: one line on stderr and exit code 2 for user errors.

(The offline environment is set by the package itself, ``vitinspect/__init__.py``, on import.)
"""

from __future__ import annotations

import atexit
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import check_replaceable


def _no_progress_monitor() -> None:
    """tqdm starts a monitor thread with the first progress bar (datasets' load_from_disk makes one). A stage
    forks workers and figure processes after that; a child forked while the monitor holds tqdm's lock hangs
    on its first bar. Bars still print; only the thread that retunes their refresh rate is not started."""
    try:
        import tqdm.std
    except ImportError:
        return
    tqdm.std.tqdm.monitor_interval = 0


_no_progress_monitor()


def output_path(value: str, file: bool = False) -> str:
    """argparse type for an output: it must resolve inside the project (the working directory,
    where dvc runs stages), so no stage writes elsewhere, whether by an absolute path or '..'; and nothing
    but a file or a folder may be there (a symbolic link, a FIFO, a socket or a device is refused and left
    alone: the atomic write, vitinspect.core.storage.check_replaceable, would replace it). Whether a file or a
    folder may be replaced is the atomic write's to check, which knows which kind it writes; ``file=True`` (a
    caller that writes a file there) refuses a folder at once, before any work."""
    root = Path.cwd().resolve()
    target = (root / value).resolve()
    if not value or (target != root and root not in target.parents):
        raise VitinspectError(f"output path {value!r} is outside the project ({root}); give a path inside it")
    try:
        mode = os.lstat(value).st_mode
    except FileNotFoundError:
        return value
    except OSError as exc:
        raise VitinspectError(f"output path {value!r}: cannot check it ({exc.strerror})") from None
    if not (stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and not file)):
        check_replaceable(value)  # raises: names what is there
    return value


def run_command(cmd: list[str], check: bool = True) -> str:
    """Run a tool (dvc, git) and return its stdout; a failure becomes one line naming the command."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise VitinspectError(f"{' '.join(cmd)} failed: {last[-1] if last else proc.returncode}")
    return proc.stdout


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_stage(main, argv=None) -> None:
    """Call ``main(argv)``; turn a VitinspectError into ``error: <message>`` and exit 2.

    Anything else a stage raises still ends in one line and exit 2: an OSError names its file,
    a MemoryError says what to lower, any other exception says it is a bug to report and how to
    see the traceback. Set VITINSPECT_DEBUG=1 to see the traceback instead.
    """
    try:
        main(argv)
        if getattr(main, "__module__", None) == "__main__":  # a stage run as a script, not a call from a test
            exit_finished()
    except VitinspectError as exc:
        if os.environ.get("VITINSPECT_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # the catch-all: one line, never a traceback unless asked for
        if os.environ.get("VITINSPECT_DEBUG") == "1":
            raise
        if isinstance(exc, OSError) and exc.filename:
            line = f"{exc.filename}: {exc.strerror or _first_line(exc)}"
        elif isinstance(exc, MemoryError):
            line = "out of memory; lower data.n_images, data.image_size or the batch sizes"
        else:
            line = f"unexpected {type(exc).__name__}: {_first_line(exc)} (a bug: please report it)"
        print(f"error: {line}; run with VITINSPECT_DEBUG=1 for the traceback", file=sys.stderr)
        sys.exit(2)


def exit_finished() -> None:
    """End a stage whose outputs are written, without the interpreter's teardown.

    Tearing down a process that imported torch and transformers (freeing every module and object one
    by one) took 1.3-2.0 s here, on every heavy stage, for nothing: the process ends anyway. The exit
    handlers still run (atexit: logging, multiprocessing, temporary directories, dvclive) and stdout and
    stderr are flushed first. While any non-daemon thread is still running, the ordinary exit waits for it.
    """
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cores() -> int:
    """CPU cores this process may run on: the one rule for what ``auto`` is worth. A stage's processes
    (``data.num_proc``, vitinspect.config.sizing.resolve_workers) take them all; its torch threads
    (``train.threads``, :func:`set_threads`) share them among the DVC queue workers."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def queue_workers() -> int:
    """DVC queue workers running on this machine (``dvc queue start -j N`` starts N ``dvc exp queue-worker``
    processes); 1 when there are none (a plain ``dvc repro``)."""
    n = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        n += b"queue-worker" in args and b"exp" in args
    return max(1, n)


def set_threads(value) -> int:
    """Torch's intra-op threads for a heavy stage: a number, or ``auto`` = :func:`cores` // DVC queue workers,
    so experiments run side by side share the cores instead of fighting over them (docs/scale.md: two
    2-thread trainings on 2 cores ran 3.6x slower). ``num_proc``'s ``auto`` is all of :func:`cores`, not
    shared: a different count on purpose. Returns the count.

    The thread count changes the last bits of the weights (reductions split across threads), so the same
    bytes on every machine need a number here, not ``auto``. oneDNN is switched off: its convolutions and
    GELU pick their code by the CPU (and its cache sizes), so torch's own kernels run instead, on MKL's
    pinned path (vitinspect/__init__.py); ``VITINSPECT_NUMERICS=native`` switches it back on, faster by about 5 %
    and no longer the same bytes on another CPU."""
    import torch

    n = int(value) if value != "auto" else max(1, cores() // queue_workers())
    torch.set_num_threads(n)
    torch.backends.mkldnn.enabled = os.environ.get("VITINSPECT_NUMERICS") == "native"  # docs/scale.md: the same bytes on any CPU
    return n
