"""The Ray engine: featurize, embed and index on a Ray cluster with Ray Data (``pip install audiovis[ray]``).

Same inputs, same artifacts as the local engine; what runs where:

* featurize: ``ray.data.from_items`` of (idx, path) rows, decoding and log-mel in map tasks
  (:func:`audiovis.features.featurize_one`, one cached ``.npy`` per song), then the local consolidation;
* embed: decoding and windowing in map tasks, the model in an actor pool (``map_batches`` with a callable class:
  one model load per actor, ``num_gpus=1`` per actor when CUDA is available);
* index: the local path's song-aligned window batches (:func:`audiovis.index.song_batches`) are rows of a
  dataset, a fixed number of them per actor task (``_BATCHES_PER_TASK``); the model actors (an actor pool) read
  their windows from the memory-mapped feature store, run the model, fold each batch with the local per-batch
  reduction (:func:`audiovis.index.reduce_batch`) into one unit state per call, and the driver merges the
  calls' states as they stream in (:func:`audiovis.index.merge_states`: top/bottom-k merge with a deterministic
  tie-break, sums, sums of squares, counts, min, max; order-free); histograms in a second pass of tasks.
  Actors write their per-window activations and per-song predictions straight into the workspace's
  memory-mapped arrays and unmap the touched pages after each call, so memory per worker is flat in catalogue
  size (measured: bench/RESULTS.md, "scale out (Ray)").

On a multi-node cluster the workspace (and the audio, for featurize/embed) must be on storage every node sees
at the same path (NFS, a mounted bucket). Not resumable mid-stage: Ray retries failed tasks; a run that dies
starts the stage again.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
from pathlib import Path

import numpy as np

from ..errors import AudiovisError, ParameterError
from ..workspace import Workspace

RAY_HINT = "the ray engine needs Ray: pip install 'audiovis[ray]' (ray[data]>=2.9)"


def have_ray() -> bool:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray() -> None:
    if not have_ray():
        raise AudiovisError(RAY_HINT)


def _ws(workspace) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


@contextlib.contextmanager
def session(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Use the Ray already initialised in this process, connect to ``address`` (or ``RAY_ADDRESS``), or start
    a local Ray for the duration (shut down afterwards).

    ``num_cpus`` (local Ray only): logical CPUs; default ``max(os.cpu_count(), 2)`` so that one actor and one
    read task fit even on a 1-core machine.
    """
    import ray
    started = False
    if not ray.is_initialized():
        env = {"env_vars": {"OPENBLAS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}}
        address = address or os.environ.get("AUDIOVIS_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
        kw = {"include_dashboard": False, "log_to_driver": not quiet, "runtime_env": env,
              "ignore_reinit_error": True}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=num_cpus or max(os.cpu_count() or 1, 2), **kw)
        started = True
    try:
        _configure(quiet)
        yield ray
    finally:
        if started:
            ray.shutdown()


def _configure(quiet: bool) -> None:
    from ray.data import DataContext
    ctx = DataContext.get_current()
    if quiet:
        for attr in ("enable_progress_bars", "enable_operator_progress_bars"):
            if hasattr(ctx, attr):
                setattr(ctx, attr, False)
        import logging
        logging.getLogger("ray.data").setLevel(logging.WARNING)


def _cluster_sizing(workers: int | None) -> tuple[int, float]:
    """(actors, gpus per actor): one actor per GPU, else ``workers`` (default: leave one CPU for reading)."""
    import ray
    import torch
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus and torch.cuda.is_available():
        return (workers or gpus), 1.0
    cpus = int(res.get("CPU", 1))
    return (workers or max(1, cpus - 1)), 0.0


def _actor_pool(n: int):
    from ray.data import ActorPoolStrategy
    return ActorPoolStrategy(min_size=n, max_size=n)


# --------------------------------------------------------------------------- featurize
def _featurize_row(row: dict, cfg: dict) -> dict:
    from ..features import featurize_one, worker_init
    worker_init()
    idx, err = featurize_one((int(row["idx"]), row["path"], row["out"], cfg))
    return {"idx": idx, "err": err or ""}


def featurize(workspace, cfg=None, force: bool = False, progress: bool = True, address: str | None = None,
              num_cpus: int | None = None, **_ignored) -> dict:
    """:func:`audiovis.features.featurize` with decoding and log-mel in Ray tasks (same artifacts)."""
    require_ray()
    from ..features import featurize as local_featurize
    ws = _ws(workspace)

    def runner(todo):
        if not todo:
            return
        with session(address, num_cpus) as ray:
            rows = [{"idx": int(i), "path": str(p), "out": str(o)} for i, p, o, _ in todo]
            ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 200))
            ds = ds.map(_featurize_row, fn_kwargs={"cfg": todo[0][3]}, num_cpus=1)
            for r in ds.iter_rows():
                yield int(r["idx"]), (r["err"] or None)

    return local_featurize(ws, cfg, force=force, progress=progress, runner=runner)


