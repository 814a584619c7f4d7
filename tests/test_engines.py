"""The Ray engine gives the same workspace artifacts as the local one (skipped only where Ray is missing)."""
import json
import shutil

import numpy as np
import pytest

from audiovis import engines
from audiovis.errors import AudiovisError, ParameterError
from audiovis.index import IndexConfig, UnitIndex, merge_states, new_unit_state, reduce_batch
from audiovis.workspace import Workspace

ray = pytest.importorskip("ray", reason="the ray engine is optional: pip install 'audiovis[ray]'")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module: 2 logical CPUs (one model actor + one read task), no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture()
def ws_copy(built_ws, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    return Workspace(dst)


def _units(ws):
    with np.load(ws.index_dir / "units.npz") as z:
        return {k: z[k] for k in z.files}


def test_merge_state_is_order_free():
    rng = np.random.default_rng(0)
    U, k = 7, 3
    A = rng.standard_normal((40, U)).astype(np.float32)
    P = rng.random((40, U)).astype(np.float32)
    songs = np.repeat(np.arange(10), 4)
    whole = new_unit_state(U, k)
    reduce_batch(whole, A, P, np.arange(40), songs, k)
    parts = []
    for lo, hi in ((0, 12), (12, 20), (20, 40)):       # song-aligned batches
        s = new_unit_state(U, k)
        reduce_batch(s, A[lo:hi], P[lo:hi], np.arange(lo, hi), songs[lo:hi], k)
        parts.append(s)
    for merged in (merge_states(merge_states(parts[0], parts[1], k), parts[2], k),
                   merge_states(parts[2], merge_states(parts[1], parts[0], k), k)):
        for key in ("top_w", "bot_w", "top_v", "silent", "vmin", "vmax"):
            np.testing.assert_array_equal(merged[key], whole[key])
        np.testing.assert_allclose(merged["sumsq"], whole["sumsq"], rtol=1e-12)
    assert len(set(whole["top_w"][0] // 4)) == k       # one window per song


def test_unknown_engine_is_named(built_ws):
    with pytest.raises(ParameterError, match="engine must be one of local, ray, got 'spark'"):
        engines.build_index(built_ws[0], engine="spark")


@pytest.mark.slow
def test_ray_index_equals_local(ray_cluster, ws_copy, monkeypatch):
    from audiovis.engines import ray as ray_engine
    monkeypatch.setattr(ray_engine, "_BATCHES_PER_TASK", 2)      # many actor calls: the distributed combine
    cfg = IndexConfig(k=5, batch_windows=16)
    local = _units(ws_copy)                                      # built by the local engine (same config)
    local_acts = np.load(ws_copy.index_dir / "acts.npy")
    local_pred = np.load(ws_copy.index_dir / "song_factors_pred.npy")
    info = {}
    summary = engines.build_index(ws_copy, cfg, engine="ray", force=True, progress=False, workers=1, stats=info)
    assert summary["windows"] == len(local_acts) and info["actors"] == 1
    # work per actor call is bounded (not a share of the catalogue): what keeps a worker's memory flat
    assert info["calls"] >= -(-info["batches"] // 2) and info["calls"] > 1
    assert 0 < info["max_actor_rss_mb"] and info["max_actor_file_mb"] >= 0
    got = _units(ws_copy)
    for key in ("top_w", "bot_w", "hist"):
        np.testing.assert_array_equal(got[key], local[key], err_msg=key)
    for key in ("top_v", "bot_v", "top_p", "bot_p", "vmin", "vmax", "sparsity"):
        np.testing.assert_allclose(got[key], local[key], rtol=1e-5, atol=1e-5, err_msg=key)
    for key in ("mean", "std", "strength", "selectivity"):
        np.testing.assert_allclose(got[key], local[key], rtol=1e-4, atol=1e-4, err_msg=key)
    np.testing.assert_allclose(np.load(ws_copy.index_dir / "acts.npy").astype(np.float32),
                               local_acts.astype(np.float32), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.load(ws_copy.index_dir / "song_factors_pred.npy"), local_pred, rtol=1e-5,
                               atol=1e-6)
    assert not list(ws_copy.index_dir.glob("*.partial.npy"))
    ix = UnitIndex(ws_copy)                                      # the page reads it as before
    assert len(ix.top("conv2:3", n=5)) == 5
    assert json.loads((ws_copy.index_dir / "layers.json").read_text())["n_windows"] == summary["windows"]


@pytest.mark.slow
def test_ray_featurize_equals_local(ray_cluster, ws_copy):
    before = {n: np.load(ws_copy.features_dir / n) for n in ("logmel.npy", "offsets.npy", "windows.npy")}
    shutil.rmtree(ws_copy.features_dir / "cache")
    summary = engines.featurize(ws_copy, engine="ray", force=True, progress=False)
    assert summary["failed"] == 0 and summary["songs"] == len(before["offsets.npy"]) - 1
    for n in ("offsets.npy", "windows.npy"):
        np.testing.assert_array_equal(np.load(ws_copy.features_dir / n), before[n], err_msg=n)
    # BLAS thread counts differ (1 per Ray task): a few values may round to the neighbouring float16
    got = np.load(ws_copy.features_dir / "logmel.npy").astype(np.float32)
    np.testing.assert_allclose(got, before["logmel.npy"].astype(np.float32), rtol=2e-3, atol=1e-2)
    assert (got != before["logmel.npy"]).mean() < 1e-3


@pytest.mark.slow
def test_ray_embed_equals_local(ray_cluster, built_ws, corpus, tmp_path):
    files = sorted(corpus["audio_dir"].iterdir())[:3]
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    local, lfail = engines.embed(built_ws[0], files + [bad])
    got, gfail = engines.embed(built_ws[0], files + [bad], engine="ray", workers=1)
    assert [e.song_id for e in got] == [e.song_id for e in local] == [f.stem for f in files]
    for a, b in zip(got, local):
        np.testing.assert_allclose(a.factors, b.factors, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.window_starts, b.window_starts)
        assert (a.duration, a.sr, a.channels) == (b.duration, b.sr, b.channels)
    assert [f["reason"] for f in gfail] == [f["reason"] for f in lfail] and "not_audio.wav" in gfail[0]["reason"]


def test_missing_ray_is_explained(monkeypatch, built_ws):
    from audiovis.engines import ray as ray_engine
    monkeypatch.setattr(ray_engine, "have_ray", lambda: False)
    with pytest.raises(AudiovisError, match=r"pip install 'audiovis\[ray\]'"):
        engines.build_index(built_ws[0], engine="ray")


@pytest.mark.slow
def test_ray_index_of_a_musicnn_model_equals_local(ray_cluster, ws_copy):
    """The Ray engine runs the whole network per window (it does not read the frozen front end's cache): the same
    units as the local index, which reads the cache."""
    from audiovis.config import TrainConfig
    from audiovis.train import train
    train(ws_copy, TrainConfig(preset="musicnn", epochs=3, batch_size=16), force=True, progress=False)
    cfg = IndexConfig(k=4, batch_windows=16)
    engines.build_index(ws_copy, cfg, force=True, progress=False)
    local = _units(ws_copy)
    (ws_copy.index_dir / "unit_names.json").unlink()
    engines.build_index(ws_copy, cfg, engine="ray", force=True, progress=False, workers=1)
    got = _units(ws_copy)
    assert got["top_v"].shape == local["top_v"].shape
    np.testing.assert_allclose(got["top_v"], local["top_v"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got["mean"], local["mean"], rtol=1e-3, atol=1e-3)
    assert len(UnitIndex(ws_copy).top("tags:rock", n=3)) == 3
