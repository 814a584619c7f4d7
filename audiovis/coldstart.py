"""Cold start: embed songs nobody has played and recommend them (the query engine).

A new song goes through the same front end as the catalogue (:func:`audiovis.features.song_frames`: log-mel,
float16 storage precision, consecutive non-overlapping 3 s windows) and the trained CNN; its predicted latent
factors ``y'`` are the mean of its windows' outputs, as in van den Oord et al. (2013). With ``y'``:

* similar songs: cosine similarity to the CNN-*predicted* factors of every catalogue song
  (``index/song_factors_pred.npy``), so catalogue and new songs live in the same space (see :mod:`audiovis.ann`);
* likely listeners: users ranked by ``x_u . y'`` with the user factors of the WMF fit the CNN was trained on
  (the fit without the held-out songs);
* the units that fire most: every unit's peak activation over the song's windows (the index's own reduction,
  :func:`audiovis.index.reduce_windows`), scored as a z-score against the unit's per-window catalogue statistics
  (``(peak - mean) / std``), so units with different scales compare.

One way in: :func:`get_engine` (a cached :class:`ColdStart`), then ``.embed(files) -> (embeddings, failed)``,
``.recommend(file)``. Adding songs to the workspace is :func:`audiovis.append.add_songs`; uploaded bytes (the
page) are :mod:`audiovis.uploads`; writing results out is :mod:`audiovis.results`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import audio
from .activations import Recorder
from .adapters import is_adapter_index
from .ann import ANN_THRESHOLD, VectorIndex, have_faiss
from .config import Config
from .counterfactual import counterfactual, listener_drivers
from .errors import AudioError, AudiovisError, WorkspaceError
from .factors import load_factors
from .features import frame_windows, song_frames
from .index import UnitIndex, reduce_windows
from .train import load_model
from .units import layer_sizes, parse_unit
from .workspace import Workspace, save_json

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
    frames : np.ndarray [shape=(t, n_mels), float16] or None   log-mel frames (kept for adding the song)
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


# --------------------------------------------------------------------------- validation
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


# --------------------------------------------------------------------------- the engine
class ColdStart:
    """A workspace's model, unit index and factors, loaded once, for cold-start queries.

    Use :func:`get_engine` for a cached instance (the model stays warm between queries).

    Parameters
    ----------
    workspace : str, Path or Workspace
        Needs the ``index`` stage (and so a trained model, features and factors).
    """

    def __init__(self, workspace: str | os.PathLike | Workspace, cfg: ColdStartConfig | None = None):
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
        """Embed one path or several (the one way to embed; ``audiovis.engines.embed`` has the same contract). A
        file that fails is reported and the others go on; ``window_factors`` are always filled (``per_window``
        only matters to the writers of :mod:`audiovis.results`, it is accepted for the engines' signature).

        Returns
        -------
        embeddings : list of Embedding   in the input order, failed files left out
        failed : list of {"file", "reason"}   the reason quotes the file
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
            if meta.get("n") != len(Y) and self.ws.writable:   # songs were added since: keep the file in step
                self._vindex.save(p)
                save_json(pm, {**meta, "n": len(Y)})
        else:
            self._vindex = VectorIndex(Y, method="hnsw")
            if not self.ws.writable:                    # a read-only workspace: built for this process only
                return self._vindex
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
                  timeline: bool = False, max_bytes: int | None = None, ablate=(), clamp=(),
                  drivers: bool = False) -> dict:
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
        ablate, clamp : units to ablate (``["conv3:17"]``) or clamp (``["conv3:17=2.5"]``): adds
            ``"counterfactual"`` (:func:`audiovis.counterfactual.counterfactual`).
        drivers : bool
            Add ``"drivers"`` to each listener: the units that drove the song towards them
            (:func:`audiovis.counterfactual.listener_drivers`).

        Returns
        -------
        dict with ``song`` (embedding summary), ``similar``, ``listeners``, ``units``, ``search``.
        """
        cfg = self.cfg
        emb = self.embed_file(file, name=name, units=True, series=timeline, max_bytes=max_bytes,
                              keep_frames=bool(ablate or clamp or drivers))
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
        if drivers:
            listener_drivers(self, emb, out["listeners"])
        if ablate or clamp:
            out["counterfactual"] = self.counterfactual(emb, ablate, clamp, k or cfg.k, n_users or cfg.n_users,
                                                        exclude=sorted(ex))
        out["embedding"] = emb
        return out

    def counterfactual(self, emb: Embedding, ablate=(), clamp=(), k: int = 10, n_users: int = 10,
                       exclude=None) -> dict:
        """Similar songs and likely listeners with units ablated or clamped, next to the original ones (an
        embedding kept with ``keep_frames=True``; :func:`audiovis.counterfactual.counterfactual`)."""
        return counterfactual(self, emb, ablate, clamp, k=k, n_users=n_users, exclude=exclude)


def as_list(files) -> list:
    """One path or an iterable of paths -> a list."""
    return [files] if isinstance(files, (str, os.PathLike)) else list(files)


_ENGINES: dict[str, tuple[tuple, ColdStart]] = {}


def engine_signature(ws: Workspace) -> tuple:
    """What a cached engine depends on: (mtime, size) of the model, the index, the factors and the catalogue."""
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
    if ws.exists() and is_adapter_index(ws):
        raise WorkspaceError(f"workspace '{ws.path}' indexes a model of your own "
                             f"({(ws.get_meta('adapter') or {}).get('name', '--model')}): cold-start queries "
                             f"(embed, recommend, add) need the CNN audiovis trains from a listening log; build one "
                             f"with `audiovis run -w NEW_WS --audio AUDIO_DIR --plays PLAYS.tsv`")
    key = str(ws.path)
    sig = engine_signature(ws)
    hit = _ENGINES.get(key)
    if hit and hit[0] == sig and (cfg is None or hit[1].cfg == cfg):
        return hit[1]
    eng = ColdStart(ws, cfg)
    _ENGINES[key] = (sig, eng)
    return eng


def forget_engine(workspace: str | os.PathLike | Workspace) -> None:
    """Drop the workspace's cached engine (its artifacts were rewritten: the next :func:`get_engine` reloads)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    _ENGINES.pop(str(ws.path), None)