# --------------------------------------------------------------------------- index
class _Features:
    """Memory-mapped features of a workspace (nothing catalogue-sized is loaded into memory)."""

    def __init__(self, ws_path: str):
        d = Path(ws_path) / "features"
        from ..config import FeatureConfig
        self.cfg = FeatureConfig.from_dict(json.loads((d / "config.json").read_text()))
        self.logmel = np.load(d / "logmel.npy", mmap_mode="r")
        self.offsets = np.load(d / "offsets.npy", mmap_mode="r")
        self.windows = np.load(d / "windows.npy", mmap_mode="r")

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``lo:hi`` -> (x [shape=(b, n_mels, window_frames), float16], songs [shape=(b,)])."""
        W = self.cfg.window_frames
        win = np.asarray(self.windows[lo:hi])
        x = np.empty((hi - lo, self.cfg.n_mels, W), np.float16)
        for j, (s, st) in enumerate(win):
            a = int(self.offsets[s]) + int(st)
            x[j] = self.logmel[a:a + W].T
        return x, win[:, 0].copy()


def _rss_mb() -> tuple[float, float]:
    """This process's resident memory in MB: (anonymous, file-backed + shared).

    Anonymous memory is what a worker owns (its heap, Python objects, torch); file-backed pages are pages of the
    memory-mapped workspace files and shared pages those of Ray's object store: both reclaimable by the kernel,
    and counted in peak RSS, which is why peak RSS is not the measure here."""
    anon = file = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) / 1024
                elif line.startswith("RssFile:"):
                    file = (file or 0) + int(line.split()[1]) / 1024
                elif line.startswith("RssShmem:"):
                    file = (file or 0) + int(line.split()[1]) / 1024
    except OSError:  # not Linux
        pass
    if anon is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0.0
    return anon, file or 0.0


# Song-aligned window batches per actor task. Ray Data buffers a task's outputs (and, when the read is fused
# into the actor, its inputs) up to DataContext.target_max_block_size (128 MiB) before handing them on, so the
# work given to one task must not grow with the catalogue: that (8 blocks for the whole catalogue, ever longer
# tasks) made the actors' memory grow with catalogue size. A task of a fixed number of batches bounds it.
_BATCHES_PER_TASK = 8


class _IndexActor:
    """One model per actor; each call: a few song-aligned batches (``lo``, ``hi`` window ranges), read from the
    memory-mapped features, run through the model and folded into one unit state, returned pickled."""

    def __init__(self, ws_path: str, k: int, threads: int = 1):
        import torch

        from ..train import load_model
        from ..units import layer_sizes
        torch.set_num_threads(threads)
        ws = Workspace(ws_path)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, _ = load_model(ws)
        self.model.to(self.device).eval()
        self.layers = layer_sizes(self.model)
        self.U = sum(self.layers.values())
        self.K = self.model.cfg.n_factors
        self.features = _Features(ws_path)
        cfg = self.features.cfg
        self.hop_s = cfg.hop_length / cfg.sr
        self.k = k
        d = ws.index_dir
        self.acts = np.load(d / "acts.partial.npy", mmap_mode="r+")
        self.pred = np.load(d / "song_pred.partial.npy", mmap_mode="r+")

    def __call__(self, batch: dict) -> dict:
        import torch

        from ..index import drop_pages, new_unit_state, reduce_batch, window_activations
        st = new_unit_state(self.U, self.k)
        n_win = 0
        for lo, hi in zip(np.asarray(batch["lo"]).tolist(), np.asarray(batch["hi"]).tolist()):
            x, songs = self.features.read(lo, hi)
            x = torch.from_numpy(x.astype(np.float32)).to(self.device)
            with torch.no_grad():
                A, P = window_activations(self.model, x, self.layers, self.hop_s)
            del x
            self.acts[lo:hi] = A.astype(np.float16)
            # every song of the batch is complete: its mean output is final (same arithmetic as the local path)
            uniq, inv = np.unique(songs, return_inverse=True)
            ssum = np.zeros((len(uniq), self.K))
            np.add.at(ssum, inv, A[:, self.U - self.K:])
            n = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
            self.pred[uniq] = (ssum / n[:, None]).astype(np.float32)
            reduce_batch(st, A, P, np.arange(lo, hi), songs, self.k)   # the local path's fold, in its order
            n_win += hi - lo
        # unmap the pages of the memory-mapped files touched by this call (MAP_SHARED: written pages stay in the
        # page cache and reach the file), so that resident memory does not grow as the actor streams through
        drop_pages(self.acts, self.pred, self.features.logmel, self.features.windows, self.features.offsets)
        anon, file = _rss_mb()
        acc = {"st": st, "windows": n_win, "calls": 1, "rss_mb": anon, "file_mb": file}   # max over calls
        return {"acc": np.array([pickle.dumps(acc, protocol=5)], dtype=object)}


def _fold(a: dict | None, b: dict | None, k: int) -> dict | None:
    from ..index import merge_states
    if a is None or b is None:
        return a if b is None else b
    return {"st": merge_states(a["st"], b["st"], k), "windows": a["windows"] + b["windows"],
            "calls": a["calls"] + b["calls"], "rss_mb": max(a["rss_mb"], b["rss_mb"]),
            "file_mb": max(a["file_mb"], b["file_mb"])}


def _hist_task(batch: dict, ws_path: str, lo_e: np.ndarray, hi_e: np.ndarray) -> dict:
    from ..index import window_histograms
    A_all = np.load(Path(ws_path) / "index" / "acts.partial.npy", mmap_mode="r")
    h = window_histograms(A_all, lo_e, hi_e, int(batch["lo"][0]), int(batch["hi"][0]))
    return {"hist": h[None]}


def build_index(workspace, cfg=None, force: bool = False, progress: bool = True, address: str | None = None,
                workers: int | None = None, num_cpus: int | None = None, threads: int = 1,
                stats: dict | None = None, **_ignored) -> dict:
    """:func:`audiovis.index.build_index` on Ray (same artifacts, same top-k windows, statistics to float error).

    Parameters
    ----------
    workers : int, optional
        Model actors (default: one per GPU, else the cluster's CPUs minus one, at least 1).
    threads : int
        torch threads per actor (CPU only).
    stats : dict, optional
        Filled with run facts: ``windows``, ``actors``, ``batches``, ``calls`` (actor calls, one unit state
        each), ``max_actor_rss_mb`` (an actor's anonymous resident memory, the largest seen at the end of a call)
        and ``max_actor_file_mb`` (its file-backed and shared resident pages, reclaimable).
    """
    require_ray()
    from ..features import FeatureStore
    from ..index import IndexConfig, histogram_edges, song_batches, up_to_date, write_index
    from ..train import load_model
    from ..units import layer_sizes
    ws = _ws(workspace)
    ws.require("train")
    cfg = cfg or IndexConfig()
    if threads < 1:
        raise ParameterError(f"threads must be at least 1, got {threads}")
    done = None if force else up_to_date(ws, cfg, say=progress)
    if done:
        return done["summary"]
    store = FeatureStore(ws)
    model, _ = load_model(ws)
    layers = layer_sizes(model)
    U, K, k = sum(layers.values()), model.cfg.n_factors, cfg.k
    nW, n_songs = len(store.windows), store.n_songs
    bounds = [(int(w[0]), int(w[-1]) + 1) for _, _, w in song_batches(store, 0, cfg.batch_windows) if len(w)]
    del store, model
    d = ws.index_dir
    d.mkdir(parents=True, exist_ok=True)
    partial_acts, pred_path = d / "acts.partial.npy", d / "song_pred.partial.npy"
    np.lib.format.open_memmap(partial_acts, mode="w+", dtype=np.float16, shape=(nW, U)).flush()
    pred = np.lib.format.open_memmap(pred_path, mode="w+", dtype=np.float32, shape=(n_songs, K))
    pred[:] = np.nan
    pred.flush()
    del pred
    ws_path = str(ws.path.resolve())
    with session(address, num_cpus, quiet=not progress) as ray:
        n_act, gpus = _cluster_sizing(workers)
        acc = None
        if bounds:
            m = _BATCHES_PER_TASK
            ds = ray.data.from_items([{"lo": lo, "hi": hi} for lo, hi in bounds],
                                     override_num_blocks=-(-len(bounds) // m))
            ds = ds.map_batches(_IndexActor, batch_size=m, fn_constructor_kwargs={
                "ws_path": ws_path, "k": k, "threads": threads}, compute=_actor_pool(n_act),
                num_cpus=0 if gpus else 1, num_gpus=gpus)
            # fold the per-call states as they stream in (one state in the driver, only the in-flight ones in
            # the object store). Not Dataset.aggregate: in Ray Data 2.60 its map side starts only when every
            # actor call is done, so the object store held every call's state (~0.4 MB each) until the end.
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for v in b["acc"]:
                    acc = _fold(acc, pickle.loads(v), k)
        if acc is None:
            from ..index import new_unit_state
            acc = {"st": new_unit_state(U, k), "windows": 0, "calls": 0, "rss_mb": 0.0, "file_mb": 0.0}
        st = acc["st"]
        if acc["windows"] != nW:
            raise AudiovisError(f"index (ray): {acc['windows']} of {nW} windows came back; run it again")
        lo_e, hi_e = histogram_edges(st["vmin"], st["vmax"])
        hist = np.zeros((U, 32), np.int64)
        if nW:
            step = 16384
            hs = ray.data.from_items([{"lo": i, "hi": min(i + step, nW)} for i in range(0, nW, step)])
            hs = hs.map_batches(_hist_task, batch_size=1, num_cpus=1,
                                fn_kwargs={"ws_path": ws_path, "lo_e": lo_e, "hi_e": hi_e})
            for b in hs.iter_batches(batch_size=16, batch_format="numpy"):
                hist += b["hist"].sum(0)
    if stats is not None:
        stats.update({"windows": nW, "actors": n_act, "batches": len(bounds), "calls": acc["calls"],
                      "max_actor_rss_mb": acc["rss_mb"], "max_actor_file_mb": acc["file_mb"]})
    song_pred = np.load(pred_path, mmap_mode="r")
    summary = write_index(ws, cfg, st, layers, nW, song_pred, partial_acts, d / "state.partial.npz", hist=hist,
                          model=ws.get_meta("done:train"))      # the model it indexed, as the local engine records
    del song_pred
    pred_path.unlink(missing_ok=True)
    return summary


# --------------------------------------------------------------------------- embed
def _decode_row(row: dict, fcfg: dict, max_duration: float) -> dict:
    from ..coldstart import validate_audio
    from ..config import FeatureConfig
    from ..features import frame_windows, song_frames, worker_init
    worker_init()
    cfg = FeatureConfig.from_dict(fcfg)
    out = {"i": row["i"], "file": row["file"], "err": "", "duration": 0.0, "sr": 0, "channels": 0,
           "x": np.zeros((0, cfg.n_mels, cfg.window_frames), np.float16), "starts": np.zeros(0, np.int64)}
    try:
        meta = validate_audio(row["file"], None, max_bytes=None, max_duration=max_duration)
        frames = song_frames(row["file"], cfg, None, max_duration=max_duration)
        starts, x = frame_windows(frames, cfg.window_frames)
    except AudiovisError as e:
        out["err"] = str(e)
        return out
    out.update(duration=float(meta.duration), sr=int(meta.sr), channels=int(meta.channels),
               x=x.astype(np.float16), starts=starts)
    return out


class _EmbedActor:
    def __init__(self, ws_path: str, batch_windows: int = 256, threads: int = 1):
        import torch

        from ..train import load_model
        torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, _ = load_model(Workspace(ws_path))
        self.model.to(self.device).eval()
        self.bw = batch_windows

    def __call__(self, batch: dict) -> dict:
        import torch
        x = np.asarray(batch["x"][0], dtype=np.float32)
        outs = []
        with torch.no_grad():
            for i in range(0, len(x), self.bw):
                outs.append(self.model(torch.from_numpy(x[i:i + self.bw]).to(self.device)).float().cpu().numpy())
        Y = np.concatenate(outs) if outs else np.zeros((0, self.model.cfg.n_factors), np.float32)
        keep = {k: batch[k] for k in ("i", "file", "err", "duration", "sr", "channels")}
        return {**keep, "Y": Y[None], "starts": np.asarray(batch["starts"][0])[None]}


def embed(workspace, files, per_window: bool = False, address: str | None = None, workers: int | None = None,
          num_cpus: int | None = None, threads: int = 1, **_ignored):
    """Like ``ColdStart.embed`` (same factors): decoding in Ray tasks, the model in an actor pool.

    Returns
    -------
    embeddings : list of Embedding (input order; ``window_factors`` always filled)
    failed : list of {"file", "reason"}
    """
    require_ray()
    from ..coldstart import ColdStartConfig, Embedding, as_list
    ws = _ws(workspace)
    ws.require("train", "featurize")
    files = [str(f) for f in as_list(files)]
    fcfg = json.loads((ws.features_dir / "config.json").read_text())
    hop_s = fcfg["hop_length"] / fcfg["sr"]
    max_duration = ColdStartConfig().max_duration
    ws_path = str(ws.path.resolve())
    with session(address, num_cpus) as ray:
        n_act, gpus = _cluster_sizing(workers)
        ds = ray.data.from_items([{"i": i, "file": f} for i, f in enumerate(files)],
                                 override_num_blocks=max(1, min(len(files), 200)))
        ds = ds.map(_decode_row, fn_kwargs={"fcfg": fcfg, "max_duration": max_duration}, num_cpus=1)
        ds = ds.map_batches(_EmbedActor, batch_size=1, fn_constructor_kwargs={"ws_path": ws_path,
                            "threads": threads}, compute=_actor_pool(n_act),
                            num_cpus=0 if gpus else 1, num_gpus=gpus)
        rows = list(ds.iter_rows())
    rows.sort(key=lambda r: int(r["i"]))
    embs, failed = [], []
    for r in rows:
        if r["err"]:
            failed.append({"file": r["file"], "reason": r["err"]})
            continue
        Y = np.asarray(r["Y"], np.float32)
        embs.append(Embedding(file=r["file"], song_id=Path(r["file"]).stem, duration=float(r["duration"]),
                              sr=int(r["sr"]), channels=int(r["channels"]), factors=Y.mean(0), window_factors=Y,
                              window_starts=np.asarray(r["starts"]) * hop_s))
    return embs, failed
