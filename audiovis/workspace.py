"""The workspace folder: one embedded database, memory-mapped arrays, checkpoints.

Layout::

    WS/catalog.sqlite        songs, users, plays, labels, segments, report, meta
    WS/factors.npz           WMF factors (train-only fit and the upper-bound fit)
    WS/features/             logmel.npy [shape=(frames, n_mels)] float16, offsets.npy, windows.npy
    WS/model.pt              best checkpoint (config + weights); train_state.pt while training
    WS/evaluation.json/.md   cold-start evaluation
    WS/index/                per-unit top/bottom-k, statistics, per-window activations

Each stage's done-marker (meta ``done:STAGE``) records its settings and the files it wrote, with their sizes
and sampled hashes (:meth:`Workspace.mark_done`); :meth:`Workspace.finished` says whether the stage is still up
to date, :meth:`Workspace.require` whether what a later step reads is there. A workspace this process cannot write
is read through a read-only catalogue (:attr:`Workspace.writable`), and so is every workspace of a process that
sets ``AUDIOVIS_READ_ONLY=1`` (:data:`READ_ONLY_ENV`: the page served without ``--allow-writes``).

Every artifact is written to a temporary name in the same folder and renamed into place, so a killed run
never leaves a half-written file behind. A run killed with ``kill -9`` leaves its temporaries
(``.NAME.XXXXXXXX.SUFFIX``, never read as artifacts); :func:`clean_stale_temps` removes them from the folders
audiovis writes to the first time a process calls :meth:`Workspace.require` on the workspace (every stage
does, first thing), once they are 10 minutes old and no live writer holds their lock.

This module is storage only: it imports no other audiovis module but :mod:`audiovis.errors`, and knows nothing
of the stages that fill the workspace or of cold start (:mod:`audiovis.coldstart`, :mod:`audiovis.append`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import WorkspaceError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no advisory locks, the age rule alone protects writers)
    fcntl = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS songs (
    idx INTEGER PRIMARY KEY,
    song_id TEXT UNIQUE NOT NULL,
    path TEXT NOT NULL,
    duration REAL,
    sr INTEGER,
    channels INTEGER,
    status TEXT NOT NULL DEFAULT 'ok',
    reason TEXT,
    split TEXT
);
CREATE TABLE IF NOT EXISTS users (idx INTEGER PRIMARY KEY, user_id TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS plays (
    user_idx INTEGER NOT NULL, song_idx INTEGER NOT NULL, plays REAL NOT NULL,
    PRIMARY KEY (user_idx, song_idx)
);
CREATE TABLE IF NOT EXISTS labels (song_id TEXT NOT NULL, concept TEXT NOT NULL, value TEXT,
    PRIMARY KEY (song_id, concept));
CREATE TABLE IF NOT EXISTS segments (song_id TEXT NOT NULL, start_s REAL, end_s REAL, concept TEXT, value TEXT);
CREATE TABLE IF NOT EXISTS report (stage TEXT NOT NULL, item TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


# what atomic_path names its temporaries: "." + target name + "." + tempfile's 8 random characters + suffix
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.[^./]+$")
# the folders of a workspace that audiovis writes artifacts to (relative to the workspace)
TEMP_FOLDERS = ("", "features", "features/cache", "index", "uploads", "visualise", "visualise/dreams")
STALE_TEMP_AGE_S = 600.0


def _read_umask() -> int:
    """The process's umask: from /proc where there is one (reading it by setting it races other threads)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1], 8) for ln in f if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


_UMASK = _read_umask()
_CLEANED: set[Path] = set()      # workspaces whose stale temporaries this process has removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary, ``.NAME.XXXXXXXX.SUFFIX``, is locked (``flock``) until the block ends, so that
    :func:`clean_stale_temps` never removes the file of a live writer, in any process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)     # as open() would make it (mkstemp's 0600 hid a shared workspace's files)
    if fcntl is None:
        os.close(fd)
        fd = -1
    else:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a new file: nobody else can hold it
        except OSError:                                       # a filesystem without locks: the age rule remains
            pass
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        try:
            if tmp.exists():
                tmp.unlink()
        finally:
            if fd >= 0:
                os.close(fd)                                  # releases the lock


