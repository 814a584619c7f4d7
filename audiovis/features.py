"""The log-mel front end, fixed windows, and the float16 memory-mapped feature store."""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import audio
from .config import FeatureConfig
from .errors import AudioError, ParameterError, WorkspaceError
from .workspace import Workspace, atomic_path, save_json, save_npy

# what the stage writes, in the workspace (its done-marker records them)
OUTPUTS = ("features/logmel.npy", "features/offsets.npy", "features/windows.npy", "features/config.json")


def _hz_to_mel(f):
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * (200.0 / 3))


def _mel_points(n_mels: int, sr: int, fmin: float, fmax: float | None) -> np.ndarray:
    """``n_mels + 2`` frequencies in Hz equally spaced on the slaney mel scale: the filters' edges and apexes."""
    fmax = sr / 2 if fmax is None else fmax
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))


def mel_frequencies(n_mels: int = 128, sr: int = 22050, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Centre frequency in Hz of each band of :func:`mel_basis` [shape=(n_mels,)] (where its triangle peaks).

    The one mel scale of audiovis: filter responses, spectrogram axes and descriptors all label bins with it
    (``librosa.mel_frequencies(n_mels + 2, htk=False)[1:-1]``).
    """
    return _mel_points(n_mels, sr, fmin, fmax)[1:-1]


@lru_cache(maxsize=8)
def mel_basis(sr: int = 22050, n_fft: int = 1024, n_mels: int = 128, fmin: float = 0.0,
              fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters on the slaney mel scale (``librosa.filters.mel``'s defaults).

    The front end's filterbank, and the only one in audiovis: dreams invert it (:func:`mel_pinv`), auralisation
    maps relevance back to linear frequency through it, and :func:`mel_frequencies` gives its centres.

    Returns
    -------
    M : np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]  (read-only, cached)
    """
    fft_f = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_points(n_mels, sr, fmin, fmax)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


@lru_cache(maxsize=8)
def mel_pinv(sr: int = 22050, n_fft: int = 1024, n_mels: int = 128, fmin: float = 0.0,
             fmax: float | None = None) -> np.ndarray:
    """Moore-Penrose pseudo-inverse of :func:`mel_basis` [shape=(1 + n_fft // 2, n_mels), dtype=float32]
    (computed in float64; read-only, cached): mel power -> the least-norm linear power spectrum."""
    P = np.linalg.pinv(mel_basis(sr, n_fft, n_mels, fmin, fmax).astype(np.float64)).astype(np.float32)
    P.flags.writeable = False
    return P


@lru_cache(maxsize=8)
def _mel_bands(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None,
               group: int = 8) -> tuple:
    """The mel basis cut into bands of ``group`` filters, each with only the FFT bins where it is non-zero:
    ``(first mel, end mel, first bin, end bin, weights [shape=(end bin - first bin, end mel - first mel)])``.

    A triangular filter covers a few bins (1008 of the 128 x 513 weights are non-zero at the defaults), so
    multiplying by the bands is 4x faster than by the dense basis, with the same sums (only zeros are left out).
    """
    M = mel_basis(sr, n_fft, n_mels, fmin, fmax)
    bands = []
    for s in range(0, n_mels, group):
        e = min(s + group, n_mels)
        cols = np.flatnonzero(M[s:e].any(axis=0))
        if len(cols) == 0:                       # empty filters (too many mels for n_fft): all zero
            bands.append((s, e, 0, 0, None))
            continue
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        W = np.ascontiguousarray(M[s:e, lo:hi].T)
        W.flags.writeable = False
        bands.append((s, e, lo, hi, W))
    return tuple(bands)


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window('hann', n)``, ``torch.hann_window(n)``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def logmel(y: np.ndarray, sr: int = 22050, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 128,
           fmin: float = 0.0, fmax: float | None = None, amin: float = 1e-10, block: int = 256,
           _frames_first: bool = False) -> np.ndarray:
    """Log-compressed mel power spectrogram in dB (librosa's slaney mel basis and ``power_to_db(ref=1)``).

    Centred frames (zero padding of ``n_fft // 2`` at both ends), periodic Hann window, power spectrum, mel
    filters, ``10 log10(max(S, amin))``; float32 throughout (numpy, and scipy's FFT: no torch, so featurize's
    worker processes start in a fraction of a second), ``block`` frames at a time so a 30-minute song needs no
    more than a few MB beyond its samples.

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
    # scipy's FFT stays in float32 and transforms many frames at once with SIMD: 4-5x faster than np.fft's
    # float32 path (numpy 2.x) here; imported on first use, so importing audiovis.features stays cheap
    from scipy.fft import rfft
    bands = _mel_bands(sr, n_fft, n_mels, fmin, fmax)
    win = _hann(n_fft)
    yp = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2)
    t = 1 + len(y) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop_length][:t]   # (t, n_fft), a view
    out = np.empty((t, n_mels), np.float32)        # frames x mels in memory: song_logmel's storage layout
    for b in range(0, t, block):
        X = rfft(frames[b:b + block] * win, axis=1)                    # complex64 [shape=(rows, 1 + n_fft // 2)]
        v = X.view(np.float32)                                         # re, im, re, im, ...
        np.multiply(v, v, out=v)
        P = v[:, 0::2] + v[:, 1::2]                                    # |X|^2, float32
        o = out[b:b + block]
        for s, e, lo, hi, W in bands:
            if W is None:
                o[:, s:e] = 0.0
            else:
                np.matmul(P[:, lo:hi], W, out=o[:, s:e])
    np.maximum(out, amin, out=out)
    np.log(out, out=out)                # numpy's float32 log is vectorised, log10 is not: 4x faster
    out *= np.float32(10.0 / np.log(10.0))
    return out.T if _frames_first else np.ascontiguousarray(out.T)


def song_logmel(path: str | os.PathLike, cfg: FeatureConfig | None = None, on_warning=None) -> np.ndarray:
    """Decode a file and return its log-mel frames [shape=(t, n_mels), dtype=float16] (storage layout).

    ``on_warning``: see :func:`audiovis.audio.load` (a truncated file keeps the part that decodes).
    """
    cfg = cfg if cfg is not None else FeatureConfig()
    y = audio.load(path, sr=cfg.sr, max_duration=cfg.max_duration, on_warning=on_warning)
    S = logmel(y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin,
               fmax=cfg.fmax, _frames_first=True)   # a (mels, frames) view of (frames, mels) memory
    if S.shape[1] < cfg.window_frames:
        raise AudioError(f"'{path}': {len(y) / cfg.sr:.2f} s is shorter than one {cfg.window_s:g} s window")
    return S.T.astype(np.float16)


def worker_init() -> None:
    """Start-up of a process that featurizes songs (a pool worker, a Ray task): one BLAS thread (the other
    processes use the other cores), and the imports of decoding and log-mel done now (~0.3 s), not in the first
    song."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    import scipy.fft  # noqa: F401
    import soxr  # noqa: F401


def _warnings_path(out: str) -> str:
    """Messages of a song that was featurized with warnings, next to its cache file: ``cache/IDX.warn.txt``."""
    return out[:-len(".npy")] + ".warn.txt" if out.endswith(".npy") else out + ".warn.txt"


def featurize_serial(todo: list):
    """The default runner of :func:`featurize`: every song in this process, in order."""
    for item in todo:
        yield featurize_one(item)


def featurize_one(args):
    """Featurize one song into its cache file ``out``; returns ``(idx, error message or None)``.

    Warnings (a truncated file kept in part) go to ``cache/IDX.warn.txt``, written before the cache file, so
    they reach the report whichever runner ran this (see :mod:`audiovis.engines`) and survive a resumed run.
    """
    idx, path, out, cfg_dict = args
    cfg = FeatureConfig.from_dict(cfg_dict)
    notes: list[str] = []
    wpath = Path(_warnings_path(out))
    wpath.unlink(missing_ok=True)           # from an earlier run (of a file that may have been replaced since)
    try:
        F = song_logmel(path, cfg, on_warning=notes.append)
    except AudioError as e:
        return idx, str(e)
    except Exception as e:  # one bad song never loses the rest of the work
        return idx, f"'{path}': unexpected decoding error: {type(e).__name__}: {e}"
    if notes:
        with atomic_path(wpath, suffix=".txt") as tmp:
            tmp.write_text("\n".join(notes) + "\n", encoding="utf-8")
    with atomic_path(out, suffix=".npy") as tmp:
        np.save(tmp, F)
    return idx, None


def _retire(cache: Path) -> threading.Thread | None:
    """Move an outdated cache folder out of the way (one rename) and delete it in a background thread.

    Deleting one file can take milliseconds (3.5 ms per cached song on an ext4 volume mounted with online
    discard, as cloud disks often are): 0.35 s per 100 songs that used to hold up ``featurize --force``. The
    folder is renamed ``.cache.XXXXXXXX.trash``: if this process is killed first,
    :func:`audiovis.workspace.clean_stale_temps` removes it later.
    """
    if not cache.exists():
        cache.mkdir(parents=True, exist_ok=True)
        return None
    trash = tempfile.mkdtemp(prefix=f".{cache.name}.", suffix=".trash", dir=cache.parent)
    os.rmdir(trash)
    os.rename(cache, trash)
    cache.mkdir()
    t = threading.Thread(target=shutil.rmtree, args=(trash,), kwargs={"ignore_errors": True},
                         name="featurize-trash", daemon=True)
    t.start()
    return t


def featurize(workspace: str | os.PathLike | Workspace, cfg: FeatureConfig | None = None, force: bool = False,
              progress: bool = True, runner=None) -> dict:
    """Compute log-mel features of every song into ``features/`` (resumable: finished songs are kept).

    Writes ``logmel.npy`` [shape=(total_frames, n_mels), float16], ``offsets.npy`` [shape=(n_songs + 1,)] (song
    ``i`` is frames ``offsets[i]:offsets[i+1]``), and ``windows.npy`` [shape=(n_windows, 2)] (song index, first
    frame) for consecutive non-overlapping windows of ``cfg.window_s``.

    Problems go to the workspace report (stage ``featurize``): a song that cannot be used is skipped with the
    reason; a truncated file that decodes in part is kept, with a warning saying how much decoded.

    ``runner``: who computes the songs, a callable taking the list of :func:`featurize_one` items (longest song
    first) and yielding ``(idx, error or None)`` as songs finish; by default this process, one song after the
    other. The engines pass theirs (:func:`audiovis.engines.featurize`: the local engine's process pool, Ray
    tasks); this function does the rest (what to compute, the report, the consolidation).
    """
    from tqdm.auto import tqdm
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("ingest")
    cfg = cfg or FeatureConfig()
    done = None if force else ws.finished("featurize", OUTPUTS, say=progress, config=cfg.to_dict())
    if done:
        return done["summary"]
    cache = ws.features_dir / "cache"
    stale = ws.get_meta("featurize:config") != cfg.to_dict() or force   # cached songs: other settings
    trash_thread = _retire(cache) if stale else None
    if not stale:
        cache.mkdir(parents=True, exist_ok=True)
    songs = ws.songs()
    todo = [(s["idx"], s["path"], str(cache / f"{s['idx']}.npy"), cfg.to_dict())
            for s in songs if stale or not (cache / f"{s['idx']}.npy").exists()]
    # longest first: the pool ends on short songs, so no core waits long for the last one
    todo.sort(key=lambda item: -(songs[item[0]]["duration"] or 0.0))
    with ws.db:
        ws.db.execute("DELETE FROM report WHERE stage='featurize'")
        ws.db.execute("UPDATE songs SET status='ok', reason=NULL WHERE status='failed'")
        if stale:
            ws.set_meta("featurize:config", cfg.to_dict())     # one commit for the three
    failed: dict[int, str] = {}
    bar = tqdm(total=len(songs), initial=len(songs) - len(todo), desc="featurize", unit="song",
               disable=not progress)
    results = (runner or featurize_serial)(todo)
    try:
        for idx, err in results:
            if err:
                failed[idx] = err
            bar.update()
    finally:                                     # a runner's workers stop now, even on Ctrl-C
        getattr(results, "close", lambda: None)()
        bar.close()
    # songs that failed in an earlier, interrupted run have no cache file: they are in todo and failed again
    summary, lengths = _consolidate(ws, songs, cfg)
    notes = _song_warnings(cache, lengths)
    summary["failed"] = len(failed)
    summary["warnings"] = sum(len(m) for _, m in notes)
    with ws.db:                                  # one commit: the report, the songs' status, the done marker
        for idx, err in sorted(failed.items()):
            ws.db.execute("UPDATE songs SET status='failed', reason=? WHERE idx=?", (err, idx))
            ws.db.execute("INSERT INTO report(stage, item, reason) VALUES ('featurize', ?, ?)",
                          (songs[idx]["song_id"], err))
        for idx, msgs in notes:                  # kept songs: a warning row each, status stays 'ok'
            ws.db.executemany("INSERT INTO report(stage, item, reason) VALUES ('featurize', ?, ?)",
                              [(songs[idx]["song_id"], m) for m in msgs])
        ws.mark_done("featurize", {"config": cfg.to_dict(), "summary": summary}, outputs=OUTPUTS)
    if trash_thread is not None:
        trash_thread.join()
    return summary


def _song_warnings(cache: Path, lengths: np.ndarray) -> list[tuple[int, list[str]]]:
    """(song index, messages) of the featurized songs that have a ``IDX.warn.txt`` next to their cache file."""
    out = []
    with os.scandir(cache) as it:
        for e in it:
            stem = e.name[:-len(".warn.txt")]
            if e.name.endswith(".warn.txt") and stem.isdigit() and int(stem) < len(lengths) and lengths[int(stem)]:
                msgs = [m for m in Path(e.path).read_text(encoding="utf-8").splitlines() if m.strip()]
                out.append((int(stem), msgs))
    return sorted(out)


_NPY_HEADER = 128        # bytes: magic, version, header length, the header dict padded with spaces


def _npy_header(shape: tuple, dtype) -> bytes:
    """A version 1.0 ``.npy`` header of exactly ``_NPY_HEADER`` bytes (a multiple of 64, as numpy writes)."""
    descr, shape = np.lib.format.dtype_to_descr(np.dtype(dtype)), tuple(int(x) for x in shape)
    d = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    n = _NPY_HEADER - 10
    if len(d) >= n:  # pragma: no cover (shapes up to 19-digit frame counts fit)
        raise ValueError(f"shape {shape} does not fit a {_NPY_HEADER}-byte header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", n) + (d.ljust(n - 1) + "\n").encode("latin1")


def _read_cached(path: Path, n_mels: int) -> bytes | None:
    """The raw float16 frames of a per-song cache file [shape=(t, n_mels)], or None if there is none."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            data = f.read()
    except FileNotFoundError:                   # a song that failed
        return None
    if dtype != np.float16 or fortran or len(shape) != 2 or shape[1] != n_mels or len(data) != shape[0] * n_mels * 2:
        raise WorkspaceError(f"cached features '{path}' are not ({n_mels} mels, float16) frames: delete the file "
                             f"and run featurize again")
    return data


def _consolidate(ws: Workspace, songs: list[dict], cfg: FeatureConfig) -> tuple[dict, np.ndarray]:
    """Copy the per-song cache files, in song order, into one ``logmel.npy``: plain sequential writes behind a
    header written last (the total length is known only at the end); no memory map, no ``msync``."""
    cache = ws.features_dir / "cache"
    lengths = np.zeros(len(songs), dtype=np.int64)
    with atomic_path(ws.features_dir / "logmel.npy", suffix=".npy") as tmp, open(tmp, "wb") as f:
        f.write(b" " * _NPY_HEADER)
        for s in songs:
            data = _read_cached(cache / f"{s['idx']}.npy", cfg.n_mels)
            if data:
                f.write(data)
                lengths[s["idx"]] = len(data) // (2 * cfg.n_mels)
        f.seek(0)
        f.write(_npy_header((int(lengths.sum()), cfg.n_mels), np.float16))
    offsets = np.zeros(len(songs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    W = cfg.window_frames
    per_song = lengths // W                                    # consecutive non-overlapping windows per song
    song_of = np.repeat(np.arange(len(songs), dtype=np.int64), per_song)
    first = np.cumsum(per_song) - per_song
    windows_arr = np.stack([song_of, (np.arange(len(song_of)) - np.repeat(first, per_song)) * W], 1)
    save_npy(ws.features_dir / "offsets.npy", offsets)
    save_npy(ws.features_dir / "windows.npy", windows_arr.astype(np.int64).reshape(-1, 2))
    save_json(ws.features_dir / "config.json", cfg.to_dict())
    summary = {"songs": int((lengths > 0).sum()), "frames": int(offsets[-1]), "windows": len(windows_arr),
               "hours": float(offsets[-1] * cfg.hop_length / cfg.sr / 3600)}
    return summary, lengths


class FeatureStore:
    """Read-only, memory-mapped access to a workspace's features.

    Attributes
    ----------
    logmel : np.memmap [shape=(total_frames, n_mels), float16]
    offsets : np.ndarray [shape=(n_songs + 1,)]
    windows : np.ndarray [shape=(n_windows, 2)]  (song index, first frame)
    """

    def __init__(self, ws: str | os.PathLike | Workspace):
        ws = ws if isinstance(ws, Workspace) else Workspace(ws)
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

    def has_windows(self) -> np.ndarray:
        """Which songs have at least one window [shape=(n_songs,), bool]: the songs a model can predict."""
        return np.bincount(self.windows[:, 0], minlength=self.n_songs) > 0

    def song_windows(self, idx: int) -> np.ndarray:
        """Indices of a song's windows (into ``windows``)."""
        lo, hi = np.searchsorted(self.windows[:, 0], [idx, idx + 1])
        return np.arange(lo, hi)


# --------------------------------------------------------------------------- one file (cold start, the Ray embed)
def song_frames(path: str | os.PathLike, fcfg: FeatureConfig, name: str | None = None,
                max_duration: float | None = None, on_warning=None) -> np.ndarray:
    """Decode and featurize one file exactly as the catalogue was [shape=(t, n_mels), float16].

    ``name`` is quoted in messages instead of ``path`` (an upload's own file name); ``on_warning(message)``
    receives what was kept in part (a truncated file). Any decoder failure is an ``AudioError`` naming the file.
    """
    from .errors import AudiovisError
    path = Path(path)

    def named(msg: str) -> str:
        return msg.replace(str(path), name) if name else msg

    cfg = FeatureConfig.from_dict({**fcfg.to_dict(), "max_duration": max_duration or fcfg.max_duration})
    note = None if on_warning is None else (lambda m: on_warning(named(m)))
    try:
        return song_logmel(path, cfg, on_warning=note)
    except AudioError as e:
        raise AudioError(named(str(e))) from None
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
