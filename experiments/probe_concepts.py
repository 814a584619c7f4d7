"""Which audible concepts does the CNN hear? Linear probes on the held-out songs.

For each ground-truth concept, a logistic-regression probe is fitted on the train+validation songs and scored on
the held-out (test) songs, from (a) the CNN's song embedding (the first dense layer, averaged over the song's
windows) and (b) the MFCC statistics of the baseline. Also prints each predictor's validation MSE of the factors
in standardised units (the CNN, the MFCC ridge baseline and the audible oracle).

    OPENBLAS_NUM_THREADS=1 python experiments/probe_concepts.py -w workspaces/demo
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from audiovis.activations import song_means
from audiovis.evaluate import mfcc_stats, one_hot_labels
from audiovis.factors import load_factors
from audiovis.features import FeatureStore
from audiovis.readout import ridge_fit_predict
from audiovis.train import load_model, predict_songs
from audiovis.workspace import Workspace


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="workspaces/demo")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    ws = Workspace(a.workspace)
    fac, store = load_factors(ws), FeatureStore(ws)
    split, Y = fac["split"], fac["song_factors"]
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "valid", "test"))
    ids, lab = ws.song_ids(), ws.labels()
    if not lab:
        raise SystemExit("this workspace has no ground-truth labels")
    n = len(ids)
    model, _ = load_model(ws)
    sd = Y[tr].std(0)
    F = mfcc_stats(store, np.arange(n))
    preds = {"cnn": predict_songs(model, store, np.arange(n)),
             "mfcc ridge": ridge_fit_predict(F[tr], Y[tr], F[va], Y[va], F)[0]}
    L, _ = one_hot_labels(lab, ids)
    preds["audible oracle"] = ridge_fit_predict(L[tr], Y[tr], L[va], Y[va], L)[0]
    print("| predictor | validation MSE of the factors (standardised) |\n|---|---|")
    for k, P in preds.items():
        print(f"| {k} | {float((((P[va] - Y[va]) / sd) ** 2).mean()):.3f} |")
    first_dense = model.dense_names[0]
    E = song_means(model, store, first_dense)
    fit = np.concatenate([tr, va])
    concepts = sorted({c for d in lab.values() for c in d})
    print(f"\n| concept | chance (majority) | CNN {first_dense} | MFCC statistics |\n|---|---|---|---|")
    for c in concepts:
        y = np.array([lab.get(i, {}).get(c, "") for i in ids])
        chance = max(np.mean(y[te] == v) for v in set(y[fit]))
        acc = []
        for X in (E, F):
            mu, s = X[fit].mean(0), X[fit].std(0) + 1e-6
            clf = LogisticRegression(max_iter=3000, C=0.5).fit((X[fit] - mu) / s, y[fit])
            acc.append(clf.score((X[te] - mu) / s, y[te]))
        print(f"| {c} | {chance:.2f} | {acc[0]:.2f} | {acc[1]:.2f} |")


if __name__ == "__main__":
    main()
