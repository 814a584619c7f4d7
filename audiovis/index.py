"""The unit activation index: for every unit of every layer, the top and bottom k clips, peak times, statistics.

A window's activation for a unit is its maximum over time inside the window (conv layers) or its value (dense
and output units). Top and bottom lists hold at most one window per song (each song's best, or least, window),
so a unit's playlist is k different songs, as in Dieleman's playlists. Memory is bounded by units x k plus one
batch; per-window activations stream to ``index/acts.npy`` [shape=(n_windows, n_units), float16] on disk.

This module is the one path from recorded layer outputs to the index: :func:`reduce_windows` (window to unit
activations: the build, cold-start queries and added songs; in :mod:`audiovis.activations`), :func:`reduce_batch`
(each song's best and least
window, running sums), :func:`merge_states` (the Ray engine's combine), :func:`unit_statistics` and
:func:`merge_unit_data` (songs added later, :mod:`audiovis.append`).
"""
from __future__ import annotations

import json
import mmap
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .activations import Recorder, reduce_windows
from .config import IndexConfig
from .errors import ParameterError
from .features import FeatureStore
from .units import Layers, Unit, layer_sizes, parse_unit
from .workspace import Workspace, save_json, save_npy, save_npz

# what the stage writes, in the workspace (its done-marker records them, and index/unit_names.json when written)
OUTPUTS = ("index/units.npz", "index/acts.npy", "index/song_factors_pred.npy", "index/layers.json")

N_BINS = 32


def window_activations(model, x: torch.Tensor, layers: dict[str, int], hop_s: float):
    """Per-window activations of every unit, and the time of each conv unit's peak inside the window.

    Parameters
    ----------
    x : torch.Tensor [shape=(b, n_mels, window_frames)]

    Returns
    -------
    A : np.ndarray [shape=(b, n_units)]     max over time (conv) or value (dense, output)
    peak : np.ndarray [shape=(b, n_units)]  seconds from the window start of the peak (window centre for dense)
    """
    acts, _ = Recorder(model, list(layers)).record(x)
    return reduce_windows(model, acts, layers, hop_s, x.shape[-1])


def merge_topk(best_v, best_w, best_p, v, w, p, k, largest: bool):
    """Merge candidates (U, m) into the kept (U, k) lists; ties broken by window index (deterministic)."""
    V = np.concatenate([best_v, v], 1)
    W = np.concatenate([best_w, w], 1)
    P = np.concatenate([best_p, p], 1)
    key = -V if largest else V
    key = np.where(W < 0, np.inf, key)                    # empty slots last
    order = np.lexsort((W, key), axis=1)[:, :k]
    return (np.take_along_axis(V, order, 1), np.take_along_axis(W, order, 1), np.take_along_axis(P, order, 1))


def new_unit_state(U: int, k: int) -> dict:
    """An empty per-unit state: top/bottom-k lists (value, window, peak) and running statistics."""
    return {"top_v": np.full((U, k), -np.inf, np.float32), "top_w": np.full((U, k), -1, np.int64),
            "top_p": np.zeros((U, k), np.float32), "bot_v": np.full((U, k), np.inf, np.float32),
            "bot_w": np.full((U, k), -1, np.int64), "bot_p": np.zeros((U, k), np.float32), "sum": np.zeros(U),
            "sumsq": np.zeros(U), "silent": np.zeros(U), "vmin": np.full(U, np.inf), "vmax": np.full(U, -np.inf)}


