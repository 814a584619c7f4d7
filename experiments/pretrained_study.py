#!/usr/bin/env python3
"""Which readout of the frozen musicnn taggers predicts the WMF factors best? (issue 29)

For a workspace whose features are at musicnn's settings (the default front end), caches every window's pooled
musicnn features (MSD and MTT taggers) and compares, on the cold-start protocol's split (AUC of the held-out
songs): ridge on song means of several layers, and a trained head (experiments/head_variants.py: per-window MLP,
then the ridge song readout).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python experiments/pretrained_study.py -w WS [--seeds 0 1]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from head_variants import head  # experiments/ is the script's folder, on sys.path

from audiovis.evaluate import cold_start_split, logmel_stats, mfcc_stats, stats_ridge
from audiovis.factors import load_factors
from audiovis.features import FeatureStore
from audiovis.metrics import cold_start_metrics
from audiovis.models.frozen import cached_windows, mean_per_song, pooled_features
from audiovis.models.musicnn import from_db, load_musicnn
from audiovis.readout import ridge_fit_predict
from audiovis.workspace import Workspace


def pooled(ws, store, dataset):
    net = load_musicnn(dataset)
    if dataset == "msd":                               # the package's own cache (what training and index use)
        return pooled_features(ws, store, dataset), net
    return cached_windows(ws, store, f"musicnn_{dataset}_pool", lambda x: net.trunk(from_db(x))[-1], 1506,
                          {"net": f"musicnn:{dataset}"}), net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--mtt", action="store_true", help="also the MTT tagger")
    a = ap.parse_args()
    torch.set_num_threads(2)
    ws = Workspace(a.workspace)
    store = FeatureStore(ws)
    fac = load_factors(ws)
    tr, va, te, P = cold_start_split(ws, store, fac)
    X, Y = fac["user_factors"], fac["song_factors"]
    res = {}

    def score(name, pred):
        res[name] = cold_start_metrics(X, pred, P)["auc"]
        print(f"{name:45s} {res[name]:.4f}", flush=True)

    score("mfcc", stats_ridge(store, mfcc_stats, Y, tr, va, te)[0])
    score("logmel_stats", stats_ridge(store, logmel_stats, Y, tr, va, te)[0])
    labels = ws.labels()
    if labels:
        from audiovis.evaluate import one_hot_labels
        L, _ = one_hot_labels(labels, ws.song_ids())
        score("oracle", ridge_fit_predict(L[tr], Y[tr], L[va], Y[va], L[te])[0])
    Xm, net = pooled(ws, store, "msd")
    Sm = mean_per_song(store, Xm)
    score("ridge msd pool (1506)", ridge_fit_predict(Sm[tr], Y[tr], Sm[va], Y[va], Sm[te])[0])
    with torch.no_grad():
        pen = net.penultimate(torch.from_numpy(np.array(Xm))).numpy()
        tags = net.tags(torch.from_numpy(pen)).numpy()
    Sp, St = mean_per_song(store, pen), mean_per_song(store, tags)
    score("ridge msd penultimate (200)", ridge_fit_predict(Sp[tr], Y[tr], Sp[va], Y[va], Sp[te])[0])
    score("ridge msd tags (50)", ridge_fit_predict(St[tr], Y[tr], St[va], Y[va], St[te])[0])
    S2 = np.hstack([Sm, Sp])
    score("ridge msd pool+pen", ridge_fit_predict(S2[tr], Y[tr], S2[va], Y[va], S2[te])[0])
    for seed in a.seeds:
        score(f"head msd pool seed {seed}", head(np.asarray(Xm), store, Y, tr, va, te, seed))
    if a.mtt:
        Xt, _ = pooled(ws, store, "mtt")
        St2 = mean_per_song(store, Xt)
        S3 = np.hstack([Sm, St2])
        score("ridge mtt pool", ridge_fit_predict(St2[tr], Y[tr], St2[va], Y[va], St2[te])[0])
        score("ridge msd+mtt pool", ridge_fit_predict(S3[tr], Y[tr], S3[va], Y[va], S3[te])[0])
        Xb = np.hstack([np.asarray(Xm), np.asarray(Xt)])
        for seed in a.seeds:
            score(f"head msd+mtt pool seed {seed}", head(Xb, store, Y, tr, va, te, seed))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
