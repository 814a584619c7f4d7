"""The cold-start protocol's ranking metrics (audiovis.metrics)."""
import numpy as np

from audiovis.metrics import auc_score, average_precision_at_k, cold_start_metrics


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
