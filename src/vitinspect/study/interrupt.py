"""An interrupted `study run` (Ctrl-C, SIGINT, SIGTERM) leaves the project as it found it.

``dvc exp run --queue`` rewrites params.yaml with an experiment's values, stages it, stashes the user's
uncommitted changes (``git stash``) and detaches HEAD, and puts everything back when it ends. Killed in the
middle, it leaves all four behind; a queue worker it started trains on in the background. So the study
runs every dvc command in a session of its own (a Ctrl-C at the terminal does not reach it) and, while one
runs, holds a signal back until the command has ended. Then :class:`Guard` removes the study's experiments
still queued, stops the queue worker and kills its running task (``dvc queue stop --kill``), and puts
params.yaml (file and index), HEAD and the stash back as they were before anything was queued.
"""

from __future__ import annotations

import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from vitinspect.core.errors import VitinspectError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(VitinspectError):
    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


def command(cmd: list[str], check: bool = True, output: bool = True) -> str:
    """Run a tool in a session of its own (a terminal's Ctrl-C goes to the study, not to it); its stdout.
    output=False: no pipes (a command that leaves a daemon behind would hold them open)."""
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    proc = subprocess.run(cmd, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    if check and proc.returncode != 0:
        last = ((proc.stderr or proc.stdout) or "").strip().splitlines()
        raise VitinspectError(f"{' '.join(cmd)} failed: {last[-1] if last else proc.returncode}")
    return proc.stdout or ""


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, start_new_session=True)


class Workspace:
    """params.yaml (its bytes and its index entry), HEAD and the top of ``git stash`` as they are now."""

    def __init__(self, params: str | Path = "params.yaml"):
        self.params = Path(params)
        self.bytes = self.params.read_bytes()
        self.index = _git("ls-files", "-s", "--", str(self.params)).stdout.split()[:2]  # [mode, blob] or []
        self.branch = _git("symbolic-ref", "-q", "HEAD").stdout.strip()
        self.head = _git("rev-parse", "-q", "--verify", "HEAD").stdout.strip()
        self.stash = _git("rev-parse", "-q", "--verify", "refs/stash").stdout.strip()

    def restore(self) -> list[str]:
        """Put back what a dvc command cut short changed; what was done, in words (nothing: [])."""
        done = []
        if self.params.read_bytes() != self.bytes:
            self.params.write_bytes(self.bytes)
            done.append(f"{self.params} restored")
        index = _git("ls-files", "-s", "--", str(self.params)).stdout.split()[:2]
        if index != self.index:
            if self.index:
                _git("update-index", "--cacheinfo", f"{self.index[0]},{self.index[1]},{self.params}")
            else:
                _git("rm", "-q", "--cached", "--", str(self.params))
            done.append(f"{self.params} unstaged")
        if self.branch and not _git("symbolic-ref", "-q", "HEAD").stdout.strip():
            if _git("rev-parse", "HEAD").stdout.strip() == _git("rev-parse", self.branch).stdout.strip():
                _git("symbolic-ref", "HEAD", self.branch)
                done.append(f"HEAD back on {self.branch.removeprefix('refs/heads/')}")
        top = _git("rev-parse", "-q", "--verify", "refs/stash").stdout.strip()
        if top and top != self.stash:
            # dvc's stash of the user's changes, applied back already: drop it only if the work tree holds it all
            if _git("diff", "--quiet", "stash@{0}", "--").returncode == 0:
                _git("stash", "drop", "-q")
                done.append("dvc's stash of your changes dropped (the work tree holds them)")
            else:
                done.append("dvc left your uncommitted changes in stash@{0}: git stash pop")
        return done


class Guard:
    """SIGINT and SIGTERM handlers around the queueing and running of ``names``.

    A signal raises :class:`Interrupted` at once, unless a dvc command is running (:meth:`held`): then it
    is raised when the command has ended. On the way out of an interrupt, the study's queued experiments
    are removed, the queue stopped and its running task killed, and the workspace restored.
    """

    def __init__(self, names: list[str], status):
        self.names, self.status = list(names), status  # status(): name -> Queued / Running / ...
        self.signum = None
        self.holding = False
        self.started = False  # whether this study started a queue worker
        self.workspace = None
        self.old = {}

    def queued(self) -> None:
        """Every experiment is queued: dvc touches the workspace no more (the queue runs in copies of it), and
        params.yaml is the user's again (an edit made while the queue runs is kept)."""
        self.workspace = None

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum
        if not self.holding:
            raise Interrupted(signum)

    @contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __enter__(self):
        self.workspace = Workspace()
        self.old = {s: signal.signal(s, self._handler) for s in SIGNALS}
        return self

    def __exit__(self, kind, exc, tb):
        self.holding = True  # a second Ctrl-C does not cut the clean-up short
        try:
            if isinstance(exc, Interrupted):
                steps = self.stop_queue() + (self.workspace.restore() if self.workspace else [])
                raise Interrupted(exc.signum, f"study run interrupted by {signal.Signals(exc.signum).name}: "
                                  + "; ".join(steps or ["nothing was queued yet"])) from None
            if exc is not None and self.workspace:
                self.workspace.restore()
        finally:
            for s, h in self.old.items():
                signal.signal(s, h)
        return False

    def stop_queue(self, rounds: int = 5) -> list[str]:
        """Remove the study's queued experiments, then stop the worker and kill its task, until none of
        the study's is queued or running (a worker may take the next task while it is told to stop)."""
        removed, killed, stopped = set(), set(), False
        for _ in range(rounds):
            status = {n: s for n, s in self.status().items() if n in self.names}
            queued = [n for n, s in status.items() if s == "Queued"]
            running = [n for n, s in status.items() if s == "Running"]
            if not queued and not running and (stopped or not self.started):
                break
            if queued:
                command(["dvc", "queue", "remove", *queued], check=False)
                removed.update(queued)
            if self.started or running:  # never another's worker while this study started none
                command(["dvc", "queue", "stop", "--kill"], check=False)
                killed.update(running)
                stopped = True
            time.sleep(1)
        if killed:  # their Failed entries too: nothing of this study stays in `dvc queue status`
            command(["dvc", "queue", "remove", *sorted(killed)], check=False)
        steps = [f"{len(removed)} queued experiment(s) removed"] if removed else []
        if stopped:
            steps.append("queue worker stopped" + (f", {', '.join(sorted(killed))} killed" if killed else ""))
        return steps
