"""Backward queries: the input log-mel the network maps to a chosen output.

Targets: a listener's taste vector x_u (``user_factors`` of the train-only WMF fit, the space the CNN was
trained in): "what would listener U00042's ideal song sound like?"; one latent factor (the unit vector e_k); or a
song's WMF factors. The optimiser maximises ``cos(f(x), target)`` (default for listeners and factors: the
direction is what a recommendation ranks by) or minimises ``||f(x) - target||^2`` (default for songs), with the
same jitter, total-variation and dB-range regularisers as dreams.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError
from ..workspace import Workspace
from .objectives import TargetObjective
from .render import RenderConfig, mel_to_audio, optimise, save_audio


@dataclass
class BackwardResult:
    target_name: str
    target: np.ndarray
    loss: str
    logmel: np.ndarray             # [shape=(n_mels, frames)] dB
    audio: np.ndarray
    sr: int
    start_distance: float          # ||f(x) - target|| at the start (noise)
    distance: float                # ... at the end
    start_cosine: float
    cosine: float
    output: np.ndarray             # f(x) at the end
    best_real: dict | None         # listeners: the real song ranked first (predicted factors) and its score
    score: float | None            # listeners: x_u . f(x)
    seconds: float
    audio_path: Path | None = None


def resolve_target(ws: Workspace, user: str | None = None, factor: int | None = None, song: str | None = None,
                   n_factors: int | None = None) -> tuple[str, np.ndarray, str]:
    """(name, target vector [shape=(n_factors,)], default loss) for exactly one of user / factor / song."""
    from ..factors import load_factors
    given = [v is not None for v in (user, factor, song)]
    if sum(given) != 1:
        raise ParameterError("give exactly one target: a listener (--user), a factor (--factor) or a song (--song)")
    if factor is not None:
        n = n_factors if n_factors is not None else load_factors(ws)["song_factors"].shape[1]
        try:
            k = int(factor)
        except (TypeError, ValueError):
            raise ParameterError(f"factor {factor!r} is not an integer") from None
        if not 0 <= k < n:
            raise ParameterError(f"factor {factor!r} is out of range: the model has factors 0..{n - 1}")
        t = np.zeros(n, np.float32)
        t[k] = 1.0
        return f"factor {k}", t, "cosine"
    fac = load_factors(ws)
    if user is not None:
        ids = ws.user_ids()
        try:
            i = ids.index(str(user).strip())
        except ValueError:
            ex = f"{ids[0]} .. {ids[-1]}" if ids else "none"
            raise ParameterError(f"unknown listener {user!r}: this workspace has {len(ids)} listeners ({ex})") \
                from None
        return f"listener {ids[i]}", fac["user_factors"][i].astype(np.float32), "cosine"
    try:
        i = ws.song_index(str(song).strip())
    except Exception:
        raise ParameterError(f"unknown song {song!r}: not in this workspace") from None
    t = fac["song_factors"][i].astype(np.float32)
    if not np.any(t):
        raise ParameterError(f"song {song!r} has no factors in the fit the model learned from (a held-out or "
                             f"unplayed song); pick a training song")
    return f"song {song}", t, "mse"


def backward_query(workspace, user: str | None = None, factor: int | None = None, song: str | None = None,
                   loss: str | None = None, cfg: RenderConfig | None = None, model=None, out: str | None = None,
                   progress=None) -> BackwardResult:
    """Optimise a log-mel so the network's output matches the target; render it to audio (written to ``out``)."""
    from ..features import FeatureStore
    from ..train import load_model
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("train")
    if model is None:
        model, _ = load_model(ws)
    name, target, default_loss = resolve_target(ws, user, factor, song, model.cfg.n_factors)
    if len(target) != model.cfg.n_factors:
        raise ParameterError(f"target has {len(target)} factors but the model predicts {model.cfg.n_factors}")
    res = backward_model(model, target, loss or default_loss, cfg)
    fcfg = FeatureStore(ws).cfg
    t0 = time.perf_counter()
    y = mel_to_audio(res["logmel"], fcfg.sr, fcfg.n_fft, fcfg.hop_length, fmin=fcfg.fmin, fmax=fcfg.fmax)
    best, score = None, None
    if user is not None and ws.get_meta("done:index") is not None:
        from ..index import UnitIndex
        ix = UnitIndex(ws)
        s = np.nan_to_num(ix.song_factors @ target, nan=-np.inf)
        j = int(np.argmax(s))
        best = {"song_id": ix.song_ids[j], "score": float(s[j])}
        score = float(res["output"] @ target)
    path = None
    if out:
        path = Path(out)
        save_audio(path, y, fcfg.sr)
    return BackwardResult(name, target, res["loss"], res["logmel"], y, fcfg.sr, res["start_distance"],
                          res["distance"], res["start_cosine"], res["cosine"], res["output"], best, score,
                          res["seconds"] + time.perf_counter() - t0, path)


def backward_model(model, target: np.ndarray, loss: str = "cosine", cfg: RenderConfig | None = None) -> dict:
    """The optimisation alone (no workspace): returns logmel, output, distances and cosines before/after."""
    t0 = time.perf_counter()
    t = torch.as_tensor(np.asarray(target, dtype=np.float32))
    obj = TargetObjective(t, loss)
    r = optimise(model, obj, cfg or RenderConfig())
    from .param import BoundedLogmel, data_range  # noqa: F401  (same start as optimise: recompute its output)
    cfg = cfg or RenderConfig()
    with torch.no_grad():
        lo, hi = data_range(model, cfg.db_k)
        x0 = BoundedLogmel(lo, hi, cfg.frames or model.cfg.n_frames, noise=cfg.noise, seed=cfg.seed)()
        f0 = model(x0[None])[0]
        f1 = model(torch.from_numpy(r.logmel)[None])[0]
    cos = torch.nn.functional.cosine_similarity
    return {"logmel": r.logmel, "loss": loss, "output": f1.numpy(),
            "start_distance": float((f0 - t).norm()), "distance": float((f1 - t).norm()),
            "start_cosine": float(cos(f0, t, dim=0)), "cosine": float(cos(f1, t, dim=0)),
            "seconds": time.perf_counter() - t0}
