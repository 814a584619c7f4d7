#!/usr/bin/env python3
"""Heads on the cached frozen musicnn features: which input and training of the head predicts factors best?

Needs a workspace whose musicnn caches exist (``audiovis train --preset musicnn`` writes ``musicnn_msd``;
``experiments/pretrained_study.py --mtt`` also the MTT tagger's pooled features). Each variant is a per-window
MLP (input dropout, hidden ReLU layer, dropout, linear to standardised factors; AdamW; the epoch picked on the
validation songs' song-level MSE), then the ridge song readout of its song-mean hidden activations (as
``TrainConfig.song_readout``); two seeds and their ensemble, cold-start AUC of the held-out songs.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python experiments/head_variants.py -w WS --variants \\
        '{"msd": {"feats": "msd"}, "msd+stats": {"feats": "msd,stats"}, "h1024": {"feats": "msd", "hidden": 1024}}'

Feature names: ``msd`` (the MSD tagger's pooled features, 1506), ``mtt`` (MTT's, from pretrained_study.py),
``stats`` (per-window log-mel statistics, :func:`audiovis.models.regressor.window_stats`). Variant keys:
hidden, epochs, drop, indrop, lr, wd, songlevel (1: a song-level loss on the mean of K windows of nsongs songs).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from audiovis.evaluate import cold_start_split
from audiovis.factors import load_factors
from audiovis.features import FeatureStore
from audiovis.metrics import cold_start_metrics
from audiovis.models.frozen import POOLED, mean_per_song
from audiovis.models.headfit import store_window_stats
from audiovis.readout import ridge_fit_predict
from audiovis.workspace import Workspace


def head(Xw, store, Y, tr, va, te, seed, hidden=512, epochs=40, drop=0.5, indrop=0.2, lr=1e-3, wd=1e-2,
         songlevel=0, K=8, nsongs=32):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    song = store.windows[:, 0]
    wtr = np.flatnonzero(np.isin(song, tr))
    mu, sd = Xw[wtr].mean(0), Xw[wtr].std(0) + 1e-4
    X = torch.from_numpy(((Xw - mu) / sd).astype(np.float32))
    ym, ys = Y[tr].mean(0), Y[tr].std(0) + 1e-6
    T = torch.from_numpy(((Y - ym) / ys).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Dropout(indrop), torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Dropout(drop), torch.nn.Linear(hidden, Y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
    by_song = {s: np.flatnonzero(song == s) for s in tr}
    best = np.inf
    for _ in range(epochs):
        net.train()
        if songlevel:
            for _ in range(max(1, len(tr) // nsongs)):
                ss = rng.choice(tr, nsongs)
                idx = np.concatenate([rng.choice(by_song[s], K) for s in ss])
                loss = ((net(X[idx]).reshape(nsongs, K, -1).mean(1) - T[ss]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        else:
            for b in np.array_split(rng.permutation(wtr), max(1, len(wtr) // 128)):
                loss = ((net(X[b]) - T[song[b]]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            H = net[:3](X).numpy()
            Ps = mean_per_song(store, net[3:](torch.from_numpy(H)).numpy())
        v = float(((Ps[va] - T[va].numpy()) ** 2).mean())
        if v < best:
            best, E = v, mean_per_song(store, H)
    return ridge_fit_predict(E[tr], Y[tr], E[va], Y[va], E[te])[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--variants", required=True, help="JSON {name: {feats: 'msd,stats', hidden: 512, ...}}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = ap.parse_args()
    torch.set_num_threads(1)
    ws = Workspace(a.workspace)
    store, fac = FeatureStore(ws), load_factors(ws)
    tr, va, te, P = cold_start_split(ws, store, fac)
    X, Y = fac["user_factors"], fac["song_factors"]
    d = ws.features_dir
    feats = {"msd": lambda: np.asarray(np.load(d / "musicnn_msd.npy", mmap_mode="r")[:, :POOLED]),
             "mtt": lambda: np.asarray(np.load(d / "musicnn_mtt_pool.npy", mmap_mode="r")),
             "stats": lambda: store_window_stats(store)}
    for name, cfg in json.loads(a.variants).items():
        Xw = np.hstack([feats[f]() for f in cfg.pop("feats", "msd").split(",")]).astype(np.float32)
        preds = [head(Xw, store, Y, tr, va, te, s, **cfg) for s in a.seeds]
        aucs = [cold_start_metrics(X, p, P)["auc"] for p in preds]
        ens = cold_start_metrics(X, np.mean(preds, 0), P)["auc"]
        print(f"{name:24s} " + "  ".join(f"seed {s}: {v:.4f}" for s, v in zip(a.seeds, aucs))
              + f"  ensemble: {ens:.4f}", flush=True)


if __name__ == "__main__":
    main()
