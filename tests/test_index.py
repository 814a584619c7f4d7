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
