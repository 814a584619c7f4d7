"""The workspace's writer lock: one process writes to a workspace at a time; readers never wait.

A writer (every stage, ``audiovis run``, ``add``...) holds ``flock`` on ``WS/.audiovis.lock`` while it runs and
writes its PID and command into the file; the operating system releases the lock when the process ends, however
it ends (``kill -9`` included), so a crash never leaves a workspace locked. A second writer exits at once with a
message naming the holder, or waits (``--wait``). Readers (:data:`READERS`) take no lock; :func:`lock_holder`
tells them, e.g. the page, that the workspace is being rebuilt.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import WorkspaceError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no advisory locks; writers are not kept apart)
    fcntl = None

LOCK_NAME = ".audiovis.lock"     # in the workspace folder: flock'ed by the one writer, holds who it is
LOCK_PROBE_S = 1.0              # a writer that finds the lock taken retries this long (a reader's probe is brief)
# the subcommands that only read a workspace: they never take its writer lock and work read-only
READERS = ("check", "serve", "report", "recommend", "embed", "export", "attribute")
_HELD: dict[tuple, list] = {}   # (workspace, thread) -> [fd, depth]: the writer locks held here (re-entrant)


class WorkspaceLocked(WorkspaceError):
    """Another process is writing to the workspace; ``holder`` says who (:func:`lock_holder`)."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


def _describe(holder: dict) -> str:
    return f"PID {holder.get('pid', '?')}: {holder.get('command') or 'unknown command'}"


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike, wait: bool = False, command: str | None = None) -> Iterator[None]:
    """Hold the workspace's writer lock (``flock`` on ``WS/.audiovis.lock``) for the block.

    One writer at a time: when another process holds it, raise :class:`WorkspaceLocked` naming the holder's
    PID and command, or with ``wait`` say so on stderr and wait until it is released. The lock dies with its
    process (``kill -9`` included). Re-entrant within a thread; another thread of this process is another
    writer. Readers never take it (:func:`lock_holder` only looks).
    """
    root = Path(path).expanduser().resolve()
    key = (root, threading.get_ident())      # another thread (a second visitor of the page) is another writer
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            _acquire(fd, root, wait)
            me = {"pid": os.getpid(), "command": command or " ".join(sys.argv), "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        _HELD[key] = [fd, 1]
        try:
            yield
        finally:
            del _HELD[key]
            if fcntl is not None:
                os.ftruncate(fd, 0)                  # nobody: a stale name never outlives its writer
    finally:
        os.close(fd)                                 # releases the lock


def _acquire(fd: int, root: Path, wait: bool) -> None:
    deadline = time.monotonic() + LOCK_PROBE_S
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = _read_holder(fd)
        if wait and not said and holder:
            print(f"audiovis: waiting for the writer of '{root}' to finish ({_describe(holder)})", file=sys.stderr)
            said = True
        if not wait and time.monotonic() > deadline:
            holder = holder or {}
            raise WorkspaceLocked(
                f"workspace '{root}' is being written by another writer ({_describe(holder)}); wait for it "
                f"to finish, or run the command again with --wait", holder)
        time.sleep(0.05)


def _read_holder(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0)
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def lock_holder(path: str | os.PathLike) -> dict | None:
    """Who holds the workspace's writer lock: ``{"pid", "command", "since"}``, or None when nobody does.

    Takes no lock that a writer would wait for (a shared probe of a few microseconds, which a writer starting
    at that moment retries past) and writes nothing: works on a read-only workspace.
    """
    if fcntl is None:
        return None
    try:
        fd = os.open(Path(path).expanduser() / LOCK_NAME, os.O_RDONLY)
    except OSError:                                  # never written to: no writer
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {}
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
