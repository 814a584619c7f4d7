"""How much of the cold-start AUC each audible concept is worth: the audible oracle fitted on subsets of the
ground-truth labels (ridge from one-hot labels to WMF factors, lambda picked on the validation songs, per-user AUC
on the held-out songs: the protocol of ``audiovis evaluate``).

    OPENBLAS_NUM_THREADS=1 python experiments/partial_oracles.py -w workspaces/demo
    OPENBLAS_NUM_THREADS=1 python experiments/partial_oracles.py -w ~/.cache/audiovis-realmusic/ws0 \
        --concepts style brightness density tempo texture
"""
from __future__ import annotations

import argparse

from audiovis.evaluate import cold_start_split, one_hot_labels
from audiovis.factors import load_factors
from audiovis.features import FeatureStore
from audiovis.metrics import cold_start_metrics
from audiovis.readout import ridge_fit_predict
from audiovis.workspace import Workspace

CONCEPTS = ["groove", "lead", "density", "tempo_class", "mode"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="workspaces/demo")
    ap.add_argument("--concepts", nargs="+", default=CONCEPTS, help="label columns, in the order they are added")
    a = ap.parse_args(argv)
    concepts = a.concepts
    ws = Workspace(a.workspace)
    fac = load_factors(ws)
    X, Y = fac["user_factors"], fac["song_factors"]
    tr, va, te, P = cold_start_split(ws, FeatureStore(ws), fac)
    labels, ids = ws.labels(), ws.song_ids()
    if not labels:
        raise SystemExit("this workspace has no ground-truth labels")

    def auc(concepts) -> float:
        L, _ = one_hot_labels({s: {c: v for c, v in d.items() if c in concepts} for s, d in labels.items()}, ids)
        return cold_start_metrics(X, ridge_fit_predict(L[tr], Y[tr], L[va], Y[va], L[te])[0], P)["auc"]

    print("| concepts | AUC |\n|---|---|")
    known = {c for d in labels.values() for c in d}
    if set(concepts) - known:
        raise SystemExit(f"no label column {sorted(set(concepts) - known)[0]!r}; the labels have {sorted(known)}")
    for i in range(1, len(concepts) + 1):
        print(f"| {' + '.join(concepts[:i])} | {auc(set(concepts[:i])):.4f} |")
    for c in concepts:
        print(f"| all but {c} | {auc(set(concepts) - {c}):.4f} |")


if __name__ == "__main__":
    main()
