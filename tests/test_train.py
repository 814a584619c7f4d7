import numpy as np
import pytest
import torch

from audiovis.errors import ParameterError
from audiovis.features import FeatureStore
from audiovis.train import load_model, model_config, predict_songs
from audiovis.workspace import Workspace


def test_checkpoint_stores_config_and_history(built_ws):
    ws = Workspace(built_ws[0])
    model, extra = load_model(ws)
    assert extra["train"]["preset"] == "small" and extra["feature"]["n_mels"] == 128
    assert len(extra["history"]) >= 1 and not model.training
    obj = torch.load(ws.model_path, weights_only=True)
    assert obj["config"]["n_factors"] == 8


def test_song_prediction_is_mean_of_windows(built_ws):
    ws = Workspace(built_ws[0])
    model, _ = load_model(ws)
    store = FeatureStore(ws)
    p = predict_songs(model, store, np.array([0, 1]))
    with torch.no_grad():
        w = model(torch.from_numpy(store.batch(store.song_windows(1)))).numpy()
    np.testing.assert_allclose(p[1], w.mean(0), rtol=1e-4, atol=1e-6)


def test_unknown_preset():
    with pytest.raises(ParameterError, match="preset 'huge' is not one of small, paper"):
        model_config("huge", 8, 128, 129)


def test_second_run_reuses_model(built_ws, tiny_configs):
    from audiovis.train import train
    ws = Workspace(built_ws[0])
    before = ws.model_path.stat().st_mtime_ns
    train(ws, tiny_configs["training"], progress=False)
    assert ws.model_path.stat().st_mtime_ns == before
