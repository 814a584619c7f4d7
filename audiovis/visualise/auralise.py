"""Auralisation (after Choi, Fazekas & Sandler 2016): hear only what a unit hears inside a real clip.

1. relevance of every time-frequency cell of the clip's log-mel for the unit: gradient x input
   (``(x - floor) * d unit / dx``, ``floor`` the clip's quietest cell, i.e. the contribution of each cell's energy
   above silence), positive part, normalised to [0, 1];
2. mel -> linear frequency: the transpose of the front end's mel filterbank (:func:`audiovis.features.mel_basis`),
   each STFT bin taking the filter-weighted mean of the relevance of the mel bands that cover it;
3. mask the clip's complex STFT (n_fft 1024, hop 512, the front end's frames) and invert with the original phase.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..activations import Recorder
from ..errors import ParameterError
from ..features import mel_basis
from .objectives import Objective, parse_objective


@dataclass
class Auralisation:
    objective: str
    sr: int
    original: np.ndarray          # [shape=(n,)]
    auralised: np.ndarray         # [shape=(n,)]
    logmel: np.ndarray            # [shape=(n_mels, t)] the clip, dB
    relevance: np.ndarray         # [shape=(n_mels, t)] in [0, 1]
    mask: np.ndarray              # [shape=(1 + n_fft // 2, t)] in [0, 1]
    activation: float             # the unit on the clip (max over time for conv units)


def relevance(model, S_db: np.ndarray, objective: Objective, method: str = "gxi") -> tuple[np.ndarray, float]:
    """Relevance of each log-mel cell for the objective [shape=(n_mels, t)], in [0, 1], and the activation.

    ``method``: ``"gxi"`` gradient x (input - floor), or ``"grad"`` the positive gradient alone.
    """
    if method not in ("gxi", "grad"):
        raise ParameterError(f"relevance method {method!r} is not 'gxi' or 'grad'")
    model.eval()
    with torch.enable_grad():
        return _relevance(model, S_db, objective, method)


def _relevance(model, S_db, objective, method):
    x = torch.tensor(np.asarray(S_db, dtype=np.float32)[None], requires_grad=True)
    acts, out = Recorder(model, objective.layers).record(x, grad=True)
    a = acts[objective.layer]
    a = a if objective.index is None else a[:, objective.index]
    value = a.sum()                                   # every time step of a conv map counts
    act = float(objective.measure(acts, out)[0].detach())
    if not value.requires_grad or float(value.detach()) == 0.0:
        return np.zeros(S_db.shape, np.float32), act
    (g,) = torch.autograd.grad(value, x)
    g = g[0]
    r = g * (x[0] - x[0].min()) if method == "gxi" else g
    r = torch.clamp(r.detach(), min=0).numpy()
    m = float(r.max())
    return (r / m if m > 0 else r).astype(np.float32), act


def mel_to_linear_mask(R: np.ndarray, sr: int = 22050, n_fft: int = 1024, fmin: float = 0.0,
                       fmax: float | None = None) -> np.ndarray:
    """Mel-domain relevance [shape=(n_mels, t)] -> linear-frequency mask [shape=(1 + n_fft // 2, t)] in [0, 1]."""
    fb = mel_basis(sr, n_fft, R.shape[0], fmin, fmax)                    # (n_mels, n_freq): the front end's
    cover = fb.sum(0)                                                    # (n_freq,)
    M = fb.T @ R / np.where(cover > 0, cover, 1.0)[:, None]
    return np.clip(M, 0.0, 1.0).astype(np.float32)


def auralise_audio(model, y: np.ndarray, objective: str | Objective, sr: int = 22050, n_fft: int = 1024,
                   hop_length: int = 512, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                   method: str = "gxi", gamma: float = 1.0) -> Auralisation:
    """Auralise a clip ``y`` [shape=(n,)] for a unit: the clip filtered by the unit's relevance mask.

    ``gamma`` > 1 sharpens the mask (mask ** gamma).
    """
    from ..features import logmel
    obj = objective if isinstance(objective, Objective) else parse_objective(objective, model)
    y = np.asarray(y, dtype=np.float32)
    S_db = logmel(y, sr, n_fft, hop_length, n_mels, fmin, fmax)
    R, act = relevance(model, S_db, obj, method)
    mask = mel_to_linear_mask(R, sr, n_fft, fmin, fmax) ** gamma
    win = torch.hann_window(n_fft)
    yt = torch.from_numpy(y)
    X = torch.stft(yt, n_fft, hop_length, window=win, center=True, pad_mode="constant", return_complex=True)
    if X.shape[-1] != mask.shape[1]:
        raise ParameterError(f"STFT has {X.shape[-1]} frames but the log-mel has {mask.shape[1]}")
    out = torch.istft(X * torch.from_numpy(mask), n_fft, hop_length, window=win, center=True, length=len(y))
    return Auralisation(obj.name, sr, y, out.numpy().astype(np.float32), S_db, R, mask, act)


def auralise(workspace, objective: str, song_id: str, start_s: float, model=None, method: str = "gxi",
             gamma: float = 1.0) -> Auralisation:
    """Auralise a workspace song's 3 s clip starting at ``start_s`` for a unit."""
    from .. import audio
    from ..features import FeatureStore
    from ..train import load_model
    from ..workspace import Workspace
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("train")
    if model is None:
        model, _ = load_model(ws)
    obj = parse_objective(objective, model)
    cfg = FeatureStore(ws).cfg
    idx = ws.song_index(song_id)
    song = ws.songs()[idx]
    if start_s < 0 or (song["duration"] and start_s >= song["duration"]):
        raise ParameterError(f"start {start_s!r} s is outside song {song_id!r} "
                             f"(0..{song['duration'] or 0:.1f} s)")
    y = audio.load(ws.resolve_audio(song["path"]), sr=cfg.sr, offset=start_s, duration=cfg.window_s)
    return auralise_audio(model, y, obj, cfg.sr, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax,
                          method, gamma)
