import json

import numpy as np

from audiovis.evaluate import NAMES, logmel_stats, markdown_table, mfcc_stats, stats_ridge
from audiovis.metrics import cold_start_metrics


class _FakeStore:
    """What the statistics extractors use of a FeatureStore: ``song(i)``, float16 frames [shape=(t, n_mels)]."""

    def __init__(self, songs):
        self.songs = [np.asarray(s, dtype=np.float16) for s in songs]

    def song(self, idx):
        return self.songs[idx]


def test_logmel_stats_known_values():
    A = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0], [8.0, 10.0]])       # 4 frames, 2 bands
    F = logmel_stats(_FakeStore([A, A[:1]]), np.array([0, 1]))
    assert F.shape == (2, 8) and F.dtype == np.float64
    # [means, stds, mean |delta|s, 90th percentiles]; percentile 90 of (0, 2, 4, 8): 4 + 0.7 * (8 - 4)
    np.testing.assert_allclose(F[0], [3.5, 10, np.sqrt(8.75), 0, 8 / 3, 0, 6.8, 10])
    np.testing.assert_allclose(F[1], [0, 10, 0, 0, 0, 0, 0, 10])             # one frame: no delta, no spread


def _band_world(n_songs=200, n_mels=128, seed=0):
    """Songs whose factors are set by two statistics of single bands, over a smooth random spectrum and a frame
    loudness shared by all bands: the energy of band 40, and the skew of band 90, whose frames are a mixture of
    a right- and a left-skewed zero-mean unit-variance two-point noise in a proportion drawn per song: mean and
    variance are the same in every song, only the percentiles differ, which MFCC means and stds (of linear
    mixtures of the bands) cannot see. Each user plays the 30% of the songs that their factors score highest."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(-15, 15, n_songs)
    skew = rng.uniform(0, 1, n_songs)
    cosines = np.cos(np.pi * np.outer(np.arange(4), np.arange(n_mels)) / n_mels)
    songs = []
    for i in range(n_songs):
        t = int(rng.integers(100, 300))
        envelope = -50 + 5 * rng.standard_normal(4) @ cosines               # a smooth spectrum per song
        loudness = rng.uniform(1, 2) * rng.standard_normal((t, 1))          # frame loudness, all bands at once
        S = envelope + loudness + 0.5 * rng.standard_normal((t, n_mels))
        S[:, 40] += level[i]
        sign = np.where(rng.random(t) < skew[i], 1.0, -1.0)
        S[:, 90] += 6 * sign * np.where(rng.random(t) < 0.2, 2.0, -0.5)  # zero mean, unit variance
        songs.append(S)
    z = np.stack([(level - level.mean()) / level.std(), (skew - skew.mean()) / skew.std()], 1)
    Y = z @ rng.standard_normal((2, 6)) + 0.1 * rng.standard_normal((n_songs, 6))
    X = rng.standard_normal((80, 6))
    S = X @ Y.T
    P = S > np.quantile(S, 0.7, axis=1, keepdims=True)
    return _FakeStore(songs), X, Y, P


def _random_auc(X, P, n_test, f, seed=1):
    rng = np.random.default_rng(seed)
    return np.mean([cold_start_metrics(X, rng.standard_normal((n_test, f)), P)["auc"] for _ in range(5)])


def test_logmel_stats_ridge_finds_band_signal():
    store, X, Y, P = _band_world()
    tr, va, te = np.arange(0, 120), np.arange(120, 150), np.arange(150, 200)
    pred, lam = stats_ridge(store, logmel_stats, Y, tr, va, te)
    assert pred.shape == (len(te), Y.shape[1]) and lam > 0
    auc = cold_start_metrics(X, pred, P[:, te])["auc"]
    rand = _random_auc(X, P[:, te], len(te), Y.shape[1])
    # the same code path with the MFCC extractor, which sees the band energy but not the skew
    auc_m = cold_start_metrics(X, stats_ridge(store, mfcc_stats, Y, tr, va, te)[0], P[:, te])["auc"]
    assert abs(rand - 0.5) < 0.05
    assert auc > 0.85 and auc > rand + 0.3           # 0.958 here
    assert auc > auc_m + 0.05                        # MFCC 0.801


def test_markdown_table_reads_evaluations_without_the_logmel_row():
    models = {key: {"auc": a, "map": 0.1, "users": 3, "gap_share": g} for key, a, g in
              [("random", 0.5, 0.0), ("mfcc_linear", 0.6, 0.5), ("cnn", 0.65, 0.75), ("upper_bound", 0.7, 1.0)]}
    md = markdown_table({"test_songs": 4, "k": 500, "models": models, "cnn_minus_mfcc_auc": 0.05})
    assert "| linear regression on MFCC statistics | 0.6000 |" in md and "log-mel" not in md


def test_evaluation_outputs(built_ws):
    ws = built_ws[0]
    res = json.loads((ws / "evaluation.json").read_text())
    assert set(res["models"]) == {"random", "mfcc_linear", "logmel_stats_ridge", "pretrained_ridge", "cnn",
                                  "audible_oracle", "popularity", "upper_bound"}
    assert list(res["models"]).index("logmel_stats_ridge") == list(res["models"]).index("mfcc_linear") + 1
    assert list(res["models"]).index("pretrained_ridge") == list(res["models"]).index("logmel_stats_ridge") + 1
    assert np.isclose(res["cnn_minus_pretrained_ridge_auc"],
                      res["models"]["cnn"]["auc"] - res["models"]["pretrained_ridge"]["auc"])
    assert res["models"]["upper_bound"]["gap_share"] == 1.0
    row = res["models"]["logmel_stats_ridge"]
    assert {"auc", "map", "users", "lambda", "gap_share"} <= set(row)
    assert np.isclose(res["cnn_minus_logmel_stats_auc"], res["models"]["cnn"]["auc"] - row["auc"])
    md = (ws / "evaluation.md").read_text()
    assert "| content model (audiovis) |" in md and "share of random-to-upper-bound AUC gap" in md
    assert "Content model AUC minus pretrained-tagger ridge AUC:" in md
    lines = md.splitlines()
    mfcc = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {NAMES['mfcc_linear']} |"))
    assert lines[mfcc + 1].startswith(f"| {NAMES['logmel_stats_ridge']} | {row['auc']:.4f} |")
    assert "Content model AUC minus log-mel statistics AUC:" in md
    # the tiny corpus's kinds (low tone, high tone, noise) differ in their bands: the baseline beats random
    assert row["auc"] > res["models"]["random"]["auc"] + 0.1
    # the tiny corpus is easy: the upper bound must be well above random
    assert res["models"]["upper_bound"]["auc"] > res["models"]["random"]["auc"] + 0.2
