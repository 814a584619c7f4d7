import numpy as np
import pytest

from audiovis import index as index_mod
from audiovis.index import IndexConfig, UnitIndex, build_index
from audiovis.workspace import Workspace


def test_top_lists_match_brute_force(built_ws):
    ws = Workspace(built_ws[0])
    ix = UnitIndex(ws)
    A = np.asarray(ix.acts, dtype=np.float32)
    songs = ix.store.windows[:, 0]
    for unit in ("conv1:0", "conv3:5", "dense1:7", "output:2"):
        c = ix.column(unit)
        best_per_song = {}
        for w, s in enumerate(songs):
            if s not in best_per_song or A[w, c] > A[best_per_song[s], c]:
                best_per_song[s] = w
        expect = sorted(best_per_song.values(), key=lambda w: -A[w, c])[:5]
        got = [t["window"] for t in ix.top(unit, n=5)]
        np.testing.assert_allclose(A[got, c], A[expect, c], rtol=1e-3)
        assert len({t["song_id"] for t in ix.top(unit, n=5)}) == 5  # one clip per song
        bot = ix.top(unit, n=5, bottom=True)
        assert bot[0]["activation"] <= ix.top(unit, n=1)[0]["activation"]
        t = ix.top(unit, n=1)[0]
        assert t["start_s"] <= t["peak_s"] <= t["end_s"]


def test_stats(built_ws):
    ix = UnitIndex(Workspace(built_ws[0]))
    A = np.asarray(ix.acts, dtype=np.float32)
    st = ix.stats("conv2:3")
    c = ix.column("conv2:3")
    assert np.isclose(st["mean"], A[:, c].mean(), atol=1e-2)
    assert sum(st["hist"]) == len(A)
    assert 0 <= st["sparsity"] <= 1
    assert len(ix.table("conv1")) == 64
    assert np.isfinite(ix.song_factors).all()


def test_index_resumes_after_a_crash_and_equals_uninterrupted(built_ws, tmp_path, monkeypatch):
    import shutil
    src = Workspace(built_ws[0])
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(src.path, ws.path)
    cfg = IndexConfig(k=5, batch_windows=8, checkpoint_every=1)
    ws.clear_done("index")
    shutil.rmtree(ws.index_dir)
    real = index_mod.window_activations
    calls = {"n": 0}

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(index_mod, "window_activations", crashing)
    with pytest.raises(KeyboardInterrupt):
        build_index(ws, cfg, progress=False)
    assert (ws.index_dir / "state.partial.npz").exists() and not (ws.index_dir / "units.npz").exists()
    monkeypatch.setattr(index_mod, "window_activations", real)
    build_index(ws, cfg, progress=False)
    ref = Workspace(tmp_path / "ref")
    shutil.copytree(src.path, ref.path)
    ref.clear_done("index")
    shutil.rmtree(ref.index_dir)
    build_index(ref, cfg, progress=False)
    a, b = np.load(ws.index_dir / "units.npz"), np.load(ref.index_dir / "units.npz")
    np.testing.assert_array_equal(a["top_w"], b["top_w"])
    np.testing.assert_array_equal(a["bot_w"], b["bot_w"])
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-6)
    np.testing.assert_array_equal(np.load(ws.index_dir / "acts.npy"), np.load(ref.index_dir / "acts.npy"))
    assert not list(ws.index_dir.glob("*.partial.*"))


def test_readers_take_a_path_or_a_workspace(built_ws):
    """UnitIndex, FeatureStore and ColdStart open a workspace from its path or a Workspace alike."""
    from audiovis.coldstart import ColdStart
    from audiovis.features import FeatureStore
    path = built_ws[0]
    a, b = UnitIndex(path), UnitIndex(Workspace(path))
    assert a.ws.path == b.ws.path and a.layers == b.layers and a.n_units == b.n_units
    np.testing.assert_array_equal(FeatureStore(str(path)).offsets, FeatureStore(Workspace(path)).offsets)
    assert ColdStart(path).ws.path == Workspace(path).path


def test_merge_unit_data_is_the_build_reduction():
    """Folding songs into finished index arrays gives the lists and statistics of one build over all of them."""
    rng = np.random.default_rng(1)
    U, k = 5, 3
    A = rng.standard_normal((30, U)).astype(np.float32)
    P = rng.random((30, U)).astype(np.float32)
    songs = np.repeat(np.arange(6), 5)
    whole = index_mod.new_unit_state(U, k)
    index_mod.reduce_batch(whole, A, P, np.arange(30), songs, k)
    old = index_mod.new_unit_state(U, k)
    index_mod.reduce_batch(old, A[:20], P[:20], np.arange(20), songs[:20], k)
    d = {**{key: old[key] for key in ("top_v", "top_w", "top_p", "bot_v", "bot_w", "bot_p", "vmin", "vmax")},
         **index_mod.unit_statistics(old, 20), "hist": np.zeros((U, index_mod.N_BINS), np.int64)}
    merged = index_mod.merge_unit_data(d, 20, A[20:], P[20:], np.arange(20, 30), songs[20:], k)
    for key in ("top_w", "bot_w", "top_v", "bot_v"):
        np.testing.assert_array_equal(merged[key], whole[key])
    for key, v in index_mod.unit_statistics(whole, 30).items():
        np.testing.assert_allclose(merged[key], v, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(merged["vmin"], d["vmin"])                # histogram edges kept
    np.testing.assert_array_equal(merged["vmax_all"], whole["vmax"])
    assert merged["hist"].sum(1).tolist() == [10] * U
