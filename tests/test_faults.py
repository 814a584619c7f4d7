"""kill -9 in the middle of featurize, train and index, then rerun: the stage resumes and ends where an
uninterrupted run ends.

Each stage runs in a subprocess (a small driver that slows the stage down with a sleep per song, epoch or batch,
so the kill lands mid-stage on any machine); the test polls until partial progress is on disk (cache files,
``train_state.pt``, ``index/state.partial.npz``), kills the whole process group with SIGKILL, plants fake
leftovers of killed atomic writes (``.NAME.*`` temporaries) to check they are never taken for artifacts,
reruns the stage in this process and compares with an uninterrupted run.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import make_corpus

from audiovis.catalog import ingest
from audiovis.config import FactorConfig
from audiovis.factors import factorize
from audiovis.features import featurize
from audiovis.index import IndexConfig, UnitIndex, build_index
from audiovis.model import load_checkpoint
from audiovis.train import TrainConfig, train
from audiovis.workspace import Workspace

pytestmark = pytest.mark.slow        # each stage run in a subprocess, killed, resumed: ~30 s

TRAIN = TrainConfig(preset="auto", epochs=5, steps_per_epoch=4, batch_size=16, num_threads=1, patience=100)
INDEX = IndexConfig(k=4, batch_windows=8, checkpoint_every=1)

DRIVER = textwrap.dedent("""
    import sys, time
    import torch
    stage, ws = sys.argv[1], sys.argv[2]
    def slow(mod, name, s):
        real = getattr(mod, name)
        def f(*a, **k):
            time.sleep(s)
            return real(*a, **k)
        setattr(mod, name, f)
    if stage == "featurize":
        import audiovis.features as m
        slow(m, "song_logmel", 0.3)
        m.featurize(ws, progress=False)
    elif stage == "train":
        import audiovis.train as m
        slow(m, "predict_windows", 0.5)
        m.train(ws, m.TrainConfig(**eval(sys.argv[3])), progress=False)
    else:
        import audiovis.index as m
        slow(m, "window_activations", 0.2)
        m.build_index(ws, m.IndexConfig(**eval(sys.argv[3])), progress=False)