def reduce_batch(st: dict, A: np.ndarray, P: np.ndarray, widx: np.ndarray, songs_b: np.ndarray, k: int) -> None:
    """Fold one batch into a unit state (in place); shared by the local and the Ray engine.

    Parameters
    ----------
    A, P : np.ndarray [shape=(b, n_units)]   activations and peak times (``window_activations``)
    widx : np.ndarray [shape=(b,)]           window indices; a song's windows are never split between batches
    songs_b : np.ndarray [shape=(b,)]        song of each window (sorted)
    """
    st["sum"] += A.sum(0, dtype=np.float64)
    st["sumsq"] += (A.astype(np.float64) ** 2).sum(0)
    st["silent"] += (A <= 0).sum(0)
    st["vmin"] = np.minimum(st["vmin"], A.min(0))
    st["vmax"] = np.maximum(st["vmax"], A.max(0))
    # each song's best and least window per unit, then merge into the kept lists
    useg = np.unique(songs_b, return_index=True)[1]
    for largest, pre in ((True, "top"), (False, "bot")):
        red = np.maximum if largest else np.minimum
        red_v = red.reduceat(A, useg, axis=0)                          # (songs, U)
        # window achieving it: first window in the song whose value equals the reduced value
        seg_id = np.repeat(np.arange(len(useg)), np.diff(np.append(useg, len(widx))))
        hit = A == red_v[seg_id]
        cand = np.where(hit, np.arange(len(widx))[:, None], len(widx))
        first = np.minimum.reduceat(cand, useg, axis=0)                # (songs, U) positions in batch
        wv = widx[first]
        pv = np.take_along_axis(P, first, 0)
        st[f"{pre}_v"], st[f"{pre}_w"], st[f"{pre}_p"] = merge_topk(
            st[f"{pre}_v"], st[f"{pre}_w"], st[f"{pre}_p"], red_v.T.astype(np.float32), wv.T, pv.T, k, largest)


def merge_states(a: dict, b: dict, k: int) -> dict:
    """Combine two unit states of disjoint song sets (associative and commutative: the distributed combine)."""
    out = {"sum": a["sum"] + b["sum"], "sumsq": a["sumsq"] + b["sumsq"], "silent": a["silent"] + b["silent"],
           "vmin": np.minimum(a["vmin"], b["vmin"]), "vmax": np.maximum(a["vmax"], b["vmax"])}
    for largest, pre in ((True, "top"), (False, "bot")):
        out[f"{pre}_v"], out[f"{pre}_w"], out[f"{pre}_p"] = merge_topk(
            a[f"{pre}_v"], a[f"{pre}_w"], a[f"{pre}_p"], b[f"{pre}_v"], b[f"{pre}_w"], b[f"{pre}_p"], k, largest)
    return out


def unit_statistics(st: dict, n: int) -> dict:
    """The per-unit statistics of ``units.npz`` from a unit state over ``n`` windows: mean, std, sparsity, and
    strength (mean of the top-k) and selectivity (strength as a z-score)."""
    n = max(n, 1)
    mean = st["sum"] / n
    std = np.sqrt(np.maximum(st["sumsq"] / n - mean ** 2, 0))
    strength = np.nanmean(np.where(st["top_w"] >= 0, st["top_v"], np.nan), 1)
    return {"mean": mean, "std": std, "sparsity": st["silent"] / n, "strength": strength,
            "selectivity": (strength - mean) / np.maximum(std, 1e-6)}


def unit_state_of(d: dict, n: int) -> dict:
    """The unit state that ``units.npz`` arrays ``d`` over ``n`` windows summarise (the inverse of
    :func:`unit_statistics`; ``vmin``/``vmax`` are the overall extremes, ``vmin_all``/``vmax_all`` once songs were
    added)."""
    st = {key: np.array(d[key], copy=True) for key in ("top_v", "top_w", "top_p", "bot_v", "bot_w", "bot_p")}
    st.update(sum=d["mean"] * n, sumsq=(d["std"] ** 2 + d["mean"] ** 2) * n, silent=np.round(d["sparsity"] * n),
              vmin=np.array(d.get("vmin_all", d["vmin"]), copy=True),
              vmax=np.array(d.get("vmax_all", d["vmax"]), copy=True))
    return st


