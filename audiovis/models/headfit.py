"""Training the head of a network on a frozen pretrained front end, from the front end's cached outputs.

The frozen layers' pooled features are computed once per window (:func:`audiovis.models.frozen.cached_windows`),
so an epoch costs a pass of the small head over cached rows instead of the whole network over the audio: the
head learns per window (MSE on standardised factors, AdamW, input dropout), the epoch is picked on the
validation songs (:data:`TrainConfig.early_stop`'s choices), and ``song_readout`` then refits the output layer on
whole songs as for the CNN trained from scratch (:func:`audiovis.readout.refit_output`).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..metrics import cold_start_metrics
from ..readout import refit_output
from .frozen import mean_per_song

INPUT_DROPOUT = 0.2          # dropout on the standardised head input (not tuned: experiments/head_variants.py's)


def fit_head(model, pooled: np.ndarray, store, Y: np.ndarray, tr: np.ndarray, va: np.ndarray, cfg: TrainConfig,
             va_played=None, user_factors=None, progress: bool = True) -> dict:
    """Fit ``model``'s head (``dense*`` and ``output``) in place on cached pooled features.

    Parameters
    ----------
    model : MusicnnRegressor (frozen front end)
    pooled : np.ndarray [shape=(n_windows, 1506)]   one row per window of ``store`` (the window statistics are
        computed here from the store: cheap)
    Y : np.ndarray [shape=(n_songs, n_factors)];  tr, va : song indices

    Returns
    -------
    dict: history (per epoch), best_epoch, windows_per_s, readout_lambda
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    song = store.windows[:, 0]
    wtr = np.flatnonzero(np.isin(song, tr))
    P = np.hstack([np.asarray(pooled, dtype=np.float32), store_window_stats(store)])
    mu, sd = P[wtr].mean(0), P[wtr].std(0) + 1e-4
    with torch.no_grad():
        model.feat_mean.copy_(torch.from_numpy(mu))
        model.feat_std.copy_(torch.from_numpy(sd))
        model.out_mean.copy_(torch.from_numpy(Y[tr].mean(0).astype(np.float32)))
        model.out_std.copy_(torch.from_numpy((Y[tr].std(0) + 1e-6).astype(np.float32)))
    X = torch.from_numpy(P)
    T = torch.from_numpy(Y.astype(np.float32))
    params = [p for n, p in model.named_parameters() if n.startswith(("dense", "output"))]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_decay, patience=cfg.lr_patience) \
        if cfg.lr_decay < 1 else None
    best, best_epoch, best_state, history = math.inf, -1, None, []
    steps = max(1, len(wtr) // cfg.batch_size)
    t0, seen = time.time(), 0
    in_drop = torch.nn.Dropout(INPUT_DROPOUT)
    out_std = model.out_std
    W = np.flatnonzero(np.isin(song, va))                 # the validation songs' windows
    vpos = np.searchsorted(va, song[W])
    for epoch in range(cfg.epochs):
        if best_epoch >= 0 and epoch - best_epoch > cfg.patience:
            break
        model.train()
        tl = 0.0
        for b in np.array_split(rng.permutation(wtr), steps):
            x = in_drop((X[b] - model.feat_mean) / model.feat_std) * model.feat_std + model.feat_mean
            loss = F.mse_loss((model.head(x) - T[song[b]]) / out_std, torch.zeros(len(b), T.shape[1]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tl += loss.item()
            seen += len(b)
        model.eval()
        with torch.no_grad():
            pw = model.head(X[W]).numpy()
        sp = np.zeros((len(va), pw.shape[1]))
        np.add.at(sp, vpos, pw)
        sp /= np.bincount(vpos, minlength=len(va))[:, None]
        std = out_std.numpy()
        valid_mse = float((((pw - Y[song[W]]) / std) ** 2).mean())
        song_mse = float((((sp - Y[va]) / std) ** 2).mean())
        h = {"epoch": epoch + 1, "train_mse": tl / steps, "valid_mse": valid_mse, "valid_song_mse": song_mse,
             "lr": opt.param_groups[0]["lr"]}
        v = {"valid_mse": valid_mse, "valid_song_mse": song_mse}.get(cfg.early_stop)
        if cfg.early_stop == "valid_auc":
            h["valid_auc"] = cold_start_metrics(user_factors, sp, va_played)["auc"]
            v = -h["valid_auc"]
        history.append(h)
        if sched is not None:
            sched.step(v)
        if v < best:
            best, best_epoch = v, epoch
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        if progress:
            tqdm.write(f"train: epoch {epoch + 1:3d}  lr {h['lr']:.1e}  train mse {h['train_mse']:.4f}  valid mse "
                       f"{valid_mse:.4f}  valid song mse {song_mse:.4f}" + ("  *" if best_epoch == epoch else ""))
    model.load_state_dict(best_state)
    model.eval()
    lam = None
    if cfg.song_readout and not model.cfg.normalize_output:
        with torch.no_grad():                             # the song readout, on the cached rows
            H = np.concatenate([model.head(X[i:i + 4096], hidden=True)[0].numpy() for i in range(0, len(X), 4096)])
        lam = refit_output(model, store, tr, va, Y, E=mean_per_song(store, H))
    return {"history": history, "best_epoch": best_epoch, "windows_per_s": seen / max(time.time() - t0, 1e-9),
            "readout_lambda": lam}


@torch.no_grad()
def store_window_stats(store, batch: int = 512) -> np.ndarray:
    """:func:`~audiovis.models.regressor.window_stats` of every window of the store [shape=(n_windows, 4 n_mels)]."""
    from .regressor import window_stats
    n = len(store.windows)
    out = [window_stats(torch.from_numpy(store.batch(np.arange(i, min(i + batch, n))))).numpy()
           for i in range(0, n, batch)]
    return np.concatenate(out) if out else np.zeros((0, 4 * store.cfg.n_mels), np.float32)
