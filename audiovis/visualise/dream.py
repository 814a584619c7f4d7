"""Dreamed audio: activation maximisation for one unit, a layer or an output factor, cached on disk.

Cache: ``WS/visualise/dreams/<unit>-<settings-hash>.npz`` (log-mel, audio, numbers) and ``.ogg`` next to it
(the unit's ``:`` becomes ``_`` in file names, e.g. ``conv2_17-3fa2c1d0e4.npz``); both written atomically. The
hash covers the render settings, the starting clip and the trained model, so retraining invalidates it.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..workspace import Workspace, save_npz
from .objectives import parse_objective
from .render import RenderConfig, mel_to_audio, optimise, save_audio


@dataclass
class Dream:
    objective: str
    logmel: np.ndarray          # [shape=(n_mels, frames)] dB
    audio: np.ndarray           # [shape=(n,)] float32
    sr: int
    activation: float           # as the unit index measures it (max over time for conv units)
    start_activation: float     # at the start (noise, or the real clip for a deep dream)
    best_real: float | None     # the unit's best real clip: UnitIndex.top(unit)[0]['activation']
    ratio: float | None         # activation / best_real
    from_clip: str | None
    seconds: float              # optimisation + rendering time (0 when read from the cache)
    cached: bool
    npz_path: Path
    audio_path: Path


def parse_clip(spec: str) -> tuple[str, float]:
    """``"S0001:12.5"`` -> ("S0001", 12.5)."""
    try:
        sid, start = str(spec).rsplit(":", 1)
        return sid.strip(), float(start)
    except ValueError:
        raise ParameterError(f"clip {spec!r} is not of the form SONG_ID:START_S, e.g. 'S0001:6.0'") from None


def clip_logmel(ws: Workspace, song_id: str, start_s: float, frames: int | None = None) -> np.ndarray:
    """A window of a song's stored log-mel [shape=(n_mels, frames)] starting at ``start_s`` (clamped to the song)."""
    from ..features import FeatureStore
    store = FeatureStore(ws)
    idx = ws.song_index(song_id)
    n = store.n_frames(idx)
    frames = frames or store.cfg.window_frames
    if n < frames:
        raise ParameterError(f"song {song_id!r} has no usable features (failed or too short)")
    if start_s < 0:
        raise ParameterError(f"start {start_s!r} s is negative")
    st = int(round(start_s * store.cfg.sr / store.cfg.hop_length))
    st = min(st, n - frames)
    return np.asarray(store.song(idx)[st:st + frames], dtype=np.float32).T


def settings_hash(ws: Workspace, objective: str, cfg: RenderConfig, from_clip: str | None) -> str:
    key = json.dumps({"objective": objective, "cfg": cfg.to_dict(), "clip": from_clip,
                      "model": ws.get_meta("done:train")}, sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def dream_dir(ws: Workspace) -> Path:
    return ws.path / "visualise" / "dreams"


def _best_real(ws: Workspace, objective) -> float | None:
    if objective.index is None:
        return None
    from ..index import UnitIndex
    if ws.get_meta("done:index") is None:
        return None
    top = UnitIndex(ws).top(objective.name, n=1)
    return top[0]["activation"] if top else None


def dream(workspace, objective: str, from_clip: str | None = None, cfg: RenderConfig | None = None,
          model=None, force: bool = False, progress=None, save: bool = True) -> Dream:
    """Dream the input a unit (``"conv2:17"``), a layer (``"conv2"``) or a factor (``"output:3"``) wants most.

    Parameters
    ----------
    workspace : path or Workspace with a trained model
    from_clip : "SONG_ID:START_S", optional   start from that real 3 s clip ("deep dream") instead of noise
    cfg : RenderConfig
    force : recompute even if cached
    save : write the dream into the workspace's cache (False: a read-only page reads the cache, writes nothing)

    Returns
    -------
    Dream, with the audio also written to ``dream.audio_path`` (OGG).
    """
    from ..train import load_model
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("train")
    cfg = cfg or RenderConfig()
    if model is None:
        model, _ = load_model(ws)
    obj = parse_objective(objective, model)
    init = None
    if from_clip:
        sid, start = parse_clip(from_clip)
        init = clip_logmel(ws, sid, start)
    h = settings_hash(ws, obj.name, cfg, from_clip)
    stem = f"{obj.name.replace(':', '_')}-{h}"
    npz, ogg = dream_dir(ws) / f"{stem}.npz", dream_dir(ws) / f"{stem}.ogg"
    from ..features import FeatureStore
    fcfg = FeatureStore(ws).cfg
    best = _best_real(ws, obj)
    if npz.exists() and ogg.exists() and not force:
        with np.load(npz, allow_pickle=False) as z:
            act = float(z["activation"])
            return Dream(obj.name, z["logmel"], z["audio"], int(z["sr"]), act, float(z["start_activation"]),
                         best, act / best if best and best > 0 else None, from_clip, 0.0, True, npz, ogg)
    t0 = time.perf_counter()
    r = optimise(model, obj, cfg, init=init, progress=progress)
    y = mel_to_audio(r.logmel, fcfg.sr, fcfg.n_fft, fcfg.hop_length, fmin=fcfg.fmin, fmax=fcfg.fmax)
    seconds = time.perf_counter() - t0
    if save:
        save_npz(npz, logmel=r.logmel, audio=y, sr=np.array(fcfg.sr), activation=np.array(r.measure),
                 start_activation=np.array(r.start_measure), history=np.array(r.history, np.float32),
                 settings=np.array(json.dumps({"objective": obj.name, "cfg": cfg.to_dict(), "clip": from_clip})))
        save_audio(ogg, y, fcfg.sr)
    return Dream(obj.name, r.logmel, y, fcfg.sr, r.measure, r.start_measure, best,
                 r.measure / best if best and best > 0 else None, from_clip, seconds, False, npz, ogg)
