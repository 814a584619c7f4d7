import librosa
import numpy as np
import pytest

from audiovis.config import FeatureConfig
from audiovis.errors import ParameterError
from audiovis.features import FeatureStore, logmel
from audiovis.workspace import Workspace


def test_logmel_matches_librosa():
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(22050 * 2) * 0.1).astype(np.float32)
    ours = logmel(y)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512,
                                                             n_mels=128, pad_mode="constant"), ref=1.0,
                              top_db=None)
    assert ours.shape == ref.shape == (128, 1 + len(y) // 512)
    assert np.abs(ours - ref).max() < 0.05


def test_logmel_rejects_stereo():
    with pytest.raises(ParameterError, match=r"mono audio of shape \(n,\), got shape \(2, 10\)"):
        logmel(np.zeros((2, 10), np.float32))


def test_store_layout(built_ws, corpus):
    ws = Workspace(built_ws[0])
    store = FeatureStore(ws)
    cfg = FeatureConfig()
    assert store.logmel.dtype == np.float16 and store.logmel.shape[1] == 128
    assert store.n_songs == len(corpus["kinds"])
    # 7 s songs -> 302 frames -> 2 windows of 129 frames each
    assert store.n_frames(0) == 1 + 7 * 22050 // 512
    assert len(store.windows) == 2 * store.n_songs
    assert store.window(3).shape == (128, cfg.window_frames)
    np.testing.assert_array_equal(store.song_windows(1), [2, 3])


def test_featurize_resumes_and_reports_failures(corpus, tmp_path):
    from audiovis.catalog import ingest
    from audiovis.features import featurize
    import shutil
    audio = tmp_path / "audio"
    shutil.copytree(corpus["audio_dir"], audio)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, audio, corpus["plays"], progress=False)
    # corrupt one file after ingest validated its header: decoding fails at featurize and only that song is lost
    victim = sorted(audio.glob("*.wav"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:60])
    s = featurize(ws, n_jobs=1, progress=False)
    assert s["failed"] == 1 and s["songs"] == 29
    (rep,) = ws.report("featurize")
    assert rep[1] == victim.stem
    cache = ws.features_dir / "cache"
    n_cached = len(list(cache.glob("*.npy")))
    assert n_cached == 29
    # a rerun reuses cached songs: remove one cache file, rerun with force of the done marker only
    ws.clear_done("featurize")
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    (cache / "5.npy").unlink()
    featurize(ws, n_jobs=1, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    assert after.keys() == mtimes.keys()
    assert all(after[k] == mtimes[k] for k in after if k != "5.npy")


def test_featurize_works_when_main_module_file_is_gone(corpus, tmp_path, monkeypatch):
    """Streamlit's AppTest and some notebooks leave a ``__main__`` whose file no longer exists; spawned workers
    would die at start and a plain multiprocessing pool would hang. featurize must finish anyway."""
    import sys
    import types

    from audiovis.catalog import ingest
    from audiovis.features import featurize
    fake = types.ModuleType("__main__")
    fake.__file__ = str(tmp_path / "deleted_script.py")
    monkeypatch.setitem(sys.modules, "__main__", fake)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, corpus["audio_dir"], corpus["plays"], progress=False)
    s = featurize(ws, n_jobs=2, progress=False)
    assert s["songs"] == len(corpus["kinds"]) and s["failed"] == 0
