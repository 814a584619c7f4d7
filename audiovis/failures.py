"""What the command line says when something fails: one line naming the file and the command that repairs it.

:func:`report` is the command line's error boundary (:func:`audiovis.cli.main`). A known failure (an
:class:`~audiovis.errors.AudiovisError`, a damaged or missing workspace file, a full disk, a permission, a
workspace locked by another writer) is one line on stderr and exit status 2; anything else is one line too, exit
status 1. Either way the full traceback is appended to a log file, ``WS/logs/errors.log``, or, when the workspace
cannot be written (a read-only mount) or does not exist, ``errors.log`` in the user's cache folder
(``$XDG_CACHE_HOME/audiovis``, by default ``~/.cache/audiovis``); ``--debug`` also prints it. A log over 1 MiB
is renamed ``errors.log.1`` (replacing the previous one) before the next traceback is written.
"""
from __future__ import annotations

import errno
import os
import re
import sqlite3
import sys
import time
import traceback
import zipfile
from pathlib import Path

from .errors import AudiovisError
from .lock import READERS

LOG_NAME = "errors.log"
LOG_MAX_BYTES = 1 << 20        # then errors.log becomes errors.log.1 and a new one starts
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")    # numpy's tofile/save on a full disk (no errno)

# the stage that writes each workspace file (each stage's OUTPUTS), to name the command that rebuilds it
_STAGE_OF = {"catalog.sqlite": "ingest", "factors.npz": "factorize", "model.pt": "train",
             "evaluation.json": "evaluate", "evaluation.md": "evaluate", "features": "featurize",
             "index": "index"}


def log_path(workspace: str | os.PathLike | None) -> Path:
    """Where a failure's traceback goes: ``WS/logs/errors.log`` when the workspace folder exists and can be
    written, else ``errors.log`` in the user's cache folder."""
    if workspace is not None:
        ws = Path(workspace).expanduser()
        logs = ws / "logs"
        if ws.is_dir() and os.access(ws, os.W_OK) and (not logs.exists() or os.access(logs, os.W_OK)):
            return logs / LOG_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audiovis"
    return cache / LOG_NAME


def describe(e: BaseException, workspace: str | os.PathLike | None) -> str | None:
    """The one line for a known failure (what broke, the file, the repairing command), or None."""
    ws = Path(workspace).expanduser().resolve() if workspace is not None else None
    if isinstance(e, AudiovisError):
        return str(e)
    if isinstance(e, sqlite3.DatabaseError):
        db = ws / "catalog.sqlite" if ws else "catalog.sqlite"
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            return (f"the catalogue '{db}' stayed busy for 30 s (another process is writing to it): run the "
                    f"same command again")
        if isinstance(e, sqlite3.OperationalError) and ("unable to open" in str(e) or "readonly" in str(e)):
            return (f"cannot open the catalogue '{db}' ({e}): check that it exists and that you may read it "
                    f"(and write it, for a command that changes the workspace)")
        return (f"the catalogue '{db}' is damaged ({e}): restore it from a copy, or rebuild the workspace with "
                f"`audiovis run -w {ws or 'WS'} --audio AUDIO_DIR --plays PLAYS`")
    if isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or _SHORT_WRITE.search(str(e))):
        where = e.filename or ws or "the workspace"
        return (f"the disk is full (writing '{where}'): free some space, then run the same command again; "
                f"finished work is kept, nothing half-written is used")
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "is on a read-only file system" if e.errno == errno.EROFS else "cannot be accessed (permission denied)"
        if e.filename and ws is not None and not Path(e.filename).expanduser().resolve().is_relative_to(ws):
            return (f"'{e.filename}' {what}: it is outside the workspace (an --out folder, an input file); "
                    f"give one you may read and write")
        return (f"'{e.filename or ws}' {what}: a command that changes the workspace needs write access "
                f"({', '.join(READERS[:-1])} and {READERS[-1]} only read)")
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"'{e.filename}' is missing: {_repair(Path(e.filename).resolve(), ws, force=False)}"
    if isinstance(e, (ValueError, EOFError, zipfile.BadZipFile, OSError)) and ws is not None:
        f = _workspace_file(e, ws)
        if f is not None:
            return f"'{f}' is damaged or cut short ({_short(e)}): {_repair(f, ws)}"
    return None


def report(e: BaseException, workspace, argv, debug: bool = False) -> int:
    """Say ``e`` in one line on stderr, append its traceback to the log (:func:`log_path`); the exit status."""
    line = describe(e, workspace)
    known = line is not None
    log = _write_log(e, workspace, argv)
    if not known:
        line = (f"unexpected {type(e).__name__}: {_short(e)}" + (f"; traceback in {log}" if log else "")
                + "; please report it")
    if debug:
        traceback.print_exception(e, file=sys.stderr)
    print(f"audiovis: error: {line}", file=sys.stderr)
    return 2 if known else 1


def _write_log(e: BaseException, workspace, argv) -> Path | None:
    for path in dict.fromkeys([log_path(workspace), log_path(None)]):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > LOG_MAX_BYTES:     # keep one older log, not every one
                os.replace(path, path.with_suffix(".log.1"))
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: audiovis "
                        f"{' '.join(map(str, argv))}\n")
                f.write("".join(traceback.format_exception(e)))
            return path
        except OSError:
            continue
    return None


def _repair(f: Path, ws: Path | None, force: bool = True) -> str:
    """The command that rebuilds workspace file ``f`` (``force``: even where its stage's record looks whole)."""
    if ws is not None and f.is_relative_to(ws):
        rel = f.relative_to(ws).parts
        stage = _STAGE_OF.get(rel[0]) if rel else None
        if stage == "ingest":
            return f"rebuild the workspace with `audiovis run -w {ws} --audio AUDIO_DIR --plays PLAYS`"
        if stage is not None:
            return f"rebuild it with `audiovis {stage} -w {ws}{' --force' if force else ''}`"
    return "check the path"


def _workspace_file(e: BaseException, ws: Path) -> Path | None:
    """The workspace file a failure was reading: its ``filename``, else a path in the innermost frames'
    arguments that lies in the workspace (``np.load(path)`` raises ValueError without naming the file)."""
    name = getattr(e, "filename", None)
    if name and Path(name).resolve().is_relative_to(ws):
        return Path(name).resolve()
    tb, found = e.__traceback__, None
    while tb is not None:
        for v in tb.tb_frame.f_locals.values():
            if isinstance(v, os.PathLike) or (isinstance(v, str) and os.sep in v and len(v) < 4096):
                try:
                    p = Path(v).resolve()
                except (OSError, ValueError):
                    continue
                if p.is_relative_to(ws) and p != ws and p.is_file():
                    found = p
        tb = tb.tb_next
    return found


def _short(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[-1] if lines else type(e).__name__
