"""Adding songs to a built workspace without retraining (``audiovis add``, the page's add button).

Each file is validated, featurized and embedded by the cold-start engine (:mod:`audiovis.coldstart`, the same
front end, model and window reduction as the catalogue), then appended to every artifact: catalogue rows,
features, per-window activations, top/bottom-k lists and statistics (:func:`audiovis.index.merge_unit_data`),
predicted factors, the approximate index if one was saved, and the layers' dictionaries after the commit
(:func:`audiovis.dictionary.update_dictionaries`: encoded with their saved weights; one left behind by a crash
is shown as stale, with the command that rebuilds it). Each file is replaced atomically; a journal of the
small artifacts, written first and removed after the database commit, lets the next ``add`` roll back an
interrupted one (:func:`recover`; rows appended to the large arrays beyond ``offsets[-1]`` / ``n_windows`` are
ignored and overwritten). Statistics are merged exactly from counts (mean, std, sparsity, strength,
selectivity). Histograms keep their bin edges (``vmin``/``vmax`` of the index build, which ``UnitIndex.stats``
turns into edges): new values outside them are clipped into the end bins, and the exact overall extremes after
adds are kept as ``vmin_all``/``vmax_all`` in ``units.npz``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .ann import have_faiss
from .catalog import content_hash
from .coldstart import ColdStart, ColdStartConfig, Embedding, as_list, forget_engine, get_engine
from .dictionary import update_dictionaries
from .errors import AudioError, AudiovisError, ParameterError, WorkspaceError
from .index import merge_unit_data
from .lock import writer_lock
from .workspace import Workspace, atomic_path, save_json, save_npy, save_npz

JOURNAL = ".add_journal"
_JOURNALED = ("features/offsets.npy", "features/windows.npy", "index/units.npz", "index/song_factors_pred.npy",
              "index/layers.json")


def recover(workspace: str | os.PathLike | Workspace) -> str | None:
    """Roll back an ``add`` that was interrupted before its database commit; returns what was done (None: no
    journal). Every :func:`add_songs` calls it first."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    j = ws.path / JOURNAL
    if not j.exists():
        return None
    info = json.loads((j / "journal.json").read_text()) if (j / "journal.json").exists() else None
    if info is None:                                   # journal not complete: nothing was touched yet
        shutil.rmtree(j)
        return "removed an incomplete journal"
    if ws.n_songs == info["n_songs"]:                  # not committed: restore the small artifacts
        for rel in _JOURNALED:
            src = j / rel.replace("/", "__")
            if src.exists():
                with atomic_path(ws.path / rel) as tmp:
                    shutil.copyfile(src, tmp)
        shutil.rmtree(j)
        refresh_outputs(ws)                          # the large arrays keep rows beyond the committed ones
        return "rolled back an interrupted add"
    shutil.rmtree(j)                                   # committed; only the clean-up was missed
    return "removed the journal of a completed add"


def refresh_outputs(ws: Workspace, stages=("featurize", "index")) -> None:
    """Record the files of ``stages`` as an add left them in their done-markers (:meth:`Workspace.mark_done`)."""
    for stage in stages:
        info = ws.get_meta(f"done:{stage}")
        if info is not None:
            info["outputs"] = ws.fingerprints(info.get("outputs") or ())
            ws.set_meta(f"done:{stage}", info)


def _append_rows(path: Path, keep_rows: int, new: np.ndarray, chunk: int = 65536) -> None:
    """Write ``old[:keep_rows]`` followed by ``new`` to ``path`` atomically (.npy)."""
    old = np.load(path, mmap_mode="r")
    shape = (keep_rows + len(new),) + old.shape[1:]
    with atomic_path(path, suffix=".npy") as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=old.dtype, shape=shape)
        for i in range(0, keep_rows, chunk):
            mm[i:min(i + chunk, keep_rows)] = old[i:min(i + chunk, keep_rows)]
        mm[keep_rows:] = new.astype(old.dtype)
        mm.flush()
        del mm
    del old


