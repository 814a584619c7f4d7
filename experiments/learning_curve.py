"""Cold-start AUC against the number of training songs: the CNN, the audible oracle and the MFCC baseline, each
fitted on the same random subset of the training songs (validation and held-out songs unchanged, WMF factors
unchanged), evaluated by ``audiovis evaluate`` itself. Shows which model is limited by the number of songs.

Each point trains the default ``small`` model on a copy of the workspace (catalogue copied, features linked, so
the workspace itself is never touched; the dropped training songs get split ``none``) with one torch thread, so
two points can run side by side on two cores. Prints one JSON line per point.

    OPENBLAS_NUM_THREADS=1 python experiments/learning_curve.py -w workspaces/demo 240 --seed 0
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch
from train_variant import copy_for_training


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="workspaces/demo")
    ap.add_argument("n_train", type=int, nargs="+", help="training songs to keep (a random subset)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (the subset is fixed: rng 1)")
    ap.add_argument("--out", default="/tmp/audiovis_learning_curve")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from audiovis.evaluate import evaluate
    from audiovis.train import TrainConfig, train
    from audiovis.workspace import Workspace
    for n_keep in a.n_train:
        dst = copy_for_training(Path(a.workspace), Path(a.out) / f"n{n_keep}_seed{a.seed}")
        with np.load(dst / "factors.npz", allow_pickle=False) as z:
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
        m = evaluate(ws, progress=False)["models"]
        r = {"n_train": n_keep, "seed": a.seed, "random": m["random"]["auc"], "cnn": m["cnn"]["auc"],
             "oracle": m["audible_oracle"]["auc"], "mfcc": m["mfcc_linear"]["auc"]}
        r["cnn_share_of_oracle"] = (r["cnn"] - r["random"]) / (r["oracle"] - r["random"])
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)


if __name__ == "__main__":
    main()
