"""Ridge readouts: the penalty chosen on validation rows, and the CNN's song-level output refit."""
from __future__ import annotations

import numpy as np
import torch

from audiovis.readout import ridge_fit, ridge_fit_predict


def test_ridge_recovers_a_linear_map_in_the_inputs_own_units():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, [1, 10, 0.1, 5], size=(300, 4))
    W0, b0 = rng.normal(size=(4, 3)), np.array([1.0, -2.0, 0.5])
    Y = X @ W0 + b0 + 0.01 * rng.normal(size=(300, 3))
    W, b, lam = ridge_fit(X[:200], Y[:200], X[200:250], Y[200:250])
    assert lam <= 1e-1 and np.allclose(W, W0, atol=0.05) and np.allclose(b, b0, atol=0.2)
    pred, _ = ridge_fit_predict(X[:200], Y[:200], X[200:250], Y[200:250], X[250:])
    assert np.abs(pred - Y[250:]).max() < 0.1


def test_refit_output_makes_song_predictions_the_song_level_ridge(built_ws):
    from audiovis.activations import song_means
    from audiovis.factors import load_factors
    from audiovis.features import FeatureStore
    from audiovis.readout import refit_output
    from audiovis.train import load_model, predict_songs
    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    model, _ = load_model(ws)
    store, fac = FeatureStore(ws), load_factors(ws)
    split, Y = fac["split"], fac["song_factors"]
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "valid", "test"))
    E = song_means(model, store, model.dense_names[-1])
    want, _ = ridge_fit_predict(E[tr], Y[tr], E[va], Y[va], E[te])
    with torch.no_grad():                          # training already refitted it (song_readout): undo that
        model.output.weight.normal_(generator=torch.Generator().manual_seed(0))
    before = predict_songs(model, store, te)
    refit_output(model, store, tr, va, Y)
    after = predict_songs(model, store, te)
    assert np.allclose(after, want, atol=1e-3)
    assert not np.allclose(before, after, atol=1e-3)
    refit_output(model, store, tr, va, Y)             # idempotent: the same songs, the same map
    assert np.allclose(predict_songs(model, store, te), after, atol=1e-5)


def test_ridge_recovers_linear_map():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 3))
    X = rng.standard_normal((200, 5))
    pred, lam = ridge_fit_predict(X[:100], X[:100] @ W, X[100:150], X[100:150] @ W, X[150:])
    assert np.abs(pred - X[150:] @ W).max() < 0.05