class _ContentIndex:
    """Songs of a workspace by file size, hashed only on a size collision (as ingest finds duplicates): one
    ``stat`` per catalogue song, built on the first lookup."""

    def __init__(self, ws: Workspace):
        self.ws, self.by_size = ws, None

    def _build(self) -> dict:
        by_size: dict[int, list] = {}
        for s in self.ws.songs():
            if s["status"] != "ok":
                continue
            try:
                p = self.ws.resolve_audio(s["path"])
                by_size.setdefault(os.path.getsize(p), []).append([s["song_id"], p, None])
            except (OSError, AudiovisError):
                continue
        return by_size

    def find(self, path) -> str | None:
        """Song id of a catalogue song whose file has the same bytes as ``path``, else None."""
        if self.by_size is None:
            self.by_size = self._build()
        try:
            rows = self.by_size.get(os.path.getsize(path), [])
            digest = content_hash(path) if rows else None
        except OSError:
            return None
        for row in rows:
            if row[2] is None:
                try:
                    row[2] = content_hash(row[1])
                except OSError:
                    row[2] = ""
            if row[2] == digest:
                return row[0]
        return None

    def note(self, path, song_id: str) -> None:
        """Remember a song added in this batch (two identical files in one call are duplicates too)."""
        if self.by_size is not None:
            self.by_size.setdefault(os.path.getsize(path), []).append([song_id, str(path), None])


def find_identical(workspace, path) -> str | None:
    """The id of the catalogue song whose file has the same bytes as ``path`` (an upload of a song already in
    the workspace), else None; hashes only the songs of the same size."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    return _ContentIndex(ws).find(path)


def add_songs(workspace: str | os.PathLike | Workspace, files, song_ids=None, progress: bool = False,
              cfg: ColdStartConfig | None = None) -> dict:
    """Add songs to the workspace without retraining (see the module docstring); a file that fails is reported
    and the others go on. The song id is the file stem unless given; a taken id, or the bytes of a song already
    in the workspace, fails that file only.

    Returns
    -------
    {"added": [{"file", "song_id", "song_idx", "windows", "warnings"}], "failed": [{"file", "reason"}]}
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    with writer_lock(ws.path, command=f"add {len(as_list(files))} song(s)"):     # one writer at a time
        return _add_songs(ws, files, song_ids, progress, cfg)


def _add_songs(ws: Workspace, files, song_ids, progress: bool, cfg: ColdStartConfig | None) -> dict:
    recover(ws)
    files = as_list(files)
    if song_ids is not None and len(as_list(song_ids)) != len(files):
        raise ParameterError(f"got {len(as_list(song_ids))} song ids for {len(files)} files")
    ids = as_list(song_ids) if song_ids is not None else [Path(f).stem for f in files]
    eng = get_engine(ws, cfg)
    taken = set(eng.ws.song_ids())
    same_content = _ContentIndex(eng.ws)
    embs, failed = [], []
    for f, sid in zip(files, ids):
        try:
            if sid in taken:
                raise ParameterError(f"'{f}': song id '{sid}' is already in the workspace; pass another id")
            dup = same_content.find(f)
            if dup is not None:
                raise ParameterError(f"'{f}': duplicate of song '{dup}' (identical file content), which is "
                                     f"already in the workspace; not added")
            emb = eng.embed_file(f, song_id=sid, units=True, keep_frames=True, max_duration=eng.fcfg.max_duration)
            if not len(emb.window_starts):
                raise AudioError(f"'{f}': shorter than one {eng.fcfg.window_s:g} s window")
            taken.add(sid)
            same_content.note(f, sid)
            embs.append(emb)
            if progress:
                print(f"add: embedded '{f}' ({len(emb.window_starts)} windows)")
        except AudiovisError as e:
            failed.append({"file": str(f), "reason": str(e)})
    if not embs:
        return {"added": [], "failed": failed}
    added = _append(eng, embs)
    update_dictionaries(eng.ws)        # the layers' dictionaries encode the new windows (audiovis.dictionary)
    # a saved approximate index catches up with the new rows
    forget_engine(eng.ws)
    idir = eng.ws.index_dir
    if (idir / "ann.faiss").exists() and (idir / "ann.json").exists() and have_faiss():
        get_engine(eng.ws, eng.cfg).similarity_index()     # reopens the saved index and appends the new rows
    return {"added": added, "failed": failed}


