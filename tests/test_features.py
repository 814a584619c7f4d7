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
    assert store.logmel.dtype == np.float16 and store.logmel.shape[1] == cfg.n_mels == 96
    assert store.n_songs == len(corpus["kinds"])
    # 7 s songs at 16 kHz, hop 256 -> 438 frames -> 2 windows of 187 frames each (musicnn's patches)
    assert cfg.window_frames == 187
    assert store.n_frames(0) == 1 + 7 * 16000 // 256
    assert len(store.windows) == 2 * store.n_songs
    assert store.window(3).shape == (96, cfg.window_frames)
    np.testing.assert_array_equal(store.song_windows(1), [2, 3])


def test_featurize_resumes_and_reports_failures(corpus, tmp_path):
    import shutil

    from audiovis.catalog import ingest
    from audiovis.features import featurize
    audio = tmp_path / "audio"
    shutil.copytree(corpus["audio_dir"], audio)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, audio, corpus["plays"], progress=False)
    # corrupt one file after ingest validated its header: decoding fails at featurize and only that song is lost
    victim = sorted(audio.glob("*.wav"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:60])
    s = featurize(ws, progress=False)
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
    featurize(ws, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    assert after.keys() == mtimes.keys()
    assert all(after[k] == mtimes[k] for k in after if k != "5.npy")


def _spy_pool(monkeypatch) -> list[list]:
    """Record what each run of the local engine's pool (``run_shared``) yielded: one list of results per run."""
    from audiovis.engines import local
    calls: list[list] = []
    real = local.run_shared

    def spy(*a):
        calls.append([])
        for r in real(*a):
            calls[-1].append(r)
            yield r

    monkeypatch.setattr(local, "run_shared", spy)
    return calls


@pytest.mark.parametrize("main_file", ["gone", "fails"])
def test_featurize_workers_do_not_rerun_main(corpus, tmp_path, monkeypatch, recwarn, main_file):
    """Spawned workers must not re-run the parent's ``__main__``: Streamlit's AppTest leaves a generated script
    as ``__main__`` that fails outside its host ("fails"; it raised NameError in every worker and featurize fell
    back to one process), and some notebooks leave one whose file is gone ("gone")."""
    import importlib.machinery
    import sys
    import types

    from audiovis.catalog import ingest
    from audiovis.engines import local
    fake = types.ModuleType("__main__")
    fake.__file__ = str(tmp_path / "script.py")
    spec = importlib.machinery.ModuleSpec("no_such_main_module", None)    # spawn would import it by name
    fake.__spec__ = spec
    if main_file == "fails":
        (tmp_path / "script.py").write_text("raise SystemExit('the parent script was re-run in a worker')\n")
    monkeypatch.setitem(sys.modules, "__main__", fake)
    calls = _spy_pool(monkeypatch)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, corpus["audio_dir"], corpus["plays"], progress=False)
    s = local.featurize(ws, n_jobs=2, progress=False)
    assert s["songs"] == len(corpus["kinds"]) and s["failed"] == 0
    assert len(calls) == 1 and len(calls[0]) == len(corpus["kinds"])    # the pool finished every song
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning) and "worker" in str(w.message)]
    assert sys.modules["__main__"] is fake and fake.__file__ == str(tmp_path / "script.py")    # restored
    assert fake.__spec__ is spec


def _truncate_wav(path, keep_s: float, sr: int = 22050) -> None:
    """Cut a 16-bit mono WAV after ``keep_s`` seconds of samples, as an interrupted copy does (the header
    still says the whole length)."""
    data = path.read_bytes()
    path.write_bytes(data[:44 + int(keep_s * sr) * 2])


