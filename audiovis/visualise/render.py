"""The optimisation loop (activation maximisation / backward queries) and log-mel -> audio -> file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..activations import Recorder
from ..config import Config
from ..deps import torchaudio
from ..errors import ParameterError
from ..features import mel_pinv
from .param import BoundedLogmel, data_range
from .transforms import jitter, total_variation


@dataclass
class RenderConfig(Config):
    """Settings of the optimisation (defaults dream one unit of the small model in a few seconds on 2 cores).

    Olah et al. use Adam, lr 0.05, thousands of steps; a 129-frame log-mel and a small CNN need far fewer.
    ``tv`` weighs the total variation of the normalised image (range 0..1) against the objective.
    """

    steps: int = 256
    lr: float = 0.05
    batch: int = 2              # jittered copies per step (transformation robustness)
    jitter_time: int = 8        # frames (8 frames = 0.19 s)
    jitter_freq: int = 1        # mel bins
    tv: float = 10.0            # total-variation weight (higher: smoother, fewer speckles)
    db_k: float = 2.5           # dB range per bin: data mean +- db_k * data std
    frames: int = 0             # 0: the model's window length
    noise: float = 0.5
    seed: int = 0


@dataclass
class RenderResult:
    logmel: np.ndarray               # [shape=(n_mels, frames)] dB
    value: float                     # final objective value (no jitter)
    measure: float                   # activation as the unit index measures it (max over time for conv units)
    start_measure: float             # the same at the start
    history: list = field(default_factory=list)   # objective value every 16 steps


def optimise(model, objective, cfg: RenderConfig | None = None, init: np.ndarray | None = None,
             progress=None) -> RenderResult:
    """Gradient ascent on a bounded log-mel to maximise ``objective`` (with jitter and a TV penalty).

    Parameters
    ----------
    model : AudioCNN in eval mode (its parameters are not changed)
    objective : Objective or TargetObjective
    init : np.ndarray [shape=(n_mels, frames)], optional
        Start from a real clip (deep dream) instead of noise.
    progress : callable(step, steps), optional

    Returns
    -------
    RenderResult with ``logmel`` [shape=(n_mels, frames)] in dB.
    """
    cfg = cfg or RenderConfig()
    if cfg.steps < 0 or cfg.lr <= 0 or cfg.batch < 1:
        raise ParameterError(f"bad render settings: steps={cfg.steps}, lr={cfg.lr}, batch={cfg.batch}")
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():          # gradients flow to the input only; restored at the end
        p.requires_grad_(False)
    try:
        return _optimise(model, objective, cfg, init, progress)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


def _optimise(model, objective, cfg, init, progress) -> RenderResult:
    frames = init.shape[1] if init is not None else (cfg.frames or model.cfg.n_frames)
    lo, hi = data_range(model, cfg.db_k)
    if init is not None:   # keep a real clip inside the range it already occupies
        x0 = torch.as_tensor(np.asarray(init, dtype=np.float32))
        lo = torch.minimum(lo, x0.amin(1, keepdim=True) - 1.0)
        hi = torch.maximum(hi, x0.amax(1, keepdim=True) + 1.0)
    param = BoundedLogmel(lo, hi, frames, init=init, noise=cfg.noise, seed=cfg.seed)
    opt = torch.optim.Adam(param.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    rec = Recorder(model, objective.layers)
    span = (hi - lo)

    def evaluate(x):
        acts, out = rec.record(x[None], grad=False)
        return float(objective(acts, out)[0]), float(objective.measure(acts, out)[0])

    with torch.no_grad():
        _, start_measure = evaluate(param())
    history = []
    with torch.enable_grad():   # callers (and build_index) may have switched gradients off globally
        _loop(param, opt, gen, rec, objective, cfg, span, history, progress, model)
    with torch.no_grad():
        x = param()
        value, measure = evaluate(x)
    return RenderResult(logmel=x.detach().numpy().astype(np.float32), value=value, measure=measure,
                        start_measure=start_measure, history=history)


def _pre_activation_module(model, objective):
    """The module whose output is a unit's pre-ReLU value (conv: batch norm; dense: linear), or None.

    Ascent on the pre-activation gives a gradient even where the unit is silent (ReLU at 0), so a unit that is
    off for the starting noise can still be dreamed; where it is on, both ascents agree."""
    if getattr(objective, "index", None) is None:
        return None
    block = getattr(model, objective.layer, None)
    return getattr(block, "bn", None) or getattr(block, "linear", None)


def _loop(param, opt, gen, rec, objective, cfg, span, history, progress, model=None):
    pre_mod = _pre_activation_module(model, objective) if model is not None else None
    pre = {}
    handle = pre_mod.register_forward_hook(lambda m, i, o: pre.__setitem__(objective.layer, o)) if pre_mod else None
    try:
        _steps(param, opt, gen, rec, objective, cfg, span, history, progress, pre if pre_mod else None)
    finally:
        if handle is not None:
            handle.remove()


def _steps(param, opt, gen, rec, objective, cfg, span, history, progress, pre):
    for step in range(cfg.steps):
        x = param()
        xb = jitter(x, cfg.jitter_time, cfg.jitter_freq, gen, cfg.batch)
        acts, out = rec.record(xb, grad=True)
        value = objective(pre if pre is not None else acts, out).mean()
        loss = -value + cfg.tv * total_variation(x / span)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 16 == 0:
            history.append(float(value.detach()))
        if progress is not None:
            progress(step + 1, cfg.steps)


# ----------------------------------------------------------------------------------------------- to audio
def mel_to_power(S_db: np.ndarray, sr: int = 22050, n_fft: int = 1024, fmin: float = 0.0,
                 fmax: float | None = None) -> np.ndarray:
    """Log-mel (dB) [shape=(n_mels, t)] -> linear power spectrum [shape=(1 + n_fft // 2, t)]: dB -> mel power ->
    pseudo-inverse of the front end's filterbank (:func:`audiovis.features.mel_pinv`), clipped at 0 (as
    torchaudio's InverseMelScale)."""
    S_db = np.asarray(S_db, dtype=np.float32)
    if S_db.ndim != 2:
        raise ParameterError(f"log-mel must have shape (n_mels, t), got {S_db.shape}")
    pinv = mel_pinv(sr, n_fft, S_db.shape[0], fmin, fmax)
    return np.maximum(pinv @ (10.0 ** (S_db / 10.0)), 0.0).astype(np.float32)


def mel_to_audio(S_db: np.ndarray, sr: int = 22050, n_fft: int = 1024, hop_length: int = 512, n_iter: int = 32,
                 fmin: float = 0.0, fmax: float | None = None, seed: int = 0) -> np.ndarray:
    """Invert a log-mel (dB) to audio: linear power by :func:`mel_to_power` -> magnitude -> Griffin-Lim phase
    (torchaudio's, the one thing torchaudio does here).

    Parameters
    ----------
    S_db : np.ndarray [shape=(n_mels, t)]

    Returns
    -------
    y : np.ndarray [shape=(hop_length * (t - 1),), float32], peak at most 0.99
    """
    ta = torchaudio()                     # first: a broken torch/torchaudio pair fails before any work
    lin = mel_to_power(S_db, sr, n_fft, fmin, fmax)                        # (n_freq, t)
    torch.manual_seed(seed)
    gl = ta.transforms.GriffinLim(n_fft=n_fft, hop_length=hop_length, power=1.0, n_iter=n_iter, rand_init=False)
    y = gl(torch.from_numpy(np.sqrt(lin))).numpy().astype(np.float32)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0.99:
        y *= 0.99 / peak
    return y


def save_audio(path: str | os.PathLike, y: np.ndarray, sr: int) -> None:
    """Write audio atomically with :func:`audiovis.clips.encode`; the format follows the extension (.wav, .flac,
    .ogg)."""
    from pathlib import Path

    from ..clips import encode
    from ..workspace import atomic_path
    path = Path(path)
    ext = path.suffix.lower()
    fmt = {".wav": "wav", ".flac": "flac", ".ogg": "ogg"}.get(ext)
    if fmt is None:
        raise ParameterError(f"audio output '{path}': extension {ext!r} is not .wav, .flac or .ogg")
    with atomic_path(path, suffix=ext) as tmp:
        encode(y, sr, fmt, out=tmp)
