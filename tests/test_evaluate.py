import json

import numpy as np

from audiovis.evaluate import auc_score, average_precision_at_k, cold_start_metrics, ridge_fit_predict


def test_auc_and_ap_known_values():
    s = np.array([0.9, 0.8, 0.7, 0.1])
    pos = np.array([True, False, True, False])
    assert auc_score(s, pos) == 0.75
    assert np.isclose(average_precision_at_k(s, pos, k=10), (1 + 2 / 3) / 2)
    assert np.isnan(auc_score(s, np.zeros(4, bool)))


def test_perfect_and_reversed_rankings():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4))
    Y = rng.standard_normal((30, 4))
    S = X @ Y.T
    P = S > np.median(S, axis=1, keepdims=True)
    assert cold_start_metrics(X, Y, P)["auc"] == 1.0
    assert cold_start_metrics(X, -Y, P)["auc"] == 0.0


def test_ridge_recovers_linear_map():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 3))
    X = rng.standard_normal((200, 5))
    pred, lam = ridge_fit_predict(X[:100], X[:100] @ W, X[100:150], X[100:150] @ W, X[150:])
    assert np.abs(pred - X[150:] @ W).max() < 0.05


def test_evaluation_outputs(built_ws):
    ws = built_ws[0]
    res = json.loads((ws / "evaluation.json").read_text())
    assert set(res["models"]) == {"random", "mfcc_linear", "cnn", "audible_oracle", "popularity", "upper_bound"}
    assert res["models"]["upper_bound"]["gap_share"] == 1.0
    md = (ws / "evaluation.md").read_text()
    assert "| CNN (audiovis) |" in md and "share of random-to-upper-bound AUC gap" in md
    # the tiny corpus is easy: the upper bound must be well above random
    assert res["models"]["upper_bound"]["auc"] > res["models"]["random"]["auc"] + 0.2