def test_truncated_file_is_kept_with_a_warning_in_the_report(corpus, tmp_path):
    import shutil

    from audiovis.catalog import ingest
    from audiovis.features import featurize, featurize_one
    audio = tmp_path / "audio"
    shutil.copytree(corpus["audio_dir"], audio)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, audio, corpus["plays"], progress=False)
    victim = audio / "song000.wav"                 # 7 s, mono, 22,050 Hz, PCM_16
    _truncate_wav(victim, 4.0)
    s = featurize(ws, progress=False)
    assert s["failed"] == 0 and s["warnings"] == 1 and s["songs"] == len(corpus["kinds"])
    expected = ("featurize", "song000",
                f"'{victim.resolve()}': decoded 4.0 s of 7.0 s (file truncated?); kept the decoded part")
    assert ws.report("featurize") == [expected]
    idx = ws.song_index("song000")
    c = FeatureStore(ws).cfg
    assert FeatureStore(ws).n_frames(idx) == 1 + 4 * c.sr // c.hop_length   # the decoded part, featurized
    assert {r["song_id"]: r["status"] for r in ws.songs()}["song000"] == "ok"
    # a resumed run reuses the cached song and still reports the warning
    ws.clear_done("featurize")
    featurize(ws, progress=False)
    assert ws.report("featurize") == [expected]

    # a runner of audiovis.engines (e.g. Ray's) calls featurize_one and yields (idx, err): same report
    def runner(todo):
        for item in todo:
            yield featurize_one(item)

    s = featurize(ws, force=True, progress=False, runner=runner)
    assert s["warnings"] == 1 and ws.report("featurize") == [expected]
    # the file is replaced by a whole one: the warning goes with the recomputed song
    shutil.copy(corpus["audio_dir"] / "song000.wav", victim)
    (ws.features_dir / "cache" / f"{idx}.npy").unlink()
    ws.clear_done("featurize")
    s = featurize(ws, progress=False)
    assert s["warnings"] == 0 and ws.report("featurize") == []


def test_pool_and_serial_give_the_same_features(corpus, tmp_path, monkeypatch, recwarn):
    from audiovis.catalog import ingest
    from audiovis.engines import local
    calls = _spy_pool(monkeypatch)
    out = {}
    for n_jobs in (1, 2):
        ws = Workspace(tmp_path / f"ws{n_jobs}")
        ingest(ws, corpus["audio_dir"], corpus["plays"], progress=False)
        s = local.featurize(ws, n_jobs=n_jobs, progress=False)
        assert s["songs"] == len(corpus["kinds"]) and s["failed"] == 0
        out[n_jobs] = ws
    assert len(calls) == 1 and len(calls[0]) == len(corpus["kinds"])   # n_jobs=2: this process and a worker
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning) and "worker" in str(w.message)]
    for name in ("logmel.npy", "offsets.npy", "windows.npy"):
        np.testing.assert_array_equal(np.load(out[1].features_dir / name), np.load(out[2].features_dir / name))
    # --force recomputes everything into a fresh cache folder; the old one is deleted, nothing is left behind
    before = {p.name: p.stat().st_mtime_ns for p in (out[2].features_dir / "cache").glob("*.npy")}
    local.featurize(out[2], n_jobs=2, force=True, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out[2].features_dir / "cache").glob("*.npy")}
    assert after.keys() == before.keys() and min(after.values()) > max(before.values())
    assert sorted(p.name for p in out[2].features_dir.iterdir()) == \
        ["cache", "config.json", "logmel.npy", "offsets.npy", "windows.npy"]
    np.testing.assert_array_equal(np.load(out[1].features_dir / "logmel.npy"),
                                  np.load(out[2].features_dir / "logmel.npy", mmap_mode="r"))


def test_pool_that_cannot_start_falls_back_to_this_process(corpus, tmp_path, monkeypatch):
    """No process can be spawned (a sandbox, a resource limit): featurize warns and does every song itself."""
    import concurrent.futures

    from audiovis.catalog import ingest
    from audiovis.engines import local

    class NoPool:
        def __init__(self, *a, **k):
            raise OSError("cannot spawn")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoPool)
    calls = _spy_pool(monkeypatch)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, corpus["audio_dir"], corpus["plays"], progress=False)
    with pytest.warns(RuntimeWarning, match="worker processes failed .*cannot spawn.*continuing in this process"):
        s = local.featurize(ws, n_jobs=4, progress=False)
    assert s["songs"] == len(corpus["kinds"]) and s["failed"] == 0
    assert calls == [[]]                                  # the pool was tried and finished nothing


def test_features_runs_no_pool():
    """features is the per-song work and the consolidation; the pool is the local engine's (no import cycle)."""
    import ast
    import inspect

    from audiovis import features
    from audiovis.engines import local
    tree = ast.parse(inspect.getsource(features))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if "engines" in m or "multiprocessing" in m or "concurrent" in m]
    assert local.features is features and callable(features.worker_init) and callable(features.featurize_one)
