"""The content model on musicnn's pretrained layers: layers, frozen weights, checkpoints, the cached index path."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from audiovis.model import ModelConfig, build_model, load_checkpoint, save_checkpoint
from audiovis.models.musicnn import load_musicnn
from audiovis.models.regressor import MusicnnRegressor, window_stats
from audiovis.units import layer_sizes
from audiovis.workspace import Workspace


def _cfg(**kw):
    return ModelConfig(arch="musicnn", pretrained="msd", n_mels=96, n_frames=187, channels=(), pools=(),
                       dense=(16,), n_factors=4, **kw)


def test_layers_named_tags_and_frozen_weights():
    m = build_model(_cfg())
    assert isinstance(m, MusicnnRegressor)
    sizes = layer_sizes(m)
    assert list(sizes) == ["timbral", "temporal", "cnn1", "cnn2", "cnn3", "penultimate", "tags", "dense1", "output"]
    assert sizes["timbral"] == 408 and sizes["temporal"] == 153 and sizes["tags"] == 50 and sizes["output"] == 4
    assert m.unit_note("tags", 5) == "musicnn MSD tag 'female vocalists'"
    ref = load_musicnn("msd").state_dict()
    for k, v in ref.items():                                   # the wheel's weights, untouched
        assert torch.equal(m.state_dict()[k], v), k
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"dense1.linear.weight", "dense1.linear.bias", "output.weight", "output.bias"}
    m.train()
    assert not m.timbral.training and not m.penultimate.training and m.dense1.training


def test_forward_is_the_head_on_pooled_features_and_window_statistics():
    m = build_model(_cfg()).eval()
    x = torch.randn(3, 96, 187) * 10 - 40                      # dB
    with torch.no_grad():
        feats = torch.cat([m.pooled(x), window_stats(x)], 1)
        torch.testing.assert_close(m(x), m.head(feats))
    s = window_stats(x)
    np.testing.assert_allclose(s[:, 96 * 3:].numpy(), np.percentile(x.numpy(), 90, axis=2), rtol=1e-5, atol=1e-4)


def test_checkpoint_round_trip(tmp_path):
    m = build_model(_cfg()).eval()
    with torch.no_grad():
        m.output.bias.fill_(0.5)
        m.out_std.fill_(2.0)
    save_checkpoint(tmp_path / "m.pt", m, {"note": 1})
    m2, extra = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 96, 187) * 10 - 40
    with torch.no_grad():
        torch.testing.assert_close(m(x), m2(x))
    assert extra["note"] == 1 and isinstance(m2, MusicnnRegressor)


@pytest.fixture(scope="module")
def musicnn_ws(built_ws, tmp_path_factory):
    from audiovis.config import TrainConfig
    from audiovis.train import train
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path_factory.mktemp("mnn") / "ws"))
    out = train(ws, TrainConfig(preset="musicnn", epochs=4, batch_size=16), force=True, progress=False)
    return ws, out


def test_musicnn_preset_trains_only_the_head_from_the_cache(musicnn_ws):
    from audiovis.train import load_model
    ws, out = musicnn_ws
    assert out["preset"] == "musicnn" and out["epochs_run"] >= 1
    assert (ws.features_dir / "musicnn_msd.npy").exists()
    model, extra = load_model(ws)
    ref = load_musicnn("msd").state_dict()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref.items())
    assert extra["summary"]["readout_lambda"] is not None


def test_evaluation_has_the_pretrained_row_and_the_cached_path_is_the_model(musicnn_ws):
    from audiovis.evaluate import evaluate
    from audiovis.factors import load_factors
    from audiovis.features import FeatureStore
    from audiovis.metrics import cold_start_metrics
    from audiovis.train import load_model, predict_songs
    ws, _ = musicnn_ws
    res = evaluate(ws, force=True, progress=False)
    m = res["models"]
    assert "pretrained_ridge" in m and res["preset"] == "musicnn"
    assert res["cnn_minus_pretrained_ridge_auc"] == pytest.approx(m["cnn"]["auc"] - m["pretrained_ridge"]["auc"])
    store, fac = FeatureStore(ws), load_factors(ws)
    te = np.flatnonzero((fac["split"] == "test") & store.has_windows())
    P = (ws.play_matrix().tocsc()[:, te] > 0).toarray()
    full = cold_start_metrics(fac["user_factors"], predict_songs(load_model(ws)[0], store, te), P)
    assert full["auc"] == pytest.approx(m["cnn"]["auc"], abs=2e-3)     # the whole network, not the cache


def test_index_of_a_frozen_model_equals_running_the_whole_network(musicnn_ws):
    from audiovis.features import FeatureStore
    from audiovis.index import window_activations
    from audiovis.models.frozen import FrozenWindows
    from audiovis.train import load_model
    ws, _ = musicnn_ws
    model, _ = load_model(ws)
    store = FeatureStore(ws)
    layers = layer_sizes(model)
    widx = np.arange(min(12, len(store.windows)))
    A, P, kept = FrozenWindows(ws, store, model, layers, False).activations(widx)
    A2, P2 = window_activations(model, torch.from_numpy(store.batch(widx)), layers,
                                store.cfg.hop_length / store.cfg.sr)
    assert kept.all()
    np.testing.assert_allclose(A, A2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(P, P2, atol=1e-6)


def test_a_front_end_that_is_not_musicnns_is_refused(built_ws, tmp_path):
    from audiovis.config import FeatureConfig, TrainConfig
    from audiovis.engines import featurize
    from audiovis.errors import ParameterError
    from audiovis.train import train
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    featurize(ws, FeatureConfig(sr=22050, n_fft=1024, hop_length=512, n_mels=128), n_jobs=1, force=True,
              progress=False)
    with pytest.raises(ParameterError, match="musicnn needs the workspace's features at musicnn's settings"):
        train(ws, TrainConfig(preset="musicnn", epochs=1), force=True, progress=False)


def test_fine_tuning_changes_the_pretrained_layers(built_ws, tmp_path):
    from audiovis.config import TrainConfig
    from audiovis.train import load_model, train
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    out = train(ws, TrainConfig(preset="musicnn-tune", epochs=1, steps_per_epoch=2, batch_size=4, num_threads=1),
                force=True, progress=False)
    model, _ = load_model(ws)
    assert out["preset"] == "musicnn-tune" and not model.cfg.frozen
    ref = load_musicnn("msd").state_dict()
    assert not torch.equal(model.state_dict()["timbral.conv74.weight"], ref["timbral.conv74.weight"])
    assert model.feat_std.abs().sum() > 0 and torch.isfinite(model.feat_mean).all()


@pytest.mark.slow
def test_the_rest_of_the_pipeline_works_on_it(musicnn_ws, corpus, tmp_path, capsys):
    """Index, dreams, auralisation, backward queries, counterfactuals, the dictionary and the listeners run on a
    content model whose front end is musicnn, through the CLI, unchanged."""
    from audiovis.cli import main
    from audiovis.index import UnitIndex
    ws, _ = musicnn_ws
    w = str(ws.path)
    assert main(["index", "-w", w, "-k", "3"]) == 0
    ix = UnitIndex(ws)
    assert list(ix.layers)[:7] == ["timbral", "temporal", "cnn1", "cnn2", "cnn3", "penultimate", "tags"]
    assert ix.top("tags:rock", n=2) == ix.top("tags:0", n=2) and len(ix.top("timbral:3", n=2)) == 2
    sid = ix.top("dense1:0", n=1)[0]["song_id"]
    assert main(["dream", "-w", w, "tags:rock", "--steps", "4", "--out", str(tmp_path / "d.wav")]) == 0
    assert main(["auralise", "-w", w, "cnn2:5", sid, "0", "--out", str(tmp_path / "a.wav")]) == 0
    assert main(["backward", "-w", w, "--factor", "0", "--steps", "4", "--out", str(tmp_path / "b.wav")]) == 0
    f = next(p for p in corpus["audio_dir"].iterdir() if p.suffix == ".wav")
    assert main(["recommend", "-w", w, str(f), "--ablate", "cnn3:1", "--json"]) == 0
    assert main(["dictionary", "-w", w, "--layer", "dense1", "--features", "16", "--epochs", "2"]) == 0
    assert main(["listeners", "-w", w, "-n", "3"]) == 0
    capsys.readouterr()


@pytest.fixture(scope="module")
def musicnn_indexed(musicnn_ws, tmp_path_factory):
    from audiovis.index import IndexConfig, build_index
    ws = Workspace(shutil.copytree(musicnn_ws[0].path, tmp_path_factory.mktemp("mnn_ix") / "ws"))
    build_index(ws, IndexConfig(k=4, batch_windows=16), progress=False)
    return ws


def test_the_page_shows_its_units_tags_and_taggram(monkeypatch, musicnn_indexed):
    from streamlit.testing.v1 import AppTest
    app = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "streamlit_app.py")
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(musicnn_indexed.path))

    def run(**qp):
        at = AppTest.from_file(app, default_timeout=120)
        at.query_params.update(qp)
        return at.run()

    at = run()
    assert not at.exception and any(t.value.startswith("Unit ") for t in at.title)
    at = run(view="unit", unit="tags:female vocalists", n="2")
    assert not at.exception and any(t.value.startswith("Unit tags:5 ") for t in at.title)   # with its name
    at = run(view="song")
    assert not at.exception and any("Taggram" in m.value for m in at.markdown)
    assert len(at.get("image")) >= 2                                      # the song picture and its taggram
    for view in ("layer", "visualise"):
        assert not run(view=view).exception, view
