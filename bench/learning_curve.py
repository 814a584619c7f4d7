"""Cold-start AUC against the number of training songs: the CNN, the audible oracle and the MFCC baseline, each
fitted on the same random subset of the training songs (validation and held-out songs unchanged, WMF factors
unchanged), evaluated with ``audiovis evaluate``'s protocol. Shows which model is limited by the number of songs.

Each point trains the default ``small`` model on a copy of the workspace (catalogue copied, features linked, so
the workspace itself is never touched) with one torch thread, so two points can run side by side on two cores.
Prints one JSON line per point.

    OPENBLAS_NUM_THREADS=1 python bench/learning_curve.py -w workspaces/demo 240 --seed 0
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="workspaces/demo")
    ap.add_argument("n_train", type=int, nargs="+", help="training songs to keep (a random subset)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (the subset is fixed: rng 1)")
    ap.add_argument("--out", default="/tmp/audiovis_learning_curve")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from audiovis.evaluate import cold_start_metrics, mfcc_stats, one_hot_labels, ridge_fit_predict
    from audiovis.features import FeatureStore
    from audiovis.train import TrainConfig, load_model, predict_songs, train
    from audiovis.workspace import Workspace
    src = Path(a.workspace)
    for n_keep in a.n_train:
        dst = Path(a.out) / f"n{n_keep}_seed{a.seed}"
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        shutil.copy(src / "catalog.sqlite", dst / "catalog.sqlite")
        os.symlink((src / "features").resolve(), dst / "features")
        with np.load(src / "factors.npz", allow_pickle=False) as z:
            fac = {k: z[k] for k in z.files}
        split = fac["split"].astype(object)
        train_songs = np.flatnonzero(split == "train")
        if n_keep > len(train_songs):
            raise SystemExit(f"n_train {n_keep} > the workspace's {len(train_songs)} training songs")
        split[np.random.default_rng(1).permutation(train_songs)[n_keep:]] = "none"   # out of every fit
        fac["split"] = split.astype(str)
        np.savez(dst / "factors.npz", **fac)
        ws = Workspace(dst)
        train(ws, TrainConfig(num_threads=1, seed=a.seed), progress=False)
        model, _ = load_model(ws)
        store = FeatureStore(ws)
        te, tr, va = (np.flatnonzero(fac["split"] == s) for s in ("test", "train", "valid"))
        P = (ws.play_matrix().tocsc()[:, te] > 0).toarray()
        X, Y = fac["user_factors"], fac["song_factors"]
        L, _ = one_hot_labels(ws.labels(), ws.song_ids())
        M = mfcc_stats(store, np.arange(store.n_songs))

        def ridge_auc(F, X=X, Y=Y, P=P, tr=tr, va=va, te=te):
            return cold_start_metrics(X, ridge_fit_predict(F[tr], Y[tr], F[va], Y[va], F[te])[0], P)["auc"]

        rng = np.random.default_rng(0)
        rand = np.mean([cold_start_metrics(X, rng.standard_normal((len(te), X.shape[1])), P)["auc"]
                        for _ in range(5)])
        r = {"n_train": len(tr), "seed": a.seed, "random": rand,
             "cnn": cold_start_metrics(X, predict_songs(model, store, te), P)["auc"],
             "oracle": ridge_auc(L), "mfcc": ridge_auc(M)}
        r["cnn_share_of_oracle"] = (r["cnn"] - rand) / (r["oracle"] - rand)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)


if __name__ == "__main__":
    main()
