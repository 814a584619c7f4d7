"""The log-mel front end, fixed windows, and the float16 memory-mapped feature store."""
from __future__ import annotations

import multiprocessing as mp
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import audio
from .config import FeatureConfig
from .errors import AudioError, ParameterError
from .workspace import Workspace, atomic_path, save_json, save_npy


def _hz_to_mel(f):
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=8)
def mel_basis(sr: int = 22050, n_fft: int = 1024, n_mels: int = 128, fmin: float = 0.0,
              fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters on the slaney mel scale (``librosa.filters.mel``'s defaults).

    Returns
    -------
    M : np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]  (read-only, cached)
    """
    fmax = sr / 2 if fmax is None else fmax
    fft_f = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window('hann', n)``, ``torch.hann_window(n)``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def logmel(y: np.ndarray, sr: int = 22050, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
           fmin: float = 0.0, fmax: float | None = None, amin: float = 1e-10, block: int = 512,
           _frames_first: bool = False) -> np.ndarray:
    """Log-compressed mel power spectrogram in dB (librosa's slaney mel basis and ``power_to_db(ref=1)``).

    Centred frames (zero padding of ``n_fft // 2`` at both ends), periodic Hann window, power spectrum, mel
    filters, ``10 log10(max(S, amin))``; float32 numpy throughout (no torch: featurize's worker processes start
    in a fraction of a second), ``block`` frames at a time so a 30-minute song needs no more than a few MB
    beyond its samples.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``sr``.

    Returns
    -------
    S_db : np.ndarray [shape=(n_mels, t), dtype=float32]
        ``t = 1 + n // hop_length`` frames.
    """
    if y.ndim != 1:
        raise ParameterError(f"logmel needs mono audio of shape (n,), got shape {y.shape}")
    if len(y) < 1:
        raise ParameterError("logmel got an empty signal")
    M = mel_basis(sr, n_fft, n_mels, fmin, fmax)
    win = _hann(n_fft)
    yp = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    t = 1 + len(y) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop_length][:t]   # (t, n_fft), a view
    out = np.empty((t, n_mels), np.float32)        # frames x mels in memory: song_logmel's storage layout
    MT = M.T
    for b in range(0, t, block):
        X = np.fft.rfft(frames[b:b + block] * win, axis=1)                           # complex64
        P = X.real ** 2 + X.imag ** 2
        np.matmul(P, MT, out=out[b:b + block])
    np.maximum(out, amin, out=out)
    np.log10(out, out=out)
    out *= 10.0
    return out.T if _frames_first else np.ascontiguousarray(out.T)


def song_logmel(path: str | os.PathLike, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Decode a file and return its log-mel frames [shape=(t, n_mels), dtype=float16] (storage layout)."""
    y = audio.load(path, sr=cfg.sr, max_duration=cfg.max_duration)
    S = logmel(y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin,
               fmax=cfg.fmax, _frames_first=True)   # a (mels, frames) view of (frames, mels) memory
    if S.shape[1] < cfg.window_frames:
        raise AudioError(f"'{path}': {len(y) / cfg.sr:.2f} s is shorter than one {cfg.window_s:g} s window")
    return S.T.astype(np.float16)


def _worker_init():
    # one BLAS thread per worker process: the pool already uses every core
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass


def _spawn_can_start() -> bool:
    """Spawned workers re-run the parent's ``__main__`` file; where that file is gone (Streamlit's AppTest, some
    notebooks and embedded interpreters) they die at start, so featurize in this process instead."""
    import sys
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is not None and not os.path.exists(path):
        return False
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        import importlib.util
        try:
            return importlib.util.find_spec(spec.name) is not None
        except (ImportError, ValueError):
            return False
    return True


def _run_pool(todo: list, n_jobs: int, failed: dict, bar) -> list:
    """Featurize ``todo`` in ``n_jobs`` spawned processes; returns the items left undone if the pool broke
    (a worker killed or unable to start), which the caller then runs in this process."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    done: set[int] = set()
    try:
        with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
            futures = [ex.submit(_featurize_one, item) for item in todo]
            for fut in as_completed(futures):
                idx, err = fut.result()
                done.add(idx)
                if err:
                    failed[idx] = err
                bar.update()
    except BrokenProcessPool as e:
        import warnings
        warnings.warn(f"featurize: worker processes failed ({e}); continuing in this process", RuntimeWarning,
                      stacklevel=3)
    return [item for item in todo if item[0] not in done]


def _featurize_one(args):
    idx, path, out, cfg_dict = args
    cfg = FeatureConfig.from_dict(cfg_dict)
    try:
        F = song_logmel(path, cfg)
    except AudioError as e:
        return idx, str(e)
    except Exception as e:  # one bad song never loses the rest of the work
        return idx, f"'{path}': unexpected decoding error: {type(e).__name__}: {e}"
    with atomic_path(out, suffix=".npy") as tmp:
        np.save(tmp, F)
    return idx, None


def featurize(workspace: str | os.PathLike | Workspace, cfg: FeatureConfig | None = None, n_jobs: int | None = None,
              force: bool = False, progress: bool = True, runner=None) -> dict:
    """Compute log-mel features of every song into ``features/`` (resumable: finished songs are kept).

    Writes ``logmel.npy`` [shape=(total_frames, n_mels), float16], ``offsets.npy`` [shape=(n_songs + 1,)] (song
    ``i`` is frames ``offsets[i]:offsets[i+1]``), and ``windows.npy`` [shape=(n_windows, 2)] (song index, first
    frame) for consecutive non-overlapping windows of ``cfg.window_s``.

    ``runner`` (used by :mod:`audiovis.engines`): a callable taking the list of ``_featurize_one`` items and
    yielding ``(idx, error or None)`` as songs finish; default: a local process pool of ``n_jobs``.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("ingest")
    cfg = cfg or FeatureConfig()
    done = ws.get_meta("done:featurize")
    if done and not force and done.get("config") == cfg.to_dict():
        return done["summary"]
    cache = ws.features_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    prev_cfg = ws.get_meta("featurize:config")
    if prev_cfg != cfg.to_dict() or force:  # cached songs were computed with other settings
        for p in cache.glob("*.npy"):
            p.unlink()
        ws.set_meta("featurize:config", cfg.to_dict())
    songs = ws.songs()
    with ws.db:
        ws.db.execute("DELETE FROM report WHERE stage='featurize'")
        ws.db.execute("UPDATE songs SET status='ok', reason=NULL WHERE status='failed'")
    todo = [(s["idx"], s["path"], str(cache / f"{s['idx']}.npy"), cfg.to_dict())
            for s in songs if not (cache / f"{s['idx']}.npy").exists()]
    failed: dict[int, str] = {}
    n_jobs = n_jobs or min(os.cpu_count() or 1, 8)
    bar = tqdm(total=len(songs), initial=len(songs) - len(todo), desc="featurize", unit="song",
               disable=not progress)
    if runner is not None:
        for idx, err in runner(todo):
            if err:
                failed[idx] = err
            bar.update()
    else:
        pending = todo
        if n_jobs > 1 and len(todo) > 4 and _spawn_can_start():
            pending = _run_pool(todo, n_jobs, failed, bar)
        for item in pending:                     # serial path, or what a broken pool left undone
            idx, err = _featurize_one(item)
            if err:
                failed[idx] = err
            bar.update()
    bar.close()
    # songs that failed in an earlier, interrupted run have no cache file: they are in todo and failed again
    with ws.db:
        for idx, err in failed.items():
            ws.db.execute("UPDATE songs SET status='failed', reason=? WHERE idx=?", (err, idx))
            ws.db.execute("INSERT INTO report(stage, item, reason) VALUES ('featurize', ?, ?)",
                          (songs[idx]["song_id"], err))
    summary = _consolidate(ws, songs, cfg, progress)
    summary["failed"] = len(failed)
    ws.mark_done("featurize", {"config": cfg.to_dict(), "summary": summary})
    return summary


def _consolidate(ws: Workspace, songs: list[dict], cfg: FeatureConfig, progress: bool) -> dict:
    cache = ws.features_dir / "cache"
    lengths = np.zeros(len(songs), dtype=np.int64)
    for s in songs:
        p = cache / f"{s['idx']}.npy"
        if p.exists():
            lengths[s["idx"]] = np.load(p, mmap_mode="r").shape[0]
    offsets = np.zeros(len(songs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = ws.features_dir / "logmel.npy"
    with atomic_path(out, suffix=".npy") as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(int(offsets[-1]), cfg.n_mels))
        for s in tqdm(songs, desc="featurize: consolidating", unit="song", disable=not progress):
            if lengths[s["idx"]]:
                mm[offsets[s["idx"]]:offsets[s["idx"] + 1]] = np.load(cache / f"{s['idx']}.npy")
        mm.flush()
        del mm
    W = cfg.window_frames
    windows = [(i, st) for i in range(len(songs)) for st in range(0, int(lengths[i]) - W + 1, W)]
    windows_arr = np.array(windows, dtype=np.int64).reshape(-1, 2)
    save_npy(ws.features_dir / "offsets.npy", offsets)
    save_npy(ws.features_dir / "windows.npy", windows_arr)
    save_json(ws.features_dir / "config.json", cfg.to_dict())
    return {"songs": int((lengths > 0).sum()), "frames": int(offsets[-1]), "windows": len(windows),
            "hours": float(offsets[-1] * cfg.hop_length / cfg.sr / 3600)}


class FeatureStore:
    """Read-only, memory-mapped access to a workspace's features.

    Attributes
    ----------
    logmel : np.memmap [shape=(total_frames, n_mels), float16]
    offsets : np.ndarray [shape=(n_songs + 1,)]
    windows : np.ndarray [shape=(n_windows, 2)]  (song index, first frame)
    """

    def __init__(self, ws: Workspace):
        ws.require("featurize")
        d = ws.features_dir
        import json
        self.cfg = FeatureConfig.from_dict(json.loads((d / "config.json").read_text()))
        self.logmel = np.load(d / "logmel.npy", mmap_mode="r")
        self.offsets = np.load(d / "offsets.npy")
        self.windows = np.load(d / "windows.npy")

    @property
    def n_songs(self) -> int:
        return len(self.offsets) - 1

    def song(self, idx: int) -> np.ndarray:
        """Frames of one song [shape=(t, n_mels), float16]."""
        return self.logmel[self.offsets[idx]:self.offsets[idx + 1]]

    def n_frames(self, idx: int) -> int:
        return int(self.offsets[idx + 1] - self.offsets[idx])

    def window(self, w: int) -> np.ndarray:
        """One window [shape=(n_mels, window_frames), float32] in the model's layout."""
        s, st = self.windows[w]
        a = self.offsets[s] + st
        return np.asarray(self.logmel[a:a + self.cfg.window_frames], dtype=np.float32).T

    def batch(self, ws_idx: np.ndarray) -> np.ndarray:
        """Windows [shape=(b, n_mels, window_frames), float32]."""
        return np.stack([self.window(int(w)) for w in ws_idx]) if len(ws_idx) else \
            np.zeros((0, self.cfg.n_mels, self.cfg.window_frames), np.float32)

    def song_windows(self, idx: int) -> np.ndarray:
        """Indices of a song's windows (into ``windows``)."""
        lo, hi = np.searchsorted(self.windows[:, 0], [idx, idx + 1])
        return np.arange(lo, hi)