def merge_unit_data(d: dict, n_old: int, A: np.ndarray, P: np.ndarray, widx: np.ndarray, songs: np.ndarray,
                    k: int) -> dict:
    """Fold new songs' windows into a unit index's ``units.npz`` arrays (returns new arrays; ``add``).

    The same reduction as the index build (:func:`reduce_batch`: each new song's best and least window per unit
    merged into the top/bottom-k lists, exact running sums). Histograms keep their bin edges (``vmin``/``vmax``
    of the build are left as they are): new values outside them are clipped into the end bins; the exact
    extremes are kept as ``vmin_all``/``vmax_all``.

    Parameters
    ----------
    d : dict   the arrays of ``units.npz``
    n_old : int   windows already counted in ``d``
    A, P : np.ndarray [shape=(m, U)]   activations and peak times of the new windows (:func:`reduce_windows`)
    widx : np.ndarray [shape=(m,)]   their global window indices
    songs : np.ndarray [shape=(m,)]   their song indices (sorted, consecutive per song)
    """
    st = unit_state_of(d, n_old)
    reduce_batch(st, A, P, widx, songs, k)
    out = {key: np.array(v, copy=True) for key, v in d.items()}
    out.update({key: st[key] for key in ("top_v", "top_w", "top_p", "bot_v", "bot_w", "bot_p")})
    out.update(unit_statistics(st, n_old + len(A)))
    out["vmin_all"], out["vmax_all"] = st["vmin"], st["vmax"]
    out["hist"] = d["hist"] + window_histograms(A, *histogram_edges(d["vmin"], d["vmax"]))
    return out


