"""Train one variant of the content model on a copy of a workspace and report its cold-start AUC.

The copy gets the workspace's catalogue and factors (features are linked, not copied), so the workspace itself is
never touched. Overrides are JSON: TrainConfig fields, plus ``"model"`` for ModelConfig fields of the preset trained
(``small`` unless ``"preset"`` names another).
Prints one JSON line: CNN AUC on the held-out songs (``audiovis evaluate``'s protocol), the AUC after refitting
the output layer by ridge on song-mean last-hidden-layer activations, validation MSE, best epoch, seconds, and
linear-probe accuracies of the song embedding for concepts with ground truth. One torch thread, so two variants
can run side by side on two cores.

    OPENBLAS_NUM_THREADS=1 python experiments/train_variant.py -w workspaces/demo plateau '{}'
    OPENBLAS_NUM_THREADS=1 python experiments/train_variant.py -w workspaces/demo big \\
        '{"model": {"channels": [128, 128, 256], "dense": [512]}}'
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch


def copy_for_training(src: Path, dst: Path) -> Path:
    """A fresh copy of workspace ``src`` at ``dst`` to train on: catalogue and factors copied, features linked."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in ("catalog.sqlite", "factors.npz"):
        shutil.copy(src / f, dst / f)
    os.symlink((src / "features").resolve(), dst / "features")
    return dst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="workspaces/demo")
    ap.add_argument("name")
    ap.add_argument("overrides", nargs="?", default="{}")
    ap.add_argument("--out", default="/tmp/audiovis_train_variants")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    over = json.loads(a.overrides)
    dst = copy_for_training(Path(a.workspace), Path(a.out) / a.name)
    import audiovis.model as M
    if "model" in over:                                   # fields of the preset trained (small unless named)
        preset = over.setdefault("preset", "small")
        M.PRESETS[preset] = {**M.PRESETS[preset], **over.pop("model")}
    from sklearn.linear_model import LogisticRegression

    from audiovis.activations import song_means
    from audiovis.evaluate import cold_start_split
    from audiovis.factors import load_factors
    from audiovis.features import FeatureStore
    from audiovis.metrics import cold_start_metrics
    from audiovis.readout import ridge_fit_predict
    from audiovis.train import TrainConfig, load_model, predict_songs, train
    from audiovis.workspace import Workspace
    ws = Workspace(dst)
    t0 = time.time()
    summary = train(ws, TrainConfig(num_threads=1, **over), progress=False)
    model, _ = load_model(ws)
    store, fac = FeatureStore(ws), load_factors(ws)
    tr, va, te, P = cold_start_split(ws, store, fac)
    X, Y = fac["user_factors"], fac["song_factors"]
    auc = cold_start_metrics(X, predict_songs(model, store, te), P)["auc"]
    E = song_means(model, store, model.dense_names[-1])
    refit = cold_start_metrics(X, ridge_fit_predict(E[tr], Y[tr], E[va], Y[va], E[te])[0], P)["auc"]
    probes, lab, ids = {}, ws.labels(), ws.song_ids()
    fit = np.concatenate([tr, va])
    mu, sd = E[fit].mean(0), E[fit].std(0) + 1e-6
    for c in sorted({c for d in lab.values() for c in d}):
        y = np.array([lab.get(i, {}).get(c, "") for i in ids])
        clf = LogisticRegression(max_iter=2000).fit((E[fit] - mu) / sd, y[fit])
        probes[c] = round(float((clf.predict((E[te] - mu) / sd) == y[te]).mean()), 3)
    print(json.dumps(dict(name=a.name, overrides=a.overrides, auc=round(auc, 4), refit_auc=round(refit, 4),
                          best_valid_mse=round(summary["best_valid_mse"], 4), best_epoch=summary["best_epoch"],
                          seconds=round(time.time() - t0), probes=probes)))


if __name__ == "__main__":
    main()
