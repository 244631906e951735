"""`vitinspect inspect --watch DIR`: judge part folders as they appear in DIR, one row each, appended to --out.

A part folder is judged once its files have stopped changing for ``settle`` seconds (its names, sizes and
modification times looked at every ``poll`` seconds). A part that is still incomplete then (a view missing,
or a view that does not read: still being written) is looked at again whenever its files change; only when
it has stayed that way for ``timeout`` seconds does it get an error row. A judged folder is judged again when
its identity changes (device, inode, modification or change time: a name deleted and created again, or
files added or removed). A restart reads the parts already in --out and does not judge them again. SIGINT or SIGTERM ends
the watch after the rows judged so far are written (exit 130 or 143).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vitinspect.app.lot_reader import read_part
from vitinspect.core.errors import VitinspectError


@dataclass
class Pending:
    """A part folder seen but not yet given a row."""

    contents: tuple  # contents_state() of the folder
    changed: float  # time.monotonic() when the contents were last seen to change
    tried: bool = False  # read since then
    error: str | None = None  # what that read said


def identity(st: os.stat_result) -> tuple:
    """A folder's identity: device, inode, modification and change times (the change time cannot be set back:
    a folder deleted and made again under the same name, even with its inode reused and its times copied, differs)."""
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns


def state(folder: Path) -> tuple | None:
    """What a judged folder is compared by on later looks: its identity, ("unreadable", errno) when it cannot
    be looked at, None when it is gone. One stat, no listing."""
    try:
        return identity(os.stat(folder))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("unreadable", exc.errno)


def contents_state(folder: Path) -> tuple | None:
    """(folder identity, its visible files' names, sizes and modification times); None when it is gone.
    A folder that cannot be read gives a state that stays the same while it stays unreadable."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("unreadable", exc.errno)
    try:
        files = []
        with os.scandir(folder) as it:
            for e in it:
                if not e.name.startswith("."):
                    s = e.stat()
                    files.append((e.name, s.st_size, s.st_mtime_ns))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return (identity(st), "unreadable", exc.errno)
    return (identity(st), tuple(sorted(files)))


class _Stop:
    """SIGINT and SIGTERM: raise KeyboardInterrupt at once, except while rows are being written (then the
    write finishes and the watch stops right after)."""

    def __init__(self):
        self.signal = None
        self.writing = False

    def __call__(self, sig, frame):
        self.signal = sig
        if not self.writing:
            raise KeyboardInterrupt


class Watcher:
    """``judge(folders, read)`` -> rows (read: (views or None, error) per folder); ``write(rows)`` appends them to
    --out; ``show(rows)`` prints them, False once stdout is closed; ``cell(path)`` is a part's cell in --out."""

    def __init__(self, views: list[str], image_size: int, folder: Path, poll: float, settle: float, timeout: float,
                 max_parts: int | None, judge, write, show, cell):
        self.views, self.image_size, self.folder = views, image_size, folder
        self.poll, self.settle, self.timeout, self.max_parts = poll, settle, timeout, max_parts
        self.judge, self.write, self.show, self.cell = judge, write, show, cell
        self.seen: dict[str, tuple | None] = {}  # name -> its state (see state()) when its row was written
        self.pending: dict[str, Pending] = {}
        self.done = 0
        self.failed = False

    def resume(self, cells: set[str]) -> int:
        """Count as judged the folders of DIR whose rows --out already holds; how many."""
        n = 0
        for d in self._folders():
            if self.cell(d) in cells or self.cell(Path(os.path.abspath(d))) in cells:
                self.seen[d.name] = state(d)
                n += 1
        return n

    def _folders(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if not p.name.startswith(".") and p.is_dir())
        except FileNotFoundError:
            raise VitinspectError(f"--watch {self.folder}: the folder is gone") from None
        except OSError as exc:
            raise VitinspectError(f"--watch {self.folder}: cannot list it ({exc.strerror})") from None

    def _look(self) -> list[tuple]:
        """One look: (folder, views or None, error, identity) for each folder ready to judge or given up on."""
        ready = []
        now = time.monotonic()
        for d in self._folders():
            now_state = state(d)
            if now_state is None:
                self.pending.pop(d.name, None)
                continue
            if d.name in self.seen and self.seen[d.name] == now_state:
                continue  # judged, unchanged: one stat, not a listing
            contents = contents_state(d)
            if contents is None:
                self.pending.pop(d.name, None)
                continue
            p = self.pending.get(d.name)
            if p is None or p.contents != contents:
                self.pending[d.name] = Pending(contents, now)
                continue
            if now - p.changed < self.settle:
                continue
            if not p.tried:
                views, p.error = read_part(d, self.views, self.image_size)
                p.tried = True
                if views is not None:
                    ready.append((d, views, None, now_state))
                    continue
            if p.error and now - p.changed >= self.timeout:
                ready.append((d, None, p.error, now_state))
        return ready[:None if self.max_parts is None else self.max_parts - self.done]

    def run(self) -> int:
        stop = _Stop()
        signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
        old = {s: signal.signal(s, stop) for s in signals}
        try:
            while self.max_parts is None or self.done < self.max_parts:
                ready = self._look()
                if not ready:
                    time.sleep(self.poll)
                    continue
                rows = self.judge([d for d, *_ in ready], [(v, err) for _, v, err, _ in ready])
                stop.writing = True
                self.write(rows)
                for d, *_, ident in ready:
                    self.seen[d.name] = ident
                    self.pending.pop(d.name, None)
                self.done += len(rows)
                self.failed |= any(r["error"] for r in rows)
                stop.writing = False
                if not self.show(rows):
                    print(f"watch stopped: stdout closed after {self.done} part(s)", file=sys.stderr)
                    return 141
                if stop.signal:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            print(f"watch stopped: {self.done} part(s) given a row", file=sys.stderr)
            return 143 if stop.signal == signal.SIGTERM else 130
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return 1 if self.failed else 0