def _append(eng: ColdStart, embs: list[Embedding]) -> list[dict]:
    """Append embedded songs (with their frames, activations and peaks) to every artifact, journal first and
    the database commit last; returns the rows of ``add_songs``' ``added``."""
    ws = eng.ws
    store, uidx = eng.index.store, eng.index
    n0 = ws.n_songs
    if store.n_songs != n0 or len(uidx.song_factors) != n0:
        raise WorkspaceError(f"workspace '{ws.path}' is inconsistent: {n0} songs in the catalogue, "
                             f"{store.n_songs} in the features, {len(uidx.song_factors)} in the index; "
                             f"run `audiovis featurize --force` and `audiovis index --force`")
    fd, idir = ws.features_dir, ws.index_dir
    # 1. journal the small artifacts (the large ones are only appended to)
    j = ws.path / JOURNAL
    j.mkdir(exist_ok=True)
    for rel in _JOURNALED:
        shutil.copyfile(ws.path / rel, j / rel.replace("/", "__"))
    save_json(j / "journal.json", {"n_songs": n0, "time": time.time()})

    offsets, windows = store.offsets, store.windows
    nF, nW = int(offsets[-1]), len(windows)
    new_off, new_win, new_frames, A_list, P_list, wsong = [], [], [], [], [], []
    pos = nF
    W = eng.fcfg.window_frames
    for i, e in enumerate(embs):
        s = n0 + i
        pos += len(e.frames)
        new_off.append(pos)
        starts = (np.round(e.window_starts / eng.hop_s)).astype(np.int64)
        assert np.all(starts % W == 0)
        new_win.append(np.stack([np.full(len(starts), s), starts], 1))
        new_frames.append(e.frames)
        A_list.append(e.acts)
        P_list.append(e.peaks)
        wsong.append(np.full(len(starts), s))
    A, P, wsong = np.concatenate(A_list), np.concatenate(P_list), np.concatenate(wsong)
    widx = np.arange(nW, nW + len(A))
    # 2. the large arrays: rows beyond the committed ones are dropped, the new ones appended
    _append_rows(fd / "logmel.npy", nF, np.concatenate(new_frames))
    _append_rows(idir / "acts.npy", nW, A.astype(np.float16))
    cache = fd / "cache"
    if cache.exists():
        for i, e in enumerate(embs):
            save_npy(cache / f"{n0 + i}.npy", e.frames)
    # 3. the small ones
    save_npy(fd / "offsets.npy", np.concatenate([offsets[:n0 + 1], np.array(new_off, np.int64)]))
    save_npy(fd / "windows.npy", np.concatenate([windows[:nW], np.concatenate(new_win)]).astype(windows.dtype))
    d = merge_unit_data(uidx.model_data, nW, A, P, widx, wsong, uidx.k)     # the layer index, not dictionaries
    save_npz(idir / "units.npz", **d)
    new_pred = np.stack([e.factors for e in embs]).astype(np.float32)
    save_npy(idir / "song_factors_pred.npy", np.concatenate([uidx.song_factors[:n0], new_pred]))
    layers_meta = json.loads((idir / "layers.json").read_text())
    layers_meta["n_windows"] = nW + len(A)
    save_json(idir / "layers.json", layers_meta)
    # 4. commit: the catalogue rows
    added = []
    with ws.db:
        for i, e in enumerate(embs):
            ws.db.execute("INSERT INTO songs(idx, song_id, path, duration, sr, channels, status, reason, split) "
                          "VALUES (?,?,?,?,?,?,'ok',NULL,'none')",
                          (n0 + i, e.song_id, str(Path(e.file).resolve()), e.duration, e.sr, e.channels))
            added.append({"file": e.file, "song_id": e.song_id, "song_idx": n0 + i,
                          "windows": len(e.window_starts), "warnings": list(e.warnings)})
        for stage, key in (("featurize", "windows"), ("index", "windows")):
            row = ws.db.execute("SELECT value FROM meta WHERE key=?", (f"done:{stage}",)).fetchone()
            if row:
                info = json.loads(row[0])
                if isinstance(info.get("summary"), dict) and key in info["summary"]:
                    info["summary"][key] = nW + len(A)
                info["outputs"] = ws.fingerprints(info.get("outputs") or ())    # the files as they are now
                ws.db.execute("UPDATE meta SET value=? WHERE key=?", (json.dumps(info), f"done:{stage}"))
        prev = ws.db.execute("SELECT value FROM meta WHERE key='coldstart:added'").fetchone()
        log = (json.loads(prev[0]) if prev else []) + [a["song_id"] for a in added]
        ws.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('coldstart:added', ?)", (json.dumps(log),))
    shutil.rmtree(j, ignore_errors=True)
    return added