def histogram_edges(vmin: np.ndarray, vmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo_e, hi_e = np.where(np.isfinite(vmin), vmin, 0), np.where(np.isfinite(vmax), vmax, 1)
    return lo_e, np.where(hi_e > lo_e, hi_e, lo_e + 1e-6)


def window_histograms(A_all, lo_e: np.ndarray, hi_e: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Histogram counts [shape=(n_units, N_BINS)] of rows ``start:stop`` of the activations, 4096 rows at a time."""
    U = A_all.shape[1]
    stop = len(A_all) if stop is None else stop
    hist = np.zeros((U, N_BINS), np.int64)
    for i in range(start, stop, 4096):
        a = np.asarray(A_all[i:min(i + 4096, stop)], dtype=np.float32)
        bins = np.clip(((a - lo_e) / (hi_e - lo_e) * N_BINS).astype(np.int64), 0, N_BINS - 1)
        bins += np.arange(U) * N_BINS                      # one flat (unit, bin) index: bincount, not np.add.at
        hist += np.bincount(bins.ravel(), minlength=U * N_BINS).reshape(U, N_BINS)
        drop_pages(A_all)
    return hist


def drop_pages(*arrays) -> None:
    """Unmap the pages of memory-mapped arrays this process has touched. They are MAP_SHARED, so nothing is lost
    (dirty pages stay in the page cache); the point is that resident memory does not grow with the catalogue
    while a stage streams through the features and activations."""
    for a in arrays:
        mm = getattr(a, "_mmap", None)
        if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED)


def song_batches(store: FeatureStore, start_song: int, batch_windows: int):
    """Consecutive songs grouped so that a song's windows are never split between batches."""
    wsong = store.windows[:, 0]
    s = start_song
    n = store.n_songs
    while s < n:
        lo = np.searchsorted(wsong, s)
        e = s + 1
        while e < n and np.searchsorted(wsong, e + 1) - lo <= batch_windows:
            e += 1
        hi = np.searchsorted(wsong, e)
        yield s, e, np.arange(lo, hi)
        s = e


def up_to_date(ws: Workspace, cfg: IndexConfig, say: bool = True) -> dict | None:
    """The finished index stage's record when the index on disk was built with ``cfg`` and is as the stage
    wrote it (:meth:`Workspace.finished`), else None."""
    return ws.finished("index", OUTPUTS, say=say, config=cfg.to_dict())


@torch.no_grad()   # not torch.set_grad_enabled(False): that leaked into the caller (training after it failed)
def build_index(workspace: str | os.PathLike | Workspace, cfg: IndexConfig | None = None, force: bool = False,
                progress: bool = True, model=None) -> dict:
    """Run every window of every song through the model and build the unit index (resumable).

    Parameters
    ----------
    model : str, dict or ModelAdapter, optional
        Index a model audiovis did not train (:func:`audiovis.adapters.load_adapter`: ``"crepe:tiny"``,
        ``"package.module:factory"``, a TorchScript file); the workspace remembers it, so later runs and the page
        reuse it. Default: the model the workspace was last indexed with, else the CNN of ``audiovis train``;
        ``"cnn"``: that CNN again.
    """
    from .adapters import load_adapter, set_workspace_adapter, workspace_adapter
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if model == "cnn":                                     # back to audiovis's own CNN, once there is one
        ws.require("train")
        adapter = None
        if ws.get_meta("adapter"):
            ws.set_meta("adapter", None)
    else:
        adapter = load_adapter(model) if model is not None else workspace_adapter(ws)
    ws.require("featurize" if adapter is not None else "train")
    cfg = cfg or IndexConfig()
    trained = ["adapter", adapter.spec()] if adapter is not None else ws.get_meta("done:train")
    done = None if force else up_to_date(ws, cfg, say=progress)
    if done and done.get("model", trained) == trained:
        return done["summary"]                             # up to date: no model run, not even a probe
    store = FeatureStore(ws)
    if adapter is not None:
        source = _AdapterWindows(ws, store, adapter)
        layers = source.layers
        set_workspace_adapter(ws, adapter, layers)        # a killed run resumes with it
    else:
        from .train import load_model
        cnn, _ = load_model(ws)
        source, layers = None, layer_sizes(cnn)
        from .models.frozen import FrozenWindows, uses_trunk_cache
        if uses_trunk_cache(cnn):                          # the frozen layers' units are cached: run the head
            source = FrozenWindows(ws, store, cnn, layers, progress)
    U = sum(layers.values())
    K = list(layers.values())[-1]                          # the last layer: factors (CNN) or the model's output
    nW = len(store.windows)
    hop_s = store.cfg.hop_length / store.cfg.sr
    d = ws.index_dir
    d.mkdir(parents=True, exist_ok=True)
    partial_acts, state_path = d / "acts.partial.npy", d / "state.partial.npz"
    sig = json.dumps([cfg.to_dict(), str(trained)])
    st = None
    if state_path.exists() and partial_acts.exists() and not force:
        z = np.load(state_path, allow_pickle=False)
        if str(z["sig"]) == sig:
            st = {k: z[k] for k in z.files if k != "sig"}
    k = cfg.k
    if st is None:
        st = {"next_song": np.array(0), **new_unit_state(U, k),
              "song_sum": np.zeros((store.n_songs, K)), "song_n": np.zeros(store.n_songs)}
        acts = np.lib.format.open_memmap(partial_acts, mode="w+", dtype=np.float16, shape=(nW, U))
    else:
        acts = np.load(partial_acts, mmap_mode="r+")
        if progress:
            print(f"index: resuming at song {int(st['next_song'])}")
    desc = "index" if adapter is None else f"index ({adapter.name})"
    bar = tqdm(total=nW, desc=desc, unit="win", disable=not progress)
    bar.update(int(np.searchsorted(store.windows[:, 0], int(st["next_song"]))))
    out_lo = U - K
    saved = time.monotonic()
    for b, (_s0, s1, widx) in enumerate(song_batches(store, int(st["next_song"]), cfg.batch_windows)):
        if len(widx):
            if source is None:
                A, P = window_activations(cnn, torch.from_numpy(store.batch(widx)), layers, hop_s)
            else:
                A, P, kept = source.activations(widx)
                acts[widx[~kept]] = 0                      # a song that no longer decodes: reported, not ranked
                A, P, widx = A[kept], P[kept], widx[kept]
            if len(widx):
                acts[widx] = A.astype(np.float16)
                songs_b = store.windows[widx, 0]
                np.add.at(st["song_sum"], songs_b, A[:, out_lo:])
                np.add.at(st["song_n"], songs_b, 1)
                reduce_batch(st, A, P, widx, songs_b, k)
            bar.update(len(widx) + (0 if source is None else int((~kept).sum())))
        st["next_song"] = np.array(s1)
        if (b + 1) % cfg.checkpoint_every == 0 or time.monotonic() - saved > 60:   # a slow model: every minute
            saved = time.monotonic()
            acts.flush()
            save_npz(state_path, sig=np.array(sig), **st)
            drop_pages(acts, store.logmel)
    bar.close()
    acts.flush()
    del acts
    song_pred = np.where(st["song_n"][:, None] > 0, st["song_sum"] / np.maximum(st["song_n"][:, None], 1), np.nan)
    if adapter is not None:
        source.finish(layers)
    else:                                                  # what the content model says its units are (tags)
        from .adapters import write_unit_notes
        write_unit_notes(ws.index_dir / "unit_notes.json", cnn, layers)
    return write_index(ws, cfg, st, layers, nW, song_pred, partial_acts, state_path, model=trained)


class _AdapterWindows:
    """The index's view of a model adapter: per-window unit activations through the one reduction."""

    def __init__(self, ws: Workspace, store: FeatureStore, adapter):
        from .adapters import WindowSource
        self.ws, self.adapter = ws, adapter
        self.source = WindowSource(ws, store, adapter)
        self.window_frames = store.cfg.window_frames
        self.hop_s = store.cfg.hop_length / store.cfg.sr
        self.layers = adapter.layer_sizes(self.source.n, store.cfg.n_mels, self.window_frames)
        self.failed: dict[int, str] = {}

    def activations(self, widx: np.ndarray):
        x, kept = self.source.batch(widx, self.failed)
        U = sum(self.layers.values())
        A, P = np.zeros((len(widx), U), np.float32), np.zeros((len(widx), U), np.float32)
        if kept.any():
            acts = self.adapter.outputs(torch.from_numpy(x[kept]))
            missing = [name for name in self.layers if name not in acts]
            if missing:
                raise ParameterError(f"model adapter {self.adapter.name!r} did not return layer {missing[0]!r}")
            A[kept], P[kept] = reduce_windows(None, acts, self.layers, self.hop_s, self.window_frames)
        return A, P, kept

    def finish(self, layers: dict) -> None:
        from .adapters import write_unit_notes
        write_unit_notes(self.ws.index_dir / "unit_notes.json", self.adapter, layers)
        ids = self.ws.song_ids()
        with self.ws.db:
            self.ws.db.execute("DELETE FROM report WHERE stage='index'")
            self.ws.db.executemany("INSERT INTO report(stage, item, reason) VALUES ('index', ?, ?)",
                                   [(ids[s], f"not indexed: the file no longer decodes ({why})")
                                    for s, why in self.failed.items()])


def write_index(ws: Workspace, cfg: IndexConfig, st: dict, layers: dict, nW: int, song_pred: np.ndarray,
                 partial_acts, state_path, hist: np.ndarray | None = None, model=None) -> dict:
    """Final statistics and artifacts from a complete unit state (both engines); ``hist`` computed if None."""
    d, k = ws.index_dir, cfg.k
    if hist is None:  # histograms over all windows, one chunked pass over the on-disk activations
        A_all = np.load(partial_acts, mmap_mode="r")
        hist = window_histograms(A_all, *histogram_edges(st["vmin"], st["vmax"]))
        del A_all
    save_npz(d / "units.npz", top_v=st["top_v"], top_w=st["top_w"], top_p=st["top_p"], bot_v=st["bot_v"],
             bot_w=st["bot_w"], bot_p=st["bot_p"], **unit_statistics(st, nW), vmin=st["vmin"], vmax=st["vmax"],
             hist=hist)
    save_npy(d / "song_factors_pred.npy", song_pred.astype(np.float32))
    save_json(d / "layers.json", {"layers": layers, "k": k, "n_windows": nW})
    if getattr(layers, "names", None):                     # named units (musicnn's tags), from either engine
        save_json(d / "unit_names.json", layers.names)
    os.replace(partial_acts, d / "acts.npy")
    state_path.unlink(missing_ok=True)
    summary = {"units": sum(layers.values()), "layers": layers, "windows": nW, "k": k}
    ws.mark_done("index", {"config": cfg.to_dict(), "summary": summary, "model": model},
                 outputs=OUTPUTS + ("index/unit_names.json",))
    return summary


class UnitIndex:
    """Read access to a workspace's unit index (what the page and the CLI use).

    Parameters
    ----------
    workspace : str, Path or Workspace
        Needs the ``index`` stage.
    dictionaries : bool
        Also load the layers' dictionaries (``WS/index/dict/<layer>/``, :mod:`audiovis.dictionary`).

    Attributes
    ----------
    layers : dict[str, int]   layer name -> number of units, in forward order; dictionary layers (``dense1.dict``)
        before the model's last one, so the model's columns keep their positions
    acts : np.memmap [shape=(n_windows, n_units), float16]   per-window activations (dictionaries: StackedColumns)
    model_layers, model_data : the layer index alone, without dictionaries (``audiovis add`` merges into it)
    dictionaries, stale_dictionaries : dict   dictionary layer -> its folder / why it was left out
    """

    DICT_DIR = "dict"

    class StackedColumns:
        """Read-only column-wise concatenation of 2-D arrays (memmaps) with the same rows: ``[rows, lo:hi]``
        reads only the part the columns fall in; ``np.asarray`` gives the whole array."""

        def __init__(self, parts: list):
            self.parts, self.bounds = parts, np.cumsum([0] + [p.shape[1] for p in parts])
            self.shape, self.dtype = (parts[0].shape[0], int(self.bounds[-1])), parts[0].dtype

        def __len__(self) -> int:
            return self.shape[0]

        def __array__(self, dtype=None, copy=None):
            return np.concatenate([np.asarray(p, dtype=dtype) for p in self.parts], 1)

        def __getitem__(self, key):
            rows, cols = key if isinstance(key, tuple) else (key, slice(None))
            lo, hi, step = cols.indices(self.shape[1]) if isinstance(cols, slice) else (0, 0, 0)
            j = int(np.searchsorted(self.bounds, lo, side="right")) - 1
            if step == 1 and lo < hi <= self.bounds[min(j + 1, len(self.parts))]:      # inside one part
                return np.asarray(self.parts[j][rows, lo - self.bounds[j]:hi - self.bounds[j]])
            return np.concatenate([np.asarray(p[rows]) for p in self.parts], -1)[..., cols]

    @staticmethod
    def index_key(ws: Workspace) -> str:        # what a dictionary was learned from (added songs keep it)
        done, feat = ws.get_meta("done:index") or {}, ws.get_meta("done:featurize") or {}
        return json.dumps([done.get("config"), done.get("model"), feat.get("config")], default=str, sort_keys=True)

    def __init__(self, workspace: str | os.PathLike | Workspace, dictionaries: bool = True):
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        ws.require("index")
        self.ws = ws
        d = ws.index_dir
        meta = json.loads((d / "layers.json").read_text())
        from .adapters import read_unit_names
        self.unit_names = read_unit_names(d)                 # named units (musicnn's tags:rock)
        self.layers: dict[str, int] = Layers(meta["layers"], names=self.unit_names)
        self.k = meta["k"]
        with np.load(d / "units.npz") as z:
            self.data = {k: z[k] for k in z.files}
        self.acts = np.load(d / "acts.npy", mmap_mode="r")
        self.model_layers, self.model_data = Layers(self.layers, names=self.unit_names), self.data
        self.dictionaries, self.stale_dictionaries = {}, {}
        if dictionaries and (d / self.DICT_DIR).is_dir():
            self._add_dictionaries(d / self.DICT_DIR, int(meta.get("n_windows", len(self.acts))))
        self.song_factors = np.load(d / "song_factors_pred.npy")
        self.store = FeatureStore(ws)
        self.song_ids = ws.song_ids()
        self.offset, o = {}, 0
        for name, n in self.layers.items():
            self.offset[name] = o
            o += n
        self.n_units = o

    def _add_dictionaries(self, root, n_windows: int) -> None:
        """Load every ``root/<layer>/`` as an extra layer; a stale one goes to ``stale_dictionaries``."""
        key, found = self.index_key(self.ws), []
        for sub in sorted(p for p in root.iterdir() if (p / "layers.json").exists()):
            name = sub.name + ".dict"
            try:
                m = json.loads((sub / "layers.json").read_text())
                (name, n), = m["layers"].items()
                if m.get("index_key") != key or m.get("k") != self.k or m.get("base") not in self.layers:
                    raise ValueError("it was learned from an earlier build of the index")
                if m.get("n_windows") != n_windows:
                    raise ValueError(f"it covers {m.get('n_windows')} windows, the index {n_windows}")
                with np.load(sub / "units.npz") as z:
                    data = {k: z[k] for k in z.files}
                acts = np.load(sub / "acts.npy", mmap_mode="r")
                if acts.shape[0] < n_windows or acts.shape[1] != n:
                    raise ValueError(f"its activations have shape {acts.shape}")
            except (OSError, ValueError, KeyError) as e:
                self.stale_dictionaries[name] = (f"dictionary {name} is stale ({e}): rebuild it with `audiovis "
                                                 f"dictionary -w {self.ws.path} --layer {sub.name} --force`")
                continue
            found.append((name, n, data, acts[:n_windows], sub))
        if not found:
            return
        last, n_last, U = list(self.layers)[-1], list(self.layers.values())[-1], sum(self.layers.values())
        self.layers = Layers({**{k: v for k, v in self.layers.items() if k != last},   # the last layer stays last
                              **{name: n for name, n, *_ in found}, last: n_last}, names=self.unit_names)
        self.dictionaries = {name: sub for name, *_rest, sub in found}
        main = self.acts[:n_windows]
        self.acts = self.StackedColumns([main[:, :U - n_last]] + [a for _n, _k, _d, a, _s in found]
                                        + [main[:, U - n_last:]])
        self.data = {k: np.concatenate([v[:U - n_last]] + [dd.get(k, dd.get(k[:4])) for _n, _k, dd, _a, _s in found]
                                       + [v[U - n_last:]]) for k, v in self.model_data.items()}   # vmin_all: vmin

    def is_dictionary(self, layer: str) -> bool:
        """True for a dictionary layer (``dense1.dict``) loaded from ``WS/index/dict``."""
        return layer in self.dictionaries

    def column(self, unit: str | Unit) -> int:
        u = unit if isinstance(unit, Unit) else parse_unit(unit, self.layers)
        return self.offset[u.layer] + u.index

    def units(self, layer: str | None = None) -> list[str]:
        return [f"{name}:{i}" for name, n in self.layers.items() if layer in (None, name) for i in range(n)]

    def top(self, unit: str | Unit, n: int = 10, bottom: bool = False) -> list[dict]:
        """The unit's top (or bottom) clips: dicts with song, window, start/peak times and activation."""
        c = self.column(unit)
        pre = "bot" if bottom else "top"
        out = []
        W = self.store.cfg.window_frames
        hop_s = self.store.cfg.hop_length / self.store.cfg.sr
        for v, w, p in zip(self.data[f"{pre}_v"][c], self.data[f"{pre}_w"][c], self.data[f"{pre}_p"][c]):
            if w < 0 or len(out) >= n:
                continue
            s, st = (int(x) for x in self.store.windows[w])
            start = st * hop_s
            out.append({"song_idx": s, "song_id": self.song_ids[s], "window": int(w), "start_s": start,
                        "end_s": start + W * hop_s, "peak_s": start + float(p), "activation": float(v)})
        return out

    def stats(self, unit: str | Unit) -> dict:
        c = self.column(unit)
        d = self.data
        edges = np.linspace(d["vmin"][c], max(d["vmax"][c], d["vmin"][c] + 1e-6), N_BINS + 1)
        return {"mean": float(d["mean"][c]), "std": float(d["std"][c]), "sparsity": float(d["sparsity"][c]),
                "min": float(d.get("vmin_all", d["vmin"])[c]),   # vmin_all/vmax_all: with songs added later
                "max": float(d.get("vmax_all", d["vmax"])[c]), "strength": float(d["strength"][c]),
                "selectivity": float(d["selectivity"][c]), "hist": d["hist"][c].tolist(),
                "hist_edges": edges.tolist()}

    def table(self, layer: str | None = None) -> list[dict]:
        """One row per unit with its sortable statistics."""
        rows = []
        for name in self.units(layer):
            c = self.column(name)
            rows.append({"unit": name, "strength": float(self.data["strength"][c]),
                         "selectivity": float(self.data["selectivity"][c]),
                         "sparsity": float(self.data["sparsity"][c]), "mean": float(self.data["mean"][c])})
        return rows

    def song_activations(self, song_idx: int) -> np.ndarray:
        """Per-window activations of one song [shape=(n_windows_of_song, n_units)]."""
        return np.asarray(self.acts[self.store.song_windows(song_idx)], dtype=np.float32)