def clean_stale_temps(root: str | os.PathLike, folders=TEMP_FOLDERS,
                      min_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove what killed writes left behind: :func:`atomic_path` temporaries (and featurize's
    ``.cache.XXXXXXXX.trash`` folders) in ``folders`` of ``root``, not modified for ``min_age_s`` seconds and
    not locked by a live writer. Other files, hidden or not, are never touched. Returns the removed paths."""
    removed = []
    now = time.time()
    for rel in folders:
        try:
            it = os.scandir(Path(root) / rel)
        except OSError:                          # no such folder (yet)
            continue
        with it:
            for e in it:
                if not _TEMP_NAME.match(e.name) or e.is_symlink():
                    continue
                try:
                    if now - e.stat(follow_symlinks=False).st_mtime < min_age_s:
                        continue
                except OSError:
                    continue
                if _remove_unless_locked(Path(e.path), e.is_dir(follow_symlinks=False)):
                    removed.append(Path(e.path))
    return removed


def _remove_unless_locked(path: Path, is_dir: bool) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:              # a live writer holds it
                return False
            except OSError:                      # no locks on this filesystem: the age rule alone decides
                pass
        if is_dir:
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write several arrays atomically into one ``.npz``."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))


def read_json(path: str | os.PathLike, default=None):
    """An optional JSON artifact: its contents, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


FINGERPRINT_SAMPLE = 1 << 16


def fingerprint(path: str | os.PathLike, sample: int = FINGERPRINT_SAMPLE) -> dict:
    """What a done-marker records of one output file: its size and the SHA-1 of its first and last ``sample``
    bytes (the whole file when it is smaller than twice that), so checking a file of gigabytes reads 128 KiB."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(f.read(sample if size > 2 * sample else size))
        if size > 2 * sample:
            f.seek(-sample, os.SEEK_END)
            h.update(f.read(sample))
    return {"size": size, "sha1": h.hexdigest()}


def _open_readonly(path: Path) -> sqlite3.Connection:
    """The catalogue of a workspace this process cannot write, opened read-only: no journal mode is set, no
    table created, nothing written. SQLite's read-only mode needs to create the ``-shm`` file of a WAL database
    when it is missing, which a read-only folder forbids: then the file is opened ``immutable`` (nobody may
    change it meanwhile: true of a read-only mount)."""
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30, check_same_thread=False)


READ_ONLY_ENV = "AUDIOVIS_READ_ONLY"   # "1": this process only reads workspaces (serve without --allow-writes)


class Workspace:
    """A workspace folder. Cheap to open; arrays are memory-mapped on first use.

    Parameters
    ----------
    path : str or Path
        The folder. Created by :func:`audiovis.catalog.ingest`; other stages need it to exist.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().resolve()
        self._db: sqlite3.Connection | None = None

    # ----------------------------------------------------------------- paths
    @property
    def db_path(self) -> Path:
        return self.path / "catalog.sqlite"

    @property
    def features_dir(self) -> Path:
        return self.path / "features"

    @property
    def index_dir(self) -> Path:
        return self.path / "index"

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def factors_path(self) -> Path:
        return self.path / "factors.npz"

    def exists(self) -> bool:
        return self.db_path.exists()

    def require(self, *stages: str) -> None:
        """Raise a clear error when a stage this step depends on has not been run, or when a file its done-marker
        recorded is missing (a cheap ``stat`` each; :meth:`finished` also compares sizes and contents)."""
        if not self.exists():
            raise WorkspaceError(
                f"no workspace at '{self.path}': run `audiovis ingest --workspace {self.path} ...` first")
        if self.path not in _CLEANED and self.writable:   # once per process: what killed runs left behind
            _CLEANED.add(self.path)
            self.clean_stale_temps()
        for stage in stages:
            done = self.get_meta(f"done:{stage}")
            if done is None:
                raise WorkspaceError(
                    f"workspace '{self.path}' has no '{stage}' stage yet: "
                    f"run `audiovis {stage} --workspace {self.path}` first")
            why = self._outputs_changed(done, deep=False)
            if why:
                raise WorkspaceError(f"workspace '{self.path}': the '{stage}' stage's {why}: "
                                     f"run `audiovis {stage} --workspace {self.path}` again")

    # ----------------------------------------------------------------- done-markers
    def mark_done(self, stage: str, info: dict | None = None, outputs=()) -> None:
        """Record that ``stage`` finished: ``info`` (its config, summary...) and, under ``"outputs"``, the
        :func:`fingerprint` of each file in ``outputs`` (paths in the workspace; those missing are skipped)."""
        info = dict(info or {})
        info["outputs"] = self.fingerprints(outputs)
        self.set_meta(f"done:{stage}", info)

    def fingerprints(self, outputs) -> dict[str, dict]:
        """{path relative to the workspace: :func:`fingerprint`} of the files of ``outputs`` that exist."""
        out = {}
        for p in outputs:
            p = self.path / p
            if p.is_file():
                out[p.relative_to(self.path).as_posix()] = fingerprint(p)
        return out

    def finished(self, stage: str, outputs=(), say: bool = True, **expect) -> dict | None:
        """The done-marker of ``stage`` when the stage is up to date, else None (the stage runs again).

        Up to date: the marker exists, its values equal ``expect`` (``config=cfg.to_dict()``), every file in
        ``outputs`` exists and every file it recorded is still there with the size and sampled hash it recorded
        (:func:`fingerprint`). With ``say``, why a recorded stage runs again goes to stderr.
        """
        done = self.get_meta(f"done:{stage}")
        if done is None:
            return None
        why = next((f"its {k} changed" for k, v in expect.items() if done.get(k) != v), None)
        why = why or next((f"output {Path(p).as_posix()} is missing" for p in outputs
                           if not (self.path / p).is_file()), None)
        why = why or self._outputs_changed(done, deep=True)
        if why is None:
            return done
        if say:
            print(f"audiovis: {stage}: running again: {why}", file=sys.stderr)
        return None

    def _outputs_changed(self, done: dict, deep: bool) -> str | None:
        for rel, fp in (done.get("outputs") or {}).items():
            p = self.path / rel
            try:
                size = p.stat().st_size
            except OSError:
                return f"output {rel} is missing"
            if not deep:                # what readers check: the files are there (an interrupted add leaves
                continue                # rows beyond the committed ones, which readers ignore)
            if size != fp["size"]:
                return f"output {rel} has {size} bytes where the stage wrote {fp['size']}"
            if fingerprint(p) != fp:
                return f"output {rel} is not the file the stage wrote (its content changed)"
        return None

    # ----------------------------------------------------------------- database
    @property
    def writable(self) -> bool:
        """Whether this process may write to the workspace (its folder and catalogue). A workspace that is not
        (a read-only mount, a folder shared read-only) is still read in full: its catalogue opens read-only.
        A process started with ``AUDIOVIS_READ_ONLY=1`` (:data:`READ_ONLY_ENV`) treats every workspace so."""
        if os.environ.get(READ_ONLY_ENV) == "1":
            return False
        return os.access(self.path, os.W_OK) and (not self.db_path.exists() or os.access(self.db_path, os.W_OK))

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if self.db_path.exists() and not self.writable:
                self._db = _open_readonly(self.db_path)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(SCHEMA)
        return self._db

    def clean_stale_temps(self, min_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
        """Remove temporaries of killed writes from the workspace's folders (see :func:`clean_stale_temps`)."""
        return clean_stale_temps(self.path, min_age_s=min_age_s)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                            (key, json.dumps(value, default=_json_default)))

    def clear_done(self, *stages: str) -> None:
        with self.db:
            for s in stages:
                self.db.execute("DELETE FROM meta WHERE key=?", (f"done:{s}",))

    def report(self, stage: str | None = None) -> list[tuple[str, str, str]]:
        """Problems found so far: (stage, item, reason) rows."""
        q = "SELECT stage, item, reason FROM report"
        args: tuple = ()
        if stage:
            q += " WHERE stage=?"
            args = (stage,)
        return list(self.db.execute(q, args))

    # ----------------------------------------------------------------- catalogue
    @property
    def n_songs(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM songs").fetchone()[0]

    @property
    def n_users(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def songs(self) -> list[dict]:
        """Every song as a dict (idx, song_id, path, duration, sr, channels, status, reason, split)."""
        cur = self.db.execute("SELECT idx, song_id, path, duration, sr, channels, status, reason, split "
                              "FROM songs ORDER BY idx")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def song_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT song_id FROM songs ORDER BY idx")]

    def user_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT user_id FROM users ORDER BY idx")]

    def song_index(self, song_id: str) -> int:
        row = self.db.execute("SELECT idx FROM songs WHERE song_id=?", (song_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"song '{song_id}' is not in workspace '{self.path}'")
        return row[0]

    def splits(self) -> np.ndarray:
        """Split of every song: 'train', 'valid', 'test' or 'none' (no plays / unusable) [shape=(n_songs,)]."""
        return np.array([r[0] or "none" for r in self.db.execute("SELECT split FROM songs ORDER BY idx")],
                        dtype=object)

    def play_matrix(self):
        """Plays as a CSR matrix [shape=(n_users, n_songs)]."""
        import scipy.sparse as sp
        rows = np.array(self.db.execute("SELECT user_idx, song_idx, plays FROM plays").fetchall(), dtype=np.float64)
        if rows.size == 0:
            return sp.csr_matrix((self.n_users, self.n_songs), dtype=np.float32)
        return sp.csr_matrix((rows[:, 2].astype(np.float32), (rows[:, 0].astype(np.int64),
                                                                rows[:, 1].astype(np.int64))),
                             shape=(self.n_users, self.n_songs))

    def labels(self) -> dict[str, dict[str, str]]:
        """Song-level ground truth: {song_id: {concept: value}} (empty without ground truth)."""
        out: dict[str, dict[str, str]] = {}
        for sid, concept, value in self.db.execute("SELECT song_id, concept, value FROM labels"):
            out.setdefault(sid, {})[concept] = value
        return out

    def segments(self, song_id: str | None = None) -> list[dict]:
        q = "SELECT song_id, start_s, end_s, concept, value FROM segments"
        args: tuple = ()
        if song_id is not None:
            q += " WHERE song_id=?"
            args = (song_id,)
        q += " ORDER BY song_id, concept, start_s"
        return [dict(zip(("song_id", "start_s", "end_s", "concept", "value"), r)) for r in self.db.execute(q, args)]

    @property
    def has_labels(self) -> bool:
        return self.db.execute("SELECT 1 FROM labels LIMIT 1").fetchone() is not None

    def resolve_audio(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.path / p

    def __repr__(self) -> str:
        return f"Workspace('{self.path}')"
