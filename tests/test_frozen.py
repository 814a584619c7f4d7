"""The cache of a frozen network's per-window outputs: complete, resumable, recomputed when its inputs change."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from audiovis.features import FeatureStore
from audiovis.models.frozen import cached_windows, check_musicnn_features, mean_per_song
from audiovis.workspace import Workspace


def _fn(x):
    return torch.stack([x.mean(dim=(1, 2)), x.amax(dim=(1, 2))], dim=1)


def test_cache_is_written_once_and_resumes_after_a_kill(built_ws, tmp_path, monkeypatch):
    import audiovis.models.frozen as frozen
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    store = FeatureStore(ws)
    monkeypatch.setattr(frozen, "BLOCK", 16)
    want = _fn(torch.from_numpy(store.batch(np.arange(len(store.windows))))).numpy()
    calls = []

    def dies(x):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt                        # killed in the third block
        return _fn(x)

    with pytest.raises(KeyboardInterrupt):
        cached_windows(ws, store, "toy", dies, 2, {"net": "toy"}, progress=False, batch_size=16)
    assert (ws.features_dir / "toy.partial.npy").exists() and not (ws.features_dir / "toy.npy").exists()
    calls.clear()
    got = cached_windows(ws, store, "toy", dies, 2, {"net": "toy"}, progress=False, batch_size=16)
    assert sum(calls) == len(store.windows) - 32           # resumed after the two finished blocks
    np.testing.assert_allclose(got, want, rtol=1e-6)
    calls.clear()
    again = cached_windows(ws, store, "toy", dies, 2, {"net": "toy"}, progress=False)
    assert calls == [] and np.array_equal(again, got)     # complete: nothing recomputed
    cached_windows(ws, store, "toy", lambda x: _fn(x) * 0, 2, {"net": "other"}, progress=False)
    assert not np.asarray(np.load(ws.features_dir / "toy.npy")).any()   # another network: recomputed


def test_mean_per_song_averages_each_songs_windows(built_ws):
    store = FeatureStore(built_ws[0])
    rows = np.arange(len(store.windows), dtype=np.float64)[:, None]
    E = mean_per_song(store, rows)
    s = int(store.windows[0, 0])
    assert E[s, 0] == pytest.approx(rows[store.song_windows(s), 0].mean())
    sub = store.song_windows(s)[1:]                          # rows of some windows only
    assert mean_per_song(store, rows[sub], [s], windows=sub)[0, 0] == pytest.approx(rows[sub, 0].mean())


def test_musicnn_needs_its_own_front_end():
    from audiovis.config import FeatureConfig
    from audiovis.errors import ParameterError
    check_musicnn_features(FeatureConfig())
    with pytest.raises(ParameterError, match=r"musicnn needs the workspace's features at musicnn's settings .*"
                                             r"'sr': 22050.*audiovis featurize -w WS --force"):
        check_musicnn_features(FeatureConfig(sr=22050, n_fft=1024, hop_length=512, n_mels=128))
