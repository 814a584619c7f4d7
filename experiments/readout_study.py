"""Which song-level readout of a trained CNN ranks the held-out songs best? (real-music issue, session 9)

Takes a workspace with a trained model and compares, on ``audiovis evaluate``'s cold-start protocol, readouts
from song embeddings to factors: a ridge (the penalty chosen on the validation songs, as ``song_readout`` does)
from the mean of a layer's activation over the song's windows, from mean and standard deviation, from several
layers at once, after PCA, a k-nearest-neighbour average of the training songs' factors, and k-means clusters
of every song's embedding (the held-out songs' audio included, known at cold start; no plays) as one-hot inputs.
Prints a table.

    OPENBLAS_NUM_THREADS=1 python experiments/readout_study.py -w ~/.cache/audiovis-realmusic/ws0
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch


@torch.no_grad()
def song_pool(model, store, layers, batch_size=256):
    """{layer: (mean, std)} over each song's windows of the layer's activation, conv maps averaged over time."""
    from audiovis.activations import Recorder
    model.eval()
    sums, sq, counts = {}, {}, np.zeros(store.n_songs)
    for i in range(0, len(store.windows), batch_size):
        w = np.arange(i, min(i + batch_size, len(store.windows)))
        acts, _ = Recorder(model, layers).record(torch.from_numpy(store.batch(w)))
        for name, a in acts.items():
            a = a.float()
            a = a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a
            a = a.numpy()
            sums.setdefault(name, np.zeros((store.n_songs, a.shape[1])))
            sq.setdefault(name, np.zeros((store.n_songs, a.shape[1])))
            np.add.at(sums[name], store.windows[w, 0], a)
            np.add.at(sq[name], store.windows[w, 0], a * a)
        np.add.at(counts, store.windows[w, 0], 1)
    c = np.maximum(counts, 1)[:, None]
    return {n: (sums[n] / c, np.sqrt(np.maximum(sq[n] / c - (sums[n] / c) ** 2, 0))) for n in sums}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from audiovis.evaluate import cold_start_split, logmel_stats
    from audiovis.factors import load_factors
    from audiovis.features import FeatureStore
    from audiovis.metrics import cold_start_metrics
    from audiovis.readout import ridge_fit_predict
    from audiovis.train import load_model
    from audiovis.workspace import Workspace
    ws = Workspace(a.workspace)
    model, _ = load_model(ws)
    store, fac = FeatureStore(ws), load_factors(ws)
    tr, va, te, P = cold_start_split(ws, store, fac)
    X, Y = fac["user_factors"], fac["song_factors"]
    lam = (1e-2, 1e-1, 1, 10, 100, 1e3, 1e4, 1e5)
    pool = song_pool(model, store, list(model.conv_names) + list(model.dense_names))
    LM = logmel_stats(store, np.arange(store.n_songs))

    def auc(pred):
        return cold_start_metrics(X, pred, P)["auc"]

    def ridge(E):
        pred, lm = ridge_fit_predict(E[tr], Y[tr], E[va], Y[va], E[te], lam)
        return auc(pred), lm

    rows = []
    for name, (m, s) in pool.items():
        rows.append((f"{name} mean", *ridge(m)))
        rows.append((f"{name} mean+std", *ridge(np.hstack([m, s]))))
    allm = np.hstack([pool[n][0] for n in pool])
    rows.append(("all layers mean", *ridge(allm)))
    d = pool[model.dense_names[-1]][0]
    rows.append(("dense mean + log-mel stats", *ridge(np.hstack([d, LM]))))
    rows.append(("log-mel stats", *ridge(LM)))
    for k in (8, 16, 32):
        mu, sd = d[tr].mean(0), d[tr].std(0) + 1e-8
        Z = (d - mu) / sd
        _, _, Vt = np.linalg.svd(Z[tr], full_matrices=False)
        rows.append((f"dense mean, PCA {k}", *ridge(Z @ Vt[:k].T)))
    for k in (5, 10, 20):
        mu, sd = d[tr].mean(0), d[tr].std(0) + 1e-8
        Z = (d - mu) / sd
        Z /= np.linalg.norm(Z, axis=1, keepdims=True) + 1e-8
        sim = Z[te] @ Z[tr].T
        nn = np.argsort(-sim, axis=1)[:, :k]
        wts = np.maximum(np.take_along_axis(sim, nn, 1), 0) + 1e-6
        pred = (Y[tr][nn] * wts[..., None]).sum(1) / wts.sum(1, keepdims=True)
        rows.append((f"dense mean, {k}-NN", auc(pred), float("nan")))
    # clusters of every song's embedding (audio only, no plays)
    from sklearn.cluster import KMeans
    Z = (d - d[tr].mean(0)) / (d[tr].std(0) + 1e-8)
    for k in (8, 12, 16):
        lab = KMeans(k, n_init=10, random_state=0).fit_predict(Z)
        H = np.eye(k)[lab]
        rows.append((f"dense mean, {k} k-means clusters (one-hot)", *ridge(H)))
        rows.append((f"dense mean + {k} clusters", *ridge(np.hstack([d, H * d.std()]))))
    print("| readout | AUC | lambda |\n|---|---|---|")
    for name, v, lm in rows:
        print(f"| {name} | {v:.4f} | {lm:g} |")


if __name__ == "__main__":
    main()