""")


def _run_and_kill(stage: str, ws: Workspace, ready, extra: str = "", timeout: float = 120.0) -> None:
    """Start the stage in a subprocess, wait until ``ready()``, then SIGKILL its whole process group."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, stage, str(ws.path), extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{stage} ended before it was killed: {proc.stdout.read().decode()[-2000:]}")
            if time.time() - t0 > timeout:
                pytest.fail(f"{stage} made no progress within {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _copy(src: Workspace, dst) -> Workspace:
    shutil.copytree(src.path, dst)
    return Workspace(dst)


def _plant_leftovers(folder, name: str) -> list:
    """What a killed atomic write of ``name`` leaves: a hidden temporary with garbage in it."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f".{name}.k1ll3d{os.path.splitext(name)[1] or '.tmp'}"
    p.write_bytes(b"\x93NUMPY half-written garbage" * 10)
    return [p]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """An ingested+factorized workspace, and references: featurized, trained and indexed without a fault."""
    root = tmp_path_factory.mktemp("faults")
    c = make_corpus(root / "corpus", n_songs=18, n_users=40, seconds=7.0, seed=3)
    base = Workspace(root / "base")
    ingest(base, c["audio_dir"], c["plays"], progress=False)
    factorize(base, FactorConfig(factors=4, iterations=5, test_fraction=0.2), progress=False)
    feat = _copy(base, root / "feat")
    featurize(feat, progress=False)
    threads = torch.get_num_threads()
    trained = _copy(feat, root / "trained")
    try:
        train(trained, TRAIN, progress=False)
    finally:
        torch.set_num_threads(threads)
    indexed = _copy(trained, root / "indexed")
    build_index(indexed, INDEX, progress=False)
    return {"root": root, "base": base, "feat": feat, "trained": trained, "indexed": indexed}


def test_featurize_killed_then_resumed(stages, tmp_path):
    ws = _copy(stages["base"], tmp_path / "ws")
    cache = ws.features_dir / "cache"

    def cached():
        return [p for p in cache.glob("[0-9]*.npy")] if cache.exists() else []

    _run_and_kill("featurize", ws, lambda: len(cached()) >= 4)
    done_before = {p.name: p.stat().st_mtime_ns for p in cached()}
    n = ws.n_songs
    assert 4 <= len(done_before) < n
    assert ws.get_meta("done:featurize") is None and not (ws.features_dir / "logmel.npy").exists()
    junk = _plant_leftovers(cache, "7.npy") + _plant_leftovers(ws.features_dir, "logmel.npy")
    s = featurize(ws, progress=False)
    assert s["songs"] == n and s["failed"] == 0
    # finished songs were reused, not recomputed
    assert all(cache.joinpath(k).stat().st_mtime_ns == v for k, v in done_before.items())
    ref = stages["feat"].features_dir
    for name in ("logmel.npy", "offsets.npy", "windows.npy"):
        np.testing.assert_array_equal(np.load(ws.features_dir / name), np.load(ref / name))
    assert all(p.exists() for p in junk)        # leftovers are left alone and never read as features


def test_train_killed_then_resumed_gives_the_same_model(stages, tmp_path):
    ws = _copy(stages["feat"], tmp_path / "ws")
    state = ws.path / "train_state.pt"
    _run_and_kill("train", ws, state.exists, extra=repr(TRAIN.to_dict()))
    st = torch.load(state, weights_only=True)               # the state on disk is whole
    assert 0 <= st["epoch"] < TRAIN.epochs - 1
    assert not ws.model_path.exists() and ws.get_meta("done:train") is None
    _plant_leftovers(ws.path, "model.pt")
    _plant_leftovers(ws.path, "train_state.pt")
    threads = torch.get_num_threads()
    try:
        s = train(ws, TRAIN, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert s["epochs_run"] == TRAIN.epochs
    got, extra = load_checkpoint(ws.model_path)
    ref, ref_extra = load_checkpoint(stages["trained"].model_path)
    assert extra["history"] == ref_extra["history"]          # same losses, epoch by epoch
    for k, v in ref.state_dict().items():
        assert torch.equal(got.state_dict()[k], v), k        # bit-identical weights on the CPU
    assert not state.exists()


def test_index_killed_then_resumed_equals_uninterrupted(stages, tmp_path):
    ws = _copy(stages["trained"], tmp_path / "ws")
    state = ws.index_dir / "state.partial.npz"
    _run_and_kill("index", ws, state.exists, extra=repr(INDEX.to_dict()))
    z = np.load(state)                                       # the state on disk is whole
    assert 0 < int(z["next_song"]) < ws.n_songs
    assert not (ws.index_dir / "units.npz").exists() and not (ws.index_dir / "acts.npy").exists()
    _plant_leftovers(ws.index_dir, "units.npz")
    _plant_leftovers(ws.index_dir, "state.partial.npz")
    build_index(ws, INDEX, progress=False)
    ref = stages["indexed"].index_dir
    a, b = np.load(ws.index_dir / "units.npz"), np.load(ref / "units.npz")
    for key in ("top_w", "bot_w"):
        np.testing.assert_array_equal(a[key], b[key])        # same top-k windows of every unit
    for key in ("top_v", "mean", "std", "sparsity", "vmin", "vmax", "strength", "selectivity"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(a["hist"], b["hist"])
    np.testing.assert_array_equal(np.load(ws.index_dir / "acts.npy"), np.load(ref / "acts.npy"))
    assert not [p for p in ws.index_dir.glob("*.partial.*") if not p.name.startswith(".")]
    ix = UnitIndex(ws)                                       # the final artifacts load
    assert len(ix.top("conv2:0", n=4)) == 4


# --------------------------------------------------------------------------- kill -9 of the parent only
ORPHAN_DRIVER = textwrap.dedent("""
    import sys, time
    import audiovis.features as m
    from audiovis.engines import local
    ws, calls = sys.argv[1], sys.argv[2]
    real = m.song_logmel
    def slow(*a, **k):                  # only this process's songs are slow (the spawned worker's are not)
        out = real(*a, **k)
        with open(calls, "a") as f:
            f.write("1\\n")
        time.sleep(1.0)
        return out
    m.song_logmel = slow
    local.featurize(ws, n_jobs=2, progress=False)
""")


def _children(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_featurize_workers_die_with_their_parent(tmp_path):
    """kill -9 of `audiovis featurize` alone (not its process group): its spawned worker and multiprocessing's
    resource tracker must not outlive it (they did, blocked forever on the pool's queue)."""
    c = make_corpus(tmp_path / "corpus", n_songs=14, n_users=20, seconds=4.0, seed=5)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, c["audio_dir"], c["plays"], progress=False)
    cache, calls = ws.features_dir / "cache", tmp_path / "calls.txt"
    calls.write_text("")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_DRIVER, str(ws.path), str(calls)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    kids: list[int] = []
    try:
        t0 = time.time()
        while True:                 # until the worker has featurized a song: more cache files than own songs
            own = len(calls.read_text().split())
            done = len(list(cache.glob("[0-9]*.npy"))) if cache.exists() else 0
            if done > own:
                kids = _children(proc.pid)
                break
            if proc.poll() is not None:
                pytest.fail(f"featurize ended before it was killed: {proc.stdout.read().decode()[-2000:]}")
            if time.time() - t0 > 120:
                pytest.fail("the worker featurized nothing within 120 s")
            time.sleep(0.05)
        assert kids, "no child process to check"
        os.kill(proc.pid, signal.SIGKILL)                   # the parent only, as `kill -9 PID` does
        proc.wait(10)
        t_kill = time.time()
        while time.time() < t_kill + 5 and [k for k in kids if _alive(k)]:
            time.sleep(0.05)
        left = [k for k in kids if _alive(k)]
        cmd = {k: open(f"/proc/{k}/cmdline").read().replace("\0", " ")[:200] for k in left}
        assert not left, f"still running 5 s after the parent was killed: {cmd}"
    finally:
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(10)
        proc.stdout.close()
