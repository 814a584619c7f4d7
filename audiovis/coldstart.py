"""Cold start: embed songs nobody has played, recommend them, and add them to a workspace without retraining.

A new song goes through the same front end as the catalogue (log-mel, float16 storage precision, consecutive
non-overlapping 3 s windows) and the trained CNN; its predicted latent factors ``y'`` are the mean of its
windows' outputs, as in van den Oord et al. (2013). With ``y'``:

* similar songs: cosine similarity to the CNN-*predicted* factors of every catalogue song
  (``index/song_factors_pred.npy``), so catalogue and new songs live in the same space (see :mod:`audiovis.ann`);
* likely listeners: users ranked by ``x_u . y'`` with the user factors of the WMF fit the CNN was trained on
  (the fit without the held-out songs);
* the units that fire most: every unit's peak activation over the song's windows, scored as a z-score against
  the unit's per-window catalogue statistics (``(peak - mean) / std``), so units with different scales compare.

``add`` appends songs to every artifact (catalogue rows, features, per-window activations, top/bottom-k lists,
statistics, predicted factors, the approximate index if one was saved). Each file is replaced atomically; a
journal of the small artifacts, written first and removed after the database commit, lets the next ``add`` roll
back an interrupted one (rows appended to the large arrays beyond ``offsets[-1]`` / ``n_windows`` are ignored
and overwritten). Statistics are merged exactly from counts (mean, std, sparsity, strength, selectivity).
Histograms keep their bin edges (``vmin``/``vmax`` of the index build, which ``UnitIndex.stats`` turns into
edges): new values outside them are clipped into the end bins, and the exact overall extremes after adds are
kept as ``vmin_all``/``vmax_all`` in ``units.npz``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import audio
from .ann import ANN_THRESHOLD, VectorIndex, have_faiss
from .config import Config, FeatureConfig
from .errors import AudioError, AudiovisError, ParameterError, WorkspaceError
from .index import reduce_windows
from .workspace import Workspace, atomic_path, save_json, save_npy, save_npz

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_SECONDS = 600.0


@dataclass
class ColdStartConfig(Config):
    """Limits and defaults for cold-start queries.

    max_bytes / max_duration: uploads above these are refused with a message naming the file.
    ann_threshold: catalogues with at least this many songs use the approximate index when faiss is installed.
    """

    max_bytes: int = MAX_UPLOAD_BYTES
    max_duration: float = MAX_UPLOAD_SECONDS
    k: int = 10
    n_users: int = 10
    n_units: int = 10
    batch_windows: int = 256
    ann_threshold: int = ANN_THRESHOLD


@dataclass
class Embedding:
    """A song's predicted factors.

    Attributes
    ----------
    factors : np.ndarray [shape=(n_factors,)]   mean over windows
    window_factors : np.ndarray [shape=(n_windows, n_factors)]
    window_starts : np.ndarray [shape=(n_windows,)]   seconds
    acts, peaks : np.ndarray [shape=(n_windows, n_units)] or None   per-window unit activations (max over time)
        and peak times from the window start (as in the unit index); only when units were asked for
    frames : np.ndarray [shape=(t, n_mels), float16] or None   log-mel frames (kept for ``add``)
    series : dict or None   {conv layer: (n_windows, C, T_l) float32} activations over time (for timelines)
    warnings : list of str   what was kept in part (a truncated file: decoded X s of a claimed Y s)
    """

    file: str
    song_id: str
    duration: float
    sr: int
    channels: int
    factors: np.ndarray
    window_factors: np.ndarray
    window_starts: np.ndarray
    acts: np.ndarray | None = None
    peaks: np.ndarray | None = None
    frames: np.ndarray | None = field(default=None, repr=False)
    series: dict | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, per_window: bool = False) -> dict:
        d = {"file": self.file, "song_id": self.song_id, "duration_s": round(self.duration, 3),
             "n_windows": len(self.window_starts), "factors": [float(v) for v in self.factors],
             "warnings": list(self.warnings)}
        if per_window:
            d["windows"] = [{"start_s": round(float(s), 3), "factors": [float(v) for v in f]}
                            for s, f in zip(self.window_starts, self.window_factors)]
        return d


# --------------------------------------------------------------------------- validation and features
def _rename(e: Exception, path: Path, name: str | None) -> str:
    msg = str(e)
    return msg.replace(str(path), name) if name else msg


def validate_audio(path: str | os.PathLike, name: str | None = None, max_bytes: int | None = MAX_UPLOAD_BYTES,
                   max_duration: float | None = MAX_UPLOAD_SECONDS) -> audio.AudioInfo:
    """Check an (uploaded) file before decoding it: size, readable header, duration.

    Parameters
    ----------
    name : str, optional
        The name to quote in messages (an upload's original file name instead of its temporary path).

    Raises
    ------
    AudioError
        The message quotes the file name and says what is wrong.
    """
    path = Path(path)
    label = name or str(path)
    if not path.exists():
        raise AudioError(f"'{label}': file not found")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise AudioError(f"'{label}': {size / 1048576:.1f} MB is larger than the upload limit of "
                         f"{max_bytes / 1048576:.0f} MB")
    try:
        meta = audio.info(path)
    except AudioError as e:
        raise AudioError(_rename(e, path, name)) from None
    if max_duration is not None and meta.duration > max_duration:
        raise AudioError(f"'{label}': {meta.duration:.1f} s is longer than the limit of {max_duration:.0f} s "
                         f"({max_duration / 60:g} min); trim it")
    return meta


def song_frames(path: str | os.PathLike, fcfg: FeatureConfig, name: str | None = None,
                max_duration: float | None = None, on_warning=None) -> np.ndarray:
    """Decode and featurize one file exactly as the catalogue was [shape=(t, n_mels), float16].

    ``on_warning(message)`` receives what was kept in part (a truncated file), with ``name`` for the path."""
    from .features import song_logmel
    path = Path(path)
    cfg = FeatureConfig.from_dict({**fcfg.to_dict(), "max_duration": max_duration or fcfg.max_duration})
    note = None if on_warning is None else (lambda m: on_warning(m.replace(str(path), name) if name else m))
    try:
        return song_logmel(path, cfg, on_warning=note)
    except AudioError as e:
        raise AudioError(_rename(e, path, name)) from None
    except AudiovisError:
        raise
    except Exception as e:  # noqa: BLE001  a decoder crash on a corrupt file must still name the file
        raise AudioError(f"'{name or path}': cannot decode ({type(e).__name__}: {e}); the file may be corrupt") \
            from None


def frame_windows(frames: np.ndarray, window_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive non-overlapping windows, as ``featurize`` cuts them.

    Returns
    -------
    starts : np.ndarray [shape=(n,), int64]   first frame of each window
    x : np.ndarray [shape=(n, n_mels, window_frames), float32]
    """
    starts = np.arange(0, frames.shape[0] - window_frames + 1, window_frames, dtype=np.int64)
    x = np.stack([np.asarray(frames[s:s + window_frames], dtype=np.float32).T for s in starts]) if len(starts) \
        else np.zeros((0, frames.shape[1], window_frames), np.float32)
    return starts, x


# --------------------------------------------------------------------------- the engine
class ColdStart:
    """A workspace's model, unit index and factors, loaded once, for cold-start queries.

    Use :func:`get_engine` for a cached instance (the model stays warm between queries).
    """

    def __init__(self, workspace: str | os.PathLike | Workspace, cfg: ColdStartConfig | None = None):
        from .factors import load_factors
        from .index import UnitIndex
        from .train import load_model
        from .units import layer_sizes
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.ws.require("index")
        self.cfg = cfg or ColdStartConfig()
        self.model, _ = load_model(self.ws)
        self.model.eval()
        self.layers = layer_sizes(self.model)
        self.index = UnitIndex(self.ws)
        self.fcfg = self.index.store.cfg
        self.hop_s = self.fcfg.hop_length / self.fcfg.sr
        fac = load_factors(self.ws)
        self.user_factors = np.asarray(fac["user_factors"], np.float32)
        self.user_ids = self.ws.user_ids()
        self.songs = self.ws.songs()
        self.labels = self.ws.labels() if self.ws.has_labels else {}
        self._vindex: VectorIndex | None = None
        self._song_factors = np.asarray(self.index.song_factors, np.float32)
        self._paths = {str(Path(self.ws.resolve_audio(s["path"])).resolve()): s["idx"] for s in self.songs}

    # ----------------------------------------------------------------- embedding
    @torch.no_grad()
    def _forward(self, x: np.ndarray, units: bool, series: bool):
        """Windows -> (factors (n, f), acts (n, U) or None, peaks (n, U) or None, series dict or None)."""
        from .activations import Recorder
        outs, A_all, P_all, S_all = [], [], [], {}
        bw = self.cfg.batch_windows
        for i in range(0, len(x), bw):
            xb = torch.from_numpy(x[i:i + bw])
            if not units:
                outs.append(self.model(xb).float().numpy())
                continue
            acts, out = Recorder(self.model, list(self.layers)).record(xb)
            outs.append(out.float().numpy())
            A, P = reduce_windows(self.model, acts, self.layers, self.hop_s, xb.shape[-1])
            A_all.append(A)
            P_all.append(P)
            if series:
                for name in self.layers:
                    if acts[name].ndim == 3:
                        S_all.setdefault(name, []).append(acts[name].float().numpy())
        f = self.model.cfg.n_factors
        Y = np.concatenate(outs) if outs else np.zeros((0, f), np.float32)
        if not units:
            return Y, None, None, None
        U = sum(self.layers.values())
        A = np.concatenate(A_all) if A_all else np.zeros((0, U), np.float32)
        P = np.concatenate(P_all) if P_all else np.zeros((0, U), np.float32)
        return Y, A, P, ({k: np.concatenate(v) for k, v in S_all.items()} if series else None)

    def embed_file(self, path: str | os.PathLike, name: str | None = None, song_id: str | None = None,
                   units: bool = False, series: bool = False, keep_frames: bool = False,
                   max_bytes: int | None = None, max_duration: float | None = None) -> Embedding:
        """Validate, featurize and embed one file (raises AudioError naming the file)."""
        path = Path(path)
        max_duration = max_duration if max_duration is not None else self.cfg.max_duration
        meta = validate_audio(path, name, max_bytes=max_bytes, max_duration=max_duration)
        notes: list[str] = []
        frames = song_frames(path, self.fcfg, name, max_duration=max_duration, on_warning=notes.append)
        starts, x = frame_windows(frames, self.fcfg.window_frames)
        Y, A, P, S = self._forward(x, units, series)
        return Embedding(file=name or str(path), song_id=song_id or Path(name or path).stem,
                         duration=meta.duration, sr=meta.sr, channels=meta.channels, factors=Y.mean(0),
                         window_factors=Y, window_starts=starts * self.hop_s, acts=A, peaks=P,
                         frames=frames if keep_frames else None, series=S, warnings=notes)

    def embed(self, files, per_window: bool = False) -> tuple[list[Embedding], list[dict]]:
        """Embed several files; a file that fails is reported and the others go on.

        Returns
        -------
        embeddings : list of Embedding
        failed : list of {"file", "reason"}
        """
        out, failed = [], []
        for f in as_list(files):
            try:
                out.append(self.embed_file(f))
            except AudiovisError as e:
                failed.append({"file": str(f), "reason": str(e)})
        return out, failed

    # ----------------------------------------------------------------- search
    @property
    def song_factors(self) -> np.ndarray:
        """CNN-predicted factors of the catalogue songs, in the model's output units [shape=(n_songs, f)]."""
        return self._song_factors

    def similarity_index(self) -> VectorIndex:
        """Exact below ``cfg.ann_threshold`` songs; faiss HNSW above it (saved to ``index/ann.faiss``)."""
        if self._vindex is not None:
            return self._vindex
        Y = self.song_factors
        use_ann = len(Y) >= self.cfg.ann_threshold and have_faiss()
        if not use_ann:
            self._vindex = VectorIndex(Y, method="exact")
            return self._vindex
        p, pm = self.ws.index_dir / "ann.faiss", self.ws.index_dir / "ann.json"
        if p.exists() and pm.exists():
            meta = json.loads(pm.read_text())
            self._vindex = VectorIndex.load(p, Y, nprobe=meta["nprobe"])
            if meta.get("n") != len(Y):                 # songs were added since: keep the file in step
                self._vindex.save(p)
                save_json(pm, {**meta, "n": len(Y)})
        else:
            self._vindex = VectorIndex(Y, method="hnsw")
            self._vindex.save(p)
            save_json(pm, {"nprobe": self._vindex.nprobe, "recall": self._vindex.calibrated_recall,
                           "n": len(Y)})
        return self._vindex

    def similar(self, factors: np.ndarray, k: int = 10, exclude=None) -> list[dict]:
        """Catalogue songs nearest to ``factors`` by cosine similarity (best first)."""
        vi = self.similarity_index()
        idx, sc = vi.search(factors, k, exclude=exclude)
        out = []
        for r, (i, s) in enumerate(zip(idx[0], sc[0]), start=1):
            if i < 0:
                continue
            song = self.songs[int(i)]
            row = {"rank": r, "song_idx": int(i), "song_id": song["song_id"], "score": float(s),
                   "path": song["path"], "duration": song["duration"]}
            if self.labels:
                row["labels"] = self.labels.get(song["song_id"], {})
            out.append(row)
        return out

    def best_window(self, song_idx: int, factors: np.ndarray) -> tuple[float, float, float]:
        """The catalogue song's window whose predicted factors are closest (cosine) to ``factors``:
        (start_s, end_s, cosine) -- the part of the song to play next to the query."""
        store = self.index.store
        w = store.song_windows(song_idx)
        W = self.fcfg.window_frames
        if not len(w):
            return 0.0, float(W * self.hop_s), float("nan")
        K = self.model.cfg.n_factors
        Y = np.asarray(self.index.acts[w], np.float32)[:, -K:]
        q = np.asarray(factors, np.float32)
        cos = Y @ q / np.maximum(np.linalg.norm(Y, axis=1) * np.linalg.norm(q), 1e-12)
        j = int(np.argmax(cos))
        start = float(store.windows[w[j], 1] * self.hop_s)
        return start, start + W * self.hop_s, float(cos[j])

    def listeners(self, factors: np.ndarray, n: int = 10) -> list[dict]:
        """Users ranked by ``x_u . y'`` (train-fit user factors)."""
        s = self.user_factors @ np.asarray(factors, np.float32)
        n = min(n, len(s))
        top = np.argsort(-s, kind="stable")[:n]
        return [{"rank": r, "user_idx": int(u), "user_id": self.user_ids[u], "score": float(s[u])}
                for r, u in enumerate(top, start=1)]

    def active_units(self, emb: Embedding, n: int = 10, layers=None) -> list[dict]:
        """Units whose peak activation in the song is highest relative to the catalogue (z-score)."""
        if emb.acts is None or not len(emb.acts):
            return []
        layers = list(layers) if layers else [name for name in self.layers if name != "output"]
        cols = np.concatenate([np.arange(self.index.offset[name], self.index.offset[name] + self.layers[name])
                               for name in layers])
        d = self.index.data
        A = emb.acts[:, cols]
        peak, arg = A.max(0), A.argmax(0)
        z = (peak - d["mean"][cols]) / np.maximum(d["std"][cols], 1e-6)
        order = np.lexsort((cols, -z))[:n]
        names = self.index.units()
        out = []
        for r, j in enumerate(order, start=1):
            c, w = cols[j], arg[j]
            out.append({"rank": r, "unit": names[c], "score": float(z[j]), "peak_activation": float(peak[j]),
                        "peak_s": float(emb.window_starts[w] + emb.peaks[w, c]),
                        "mean_activation": float(A[:, j].mean()),
                        "catalogue_max": float(d["vmax"][c])})
        return out

    def timeline(self, emb: Embedding, unit: str) -> tuple[np.ndarray, np.ndarray]:
        """A unit's activation over the song: (times in s, activations). Conv units at their own time resolution
        (needs ``series``), dense units one value per window at its centre."""
        from .units import parse_unit
        u = parse_unit(unit, self.layers)
        W = self.fcfg.window_frames
        if emb.series is not None and u.layer in emb.series:
            a = emb.series[u.layer][:, u.index, :]                 # (n_windows, T_l)
            stride = self.model.frame_stride(u.layer)
            t_in = (np.arange(a.shape[1]) * stride + stride / 2) * self.hop_s
            t = (emb.window_starts[:, None] + t_in[None, :]).ravel()
            return t, a.ravel()
        c = self.index.column(u)
        return emb.window_starts + W * self.hop_s / 2, emb.acts[:, c]

    def recommend(self, file: str | os.PathLike, k: int | None = None, n_users: int | None = None,
                  n_units: int | None = None, exclude=None, exclude_self: bool = True, name: str | None = None,
                  timeline: bool = False, max_bytes: int | None = None) -> dict:
        """Everything the page shows for a new song.

        Parameters
        ----------
        file : str or Path
        k, n_users, n_units : int
            How many similar songs, listeners and units (defaults from the config).
        exclude : iterable of int, optional
            Catalogue song indices not to return.
        exclude_self : bool
            Leave out a catalogue song whose audio is this very file.
        timeline : bool
            Add ``"timeline": {unit: {"t": [...], "activation": [...]}}`` for the returned units.

        Returns
        -------
        dict with ``song`` (embedding summary), ``similar``, ``listeners``, ``units``, ``search``.
        """
        cfg = self.cfg
        emb = self.embed_file(file, name=name, units=True, series=timeline, max_bytes=max_bytes)
        ex = {int(i) for i in (exclude or [])}
        if exclude_self:
            me = self._paths.get(str(Path(file).resolve()))
            if me is not None:
                ex.add(me)
        vi = self.similarity_index()
        out = {"song": emb.to_dict(), "similar": self.similar(emb.factors, k or cfg.k, exclude=sorted(ex)),
               "listeners": self.listeners(emb.factors, n_users or cfg.n_users),
               "units": self.active_units(emb, n_units or cfg.n_units),
               "search": {"metric": "cosine", "method": vi.method, "catalogue": len(vi),
                          **({"nprobe": vi.nprobe} if vi.method != "exact" else {})}}
        if timeline:
            out["timeline"] = {}
            for u in out["units"]:
                t, a = self.timeline(emb, u["unit"])
                out["timeline"][u["unit"]] = {"t": t.tolist(), "activation": a.tolist()}
        out["embedding"] = emb
        return out

    # ----------------------------------------------------------------- add
    def add(self, files, song_ids=None, progress: bool = False) -> dict:
        """Add songs to the workspace without retraining (see the module docstring).

        Returns
        -------
        {"added": [{"file", "song_id", "song_idx", "windows"}], "failed": [{"file", "reason"}]}
        """
        return add_songs(self, files, song_ids=song_ids, progress=progress)


def as_list(files) -> list:
    return [files] if isinstance(files, (str, os.PathLike)) else list(files)


_ENGINES: dict[str, tuple[tuple, ColdStart]] = {}


def engine_signature(ws: Workspace) -> tuple:
    out = []
    for p in (ws.model_path, ws.index_dir / "units.npz", ws.index_dir / "song_factors_pred.npy",
              ws.factors_path, ws.db_path):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def get_engine(workspace: str | os.PathLike | Workspace, cfg: ColdStartConfig | None = None) -> ColdStart:
    """A cached :class:`ColdStart` for the workspace, reloaded when its model, index or factors change."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    key = str(ws.path)
    sig = engine_signature(ws)
    hit = _ENGINES.get(key)
    if hit and hit[0] == sig and (cfg is None or hit[1].cfg == cfg):
        return hit[1]
    eng = ColdStart(ws, cfg)
    _ENGINES[key] = (sig, eng)
    return eng


# --------------------------------------------------------------------------- uploads (the page)
def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._- " else "_" for c in Path(name).name).strip(" .")
    return keep[:120] or "upload"


def check_upload_size(name: str, size: int, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    if size > max_bytes:
        raise AudioError(f"'{name}': {size / 1048576:.1f} MB is larger than the upload limit of "
                         f"{max_bytes / 1048576:.0f} MB")
    if size == 0:
        raise AudioError(f"'{name}': file is empty (0 bytes)")


def recommend_upload(workspace, name: str, data: bytes, cfg: ColdStartConfig | None = None, **kwargs) -> dict:
    """:meth:`ColdStart.recommend` for uploaded bytes: size-checked first, then written to a temporary
    directory (never the workspace), validated (duration cap) and embedded; errors quote ``name``.

    Returns the JSON-serialisable recommendation (with ``timeline`` unless ``timeline=False``)."""
    import tempfile
    eng = get_engine(workspace, cfg)
    check_upload_size(name, len(data), eng.cfg.max_bytes)
    kwargs.setdefault("timeline", True)
    with tempfile.TemporaryDirectory(prefix="audiovis-upload-") as d:
        p = Path(d) / _safe_name(name)
        p.write_bytes(data)
        rec = eng.recommend(p, name=name, max_bytes=eng.cfg.max_bytes, exclude_self=False, **kwargs)
    for r in rec["similar"]:
        r["clip_start_s"], r["clip_end_s"], r["clip_cosine"] = eng.best_window(r["song_idx"],
                                                                              rec["embedding"].factors)
    return recommendation_json(rec)


def add_upload(workspace, name: str, data: bytes, cfg: ColdStartConfig | None = None) -> dict:
    """Validate uploaded bytes in a temporary directory, then keep them as ``WS/uploads/<name>`` and add the
    song (:func:`add_songs`). Nothing is written into the workspace unless the file passes validation."""
    import tempfile
    eng = get_engine(workspace, cfg)
    check_upload_size(name, len(data), eng.cfg.max_bytes)
    with tempfile.TemporaryDirectory(prefix="audiovis-upload-") as d:
        p = Path(d) / _safe_name(name)
        p.write_bytes(data)
        meta = validate_audio(p, name, max_bytes=eng.cfg.max_bytes, max_duration=eng.cfg.max_duration)
        song_frames(p, eng.fcfg, name, max_duration=eng.cfg.max_duration)   # decodes cleanly
        del meta
        dest_dir = eng.ws.path / "uploads"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / _safe_name(name)
        n = 1
        while dest.exists():
            dest = dest_dir / f"{Path(_safe_name(name)).stem}-{n}{Path(name).suffix}"
            n += 1
        with atomic_path(dest) as tmp:
            shutil.copyfile(p, tmp)
    out = add_songs(eng, [dest])
    if not out["added"]:
        dest.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- add: incremental index update
JOURNAL = ".add_journal"
_JOURNALED = ("features/offsets.npy", "features/windows.npy", "index/units.npz", "index/song_factors_pred.npy",
              "index/layers.json")


def recover(ws: Workspace) -> str | None:
    """Roll back an ``add`` that was interrupted before its database commit; returns what was done."""
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
        return "rolled back an interrupted add"
    shutil.rmtree(j)                                   # committed; only the clean-up was missed
    return "removed the journal of a completed add"


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


def merge_unit_data(d: dict, n_old: int, A: np.ndarray, P: np.ndarray, widx: np.ndarray, songs: np.ndarray,
                    k: int) -> dict:
    """Merge new windows into a unit index's ``units.npz`` arrays (returns new arrays).

    Parameters
    ----------
    d : dict   the arrays of ``units.npz``
    n_old : int   windows already counted in ``d``
    A, P : np.ndarray [shape=(m, U)]   activations and peak times of the new windows
    widx : np.ndarray [shape=(m,)]   their global window indices
    songs : np.ndarray [shape=(m,)]   their song indices (sorted, consecutive per song)
    """
    from .index import N_BINS, merge_topk
    d = {key: np.array(v, copy=True) for key, v in d.items()}
    m = len(A)
    n = n_old + m
    A64 = A.astype(np.float64)
    s = d["mean"] * n_old + A64.sum(0)
    ss = (d["std"] ** 2 + d["mean"] ** 2) * n_old + (A64 ** 2).sum(0)
    d["mean"] = s / n
    d["std"] = np.sqrt(np.maximum(ss / n - d["mean"] ** 2, 0))
    d["sparsity"] = (np.round(d["sparsity"] * n_old) + (A <= 0).sum(0)) / n
    d["vmin_all"] = np.minimum(d.get("vmin_all", d["vmin"]), A.min(0))
    d["vmax_all"] = np.maximum(d.get("vmax_all", d["vmax"]), A.max(0))
    # histogram: the existing edges (from vmin/vmax), new values clipped into the end bins
    lo, hi = d["vmin"], np.maximum(d["vmax"], d["vmin"] + 1e-6)
    bins = np.clip(((A - lo) / (hi - lo) * N_BINS).astype(np.int64), 0, N_BINS - 1)
    U = A.shape[1]
    np.add.at(d["hist"], (np.broadcast_to(np.arange(U), bins.shape), bins), 1)
    # top / bottom: each new song's best (least) window per unit, merged like the index build
    useg = np.unique(songs, return_index=True)[1]
    seg_id = np.repeat(np.arange(len(useg)), np.diff(np.append(useg, m)))
    for largest, pre in ((True, "top"), (False, "bot")):
        red = np.maximum if largest else np.minimum
        red_v = red.reduceat(A, useg, axis=0)
        hit = A == red_v[seg_id]
        cand = np.where(hit, np.arange(m)[:, None], m)
        first = np.minimum.reduceat(cand, useg, axis=0)
        d[f"{pre}_v"], d[f"{pre}_w"], d[f"{pre}_p"] = merge_topk(
            d[f"{pre}_v"], d[f"{pre}_w"], d[f"{pre}_p"], red_v.T.astype(np.float32), widx[first].T,
            np.take_along_axis(P, first, 0).T.astype(np.float32), k, largest)
    top_mean = np.where(d["top_w"] >= 0, d["top_v"], np.nan)
    d["strength"] = np.nanmean(top_mean, 1)
    d["selectivity"] = (d["strength"] - d["mean"]) / np.maximum(d["std"], 1e-6)
    return d


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
        from .catalog import content_hash
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


def add_songs(eng: ColdStart, files, song_ids=None, progress: bool = False) -> dict:
    """Implementation of :meth:`ColdStart.add` (and ``audiovis add``)."""
    ws = eng.ws
    recover(ws)
    files = as_list(files)
    if song_ids is not None and len(as_list(song_ids)) != len(files):
        raise ParameterError(f"got {len(as_list(song_ids))} song ids for {len(files)} files")
    ids = as_list(song_ids) if song_ids is not None else [Path(f).stem for f in files]
    taken = set(ws.song_ids())
    same_content = _ContentIndex(ws)
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
    d = merge_unit_data(uidx.data, nW, A, P, widx, wsong, uidx.k)
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
                ws.db.execute("UPDATE meta SET value=? WHERE key=?", (json.dumps(info), f"done:{stage}"))
        prev = ws.db.execute("SELECT value FROM meta WHERE key='coldstart:added'").fetchone()
        log = (json.loads(prev[0]) if prev else []) + [a["song_id"] for a in added]
        ws.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('coldstart:added', ?)", (json.dumps(log),))
    shutil.rmtree(j, ignore_errors=True)
    # 5. a saved approximate index catches up with the new rows
    _ENGINES.pop(str(ws.path), None)
    if (idir / "ann.faiss").exists() and (idir / "ann.json").exists() and have_faiss():
        get_engine(ws, eng.cfg).similarity_index()     # reopens the saved index and appends the new rows
    return {"added": added, "failed": failed}


# --------------------------------------------------------------------------- output
def write_embeddings(embs: list[Embedding], path: str | os.PathLike | None, per_window: bool = False) -> str | None:
    """Write embeddings by extension: ``.json``, ``.csv`` or ``.npy``; ``None`` returns JSON text.

    ``.npy`` holds [shape=(n_songs, n_factors)], or with ``per_window`` [shape=(total_windows, 2 + n_factors)]
    whose columns are (song number in the input order, window start in s, factors...).
    CSV: one row per song (``file, song_id, duration_s, n_windows, f0..``), or per window
    (``file, song_id, window, start_s, f0..``).
    """
    if path is None:
        return json.dumps([e.to_dict(per_window) for e in embs], indent=2)
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".json":
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps([e.to_dict(per_window) for e in embs], indent=2))
    elif ext == ".npy":
        if per_window:
            rows = [np.column_stack([np.full(len(e.window_starts), i), e.window_starts, e.window_factors])
                    for i, e in enumerate(embs)]
            arr = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 2), np.float32)
        else:
            arr = np.stack([e.factors for e in embs]).astype(np.float32) if embs else np.zeros((0, 0), np.float32)
        save_npy(path, arr)
    elif ext == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        f = len(embs[0].factors) if embs else 0
        fcols = [f"f{i}" for i in range(f)]
        if per_window:
            w.writerow(["file", "song_id", "window", "start_s", *fcols])
            for e in embs:
                for n, (s, y) in enumerate(zip(e.window_starts, e.window_factors)):
                    w.writerow([e.file, e.song_id, n, f"{s:.3f}", *[f"{v:.6g}" for v in y]])
        else:
            w.writerow(["file", "song_id", "duration_s", "n_windows", *fcols])
            for e in embs:
                w.writerow([e.file, e.song_id, f"{e.duration:.3f}", len(e.window_starts),
                            *[f"{v:.6g}" for v in e.factors]])
        with atomic_path(path, suffix=".csv") as tmp:
            tmp.write_text(buf.getvalue())
    else:
        raise ParameterError(f"output '{path}': unknown extension {ext!r}; use .json, .csv or .npy")
    return None


def format_recommendation(rec: dict) -> str:
    """A plain-text table of a recommendation, for people."""
    s = rec["song"]
    lines = [f"{s['file']}: {s['duration_s']:.1f} s, {s['n_windows']} windows", ""]
    srch = rec["search"]
    lines.append(f"Similar songs ({srch['metric']} on predicted factors, {srch['method']} search over "
                 f"{srch['catalogue']} songs)")
    has_labels = any("labels" in r for r in rec["similar"])
    concepts = sorted({c for r in rec["similar"] for c in r.get("labels", {})},
                      key=lambda c: (c not in ("groove", "lead", "tempo_class", "kind"), c))[:4] if has_labels else []
    lines.append(f"  {'rank':>4}  {'song_id':<16} {'score':>7}" + "".join(f"  {c:<14}" for c in concepts))
    for r in rec["similar"]:
        lines.append(f"  {r['rank']:>4}  {r['song_id']:<16} {r['score']:>7.3f}"
                     + "".join(f"  {r.get('labels', {}).get(c, '')!s:<14}" for c in concepts))
    lines += ["", "Likely listeners (x_u . y')", f"  {'rank':>4}  {'user_id':<16} {'score':>7}"]
    for r in rec["listeners"]:
        lines.append(f"  {r['rank']:>4}  {r['user_id']:<16} {r['score']:>7.3f}")
    lines += ["", "Most active units (peak activation as a z-score against the catalogue's windows)",
              f"  {'rank':>4}  {'unit':<12} {'z':>7} {'peak':>8} {'at (s)':>7}"]
    for r in rec["units"]:
        lines.append(f"  {r['rank']:>4}  {r['unit']:<12} {r['score']:>7.2f} {r['peak_activation']:>8.3f} "
                     f"{r['peak_s']:>7.2f}")
    return "\n".join(lines)


def recommendation_json(rec: dict) -> dict:
    """The JSON-serialisable part of a recommendation (no arrays)."""
    return {k: v for k, v in rec.items() if k != "embedding"}
