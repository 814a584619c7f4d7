"""Ranking metrics of the NIPS 2013 cold-start protocol: per-user AUC and mAP@k of held-out songs ranked by
x_u . y'_i (:mod:`audiovis.evaluate`; training's validation AUC, ``TrainConfig.early_stop``)."""
from __future__ import annotations

import numpy as np


def auc_score(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of one ranking (ties count half)."""
    from scipy.stats import rankdata
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision_at_k(scores: np.ndarray, positive: np.ndarray, k: int = 500) -> float:
    """AP@k: mean of precision@i over the positives ranked in the top k, divided by min(k, n_pos)."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")[:k]
    hits = positive[order].astype(np.float64)
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / min(k, n_pos))


def cold_start_metrics(X: np.ndarray, Y: np.ndarray, P: np.ndarray, k: int = 500) -> dict:
    """Mean per-user AUC and mAP@k.

    Parameters
    ----------
    X : np.ndarray [shape=(n_users, f)]     user factors
    Y : np.ndarray [shape=(n_test, f)]      (predicted) factors of the held-out songs
    P : np.ndarray [shape=(n_users, n_test), bool]   which held-out songs each user played
    """
    S = X @ Y.T
    aucs, aps = [], []
    for u in range(len(X)):
        pos = P[u]
        if pos.any() and not pos.all():
            aucs.append(auc_score(S[u], pos))
            aps.append(average_precision_at_k(S[u], pos, k))
    return {"auc": float(np.mean(aucs)), "map": float(np.mean(aps)), "users": len(aucs)}
