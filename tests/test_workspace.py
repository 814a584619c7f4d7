"""Temporaries of killed atomic writes: removed once stale, never while a live writer holds them (no audio)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from audiovis.workspace import STALE_TEMP_AGE_S, Workspace, atomic_path, clean_stale_temps, save_npy


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _leftover(folder, name: str):
    """What ``kill -9`` in the middle of ``atomic_path(folder / name)`` leaves: ``.NAME.XXXXXXXX.SUFFIX``."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f".{name}.k1ll3d_x{os.path.splitext(name)[1] or '.tmp'}"
    p.write_bytes(b"\x93NUMPY half-written")
    return p


@pytest.fixture
def ws(tmp_path):
    w = Workspace(tmp_path / "ws")
    assert w.db is not None                               # creates the folder and catalog.sqlite
    return w


def test_stale_temporaries_are_removed_fresh_and_locked_ones_kept(ws):
    old = 2 * STALE_TEMP_AGE_S
    stale = [_leftover(ws.path, "model.pt"), _leftover(ws.features_dir, "logmel.npy"),
             _leftover(ws.features_dir / "cache", "7.npy"), _leftover(ws.index_dir, "units.npz"),
             _leftover(ws.path / "uploads", "song.mp3")]
    trash = ws.features_dir / ".cache.abcd1234.trash"     # a cache folder featurize --force was deleting
    (trash / "sub").mkdir(parents=True)
    (trash / "3.npy").write_bytes(b"x")
    fresh = _leftover(ws.features_dir / "cache", "8.npy")
    # not ours: other hidden files, artifacts themselves, names that only look alike
    others = [ws.path / ".notes.txt", ws.features_dir / "offsets.npy", ws.path / ".add_journal",
              ws.features_dir / ".logmel.npy.short.npy", ws.path / "audio" / ".song.abcd1234.mp3"]
    for p in others:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"keep")
    for p in stale + others + [trash]:
        _age(p, old)
    with atomic_path(ws.index_dir / "acts.npy") as live:  # a live writer, for longer than the age limit
        live.write_bytes(b"being written")
        _age(live, old)
        removed = ws.clean_stale_temps()
        assert live.exists()
        live.write_bytes(np.arange(3).tobytes())
    assert (ws.index_dir / "acts.npy").read_bytes() == np.arange(3).tobytes()   # its rename still works
    assert sorted(removed) == sorted(stale + [trash])
    assert not any(p.exists() for p in stale + [trash])
    assert fresh.exists() and all(p.exists() for p in others)


def test_a_stage_start_cleans_once_per_process(ws):
    p = _leftover(ws.features_dir / "cache", "3.npy")
    _age(p, 2 * STALE_TEMP_AGE_S)
    ws.require()                                          # every stage calls require() first
    assert not p.exists()
    q = _leftover(ws.features_dir / "cache", "4.npy")
    _age(q, 2 * STALE_TEMP_AGE_S)
    Workspace(ws.path).require()                          # already cleaned by this process: not scanned again
    assert q.exists()
    assert clean_stale_temps(ws.path, min_age_s=0) == [q]


def test_atomic_writes_leave_nothing_behind(ws):
    save_npy(ws.features_dir / "a.npy", np.zeros(3))
    with pytest.raises(RuntimeError), atomic_path(ws.features_dir / "b.npy") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in ws.features_dir.iterdir()) == ["a.npy"]
    assert clean_stale_temps(ws.path, min_age_s=0) == []


def test_workspace_is_storage_and_knows_nothing_of_cold_start():
    """``audiovis.workspace`` imports no cold start (its ``embed/recommend/add`` once did, which tied ten modules
    into one import cycle); importing it, and the package, loads only storage, configs and errors."""
    code = ("import sys, audiovis.workspace as w; "
            "loaded = sorted(m for m in sys.modules if m == 'audiovis' or m.startswith('audiovis.')); "
            "assert 'audiovis.coldstart' not in sys.modules, loaded; "
            "assert set(loaded) <= {'audiovis', 'audiovis.config', 'audiovis.errors', 'audiovis.workspace'}, loaded; "
            "assert 'torch' not in sys.modules; "
            "assert not any(hasattr(w.Workspace, n) for n in ('embed', 'recommend', 'add'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_artifacts_are_written_with_the_umask_not_0600(ws):
    save_npy(ws.path / "a.npy", np.zeros(3))
    umask = os.umask(0)
    os.umask(umask)
    assert (ws.path / "a.npy").stat().st_mode & 0o777 == 0o666 & ~umask   # readable by a team sharing it


def test_done_marker_records_its_outputs_and_says_why_a_stage_reruns(ws, capsys):
    from audiovis.workspace import FINGERPRINT_SAMPLE, fingerprint
    big = ws.path / "index" / "acts.npy"
    big.parent.mkdir()
    big.write_bytes(bytes(range(256)) * (3 * FINGERPRINT_SAMPLE // 256))
    ws.mark_done("index", {"config": {"k": 5}}, outputs=["index/acts.npy", "index/absent.json"])
    done = ws.get_meta("done:index")
    assert done["outputs"] == {"index/acts.npy": fingerprint(big)}      # what exists is recorded
    assert ws.finished("index", ["index/acts.npy"], config={"k": 5}) == done
    assert ws.finished("index", config={"k": 6}) is None
    assert capsys.readouterr().err == "audiovis: index: running again: its config changed\n"
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 1                   # the middle: not sampled, the size is the same
    big.write_bytes(bytes(data))
    assert ws.finished("index", config={"k": 5}) == done                # sampled: head and tail only
    data[-1] ^= 1
    big.write_bytes(bytes(data))
    assert ws.finished("index", config={"k": 5}) is None
    assert "output index/acts.npy is not the file the stage wrote" in capsys.readouterr().err
    ws.require("index")                         # readers check that the files are there, not their bytes
    big.unlink()
    with pytest.raises(Exception, match="the 'index' stage's output index/acts.npy is missing: run `audiovis index"):
        ws.require("index")


def test_a_workspace_that_cannot_be_written_is_read_read_only(ws, monkeypatch):
    """Where the tests run as root, file modes stop nothing: the code path is taken by what ``os.access`` says
    (tests/test_integrity.py mounts a read-only copy where it may)."""
    ws.set_meta("x", 1)
    ws.close()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    ro = Workspace(ws.path)
    assert not ro.writable
    assert ro.get_meta("x") == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.set_meta("x", 2)
    assert not list(ws.path.glob(".audiovis.lock"))


def test_a_read_only_process_reads_every_workspace_read_only(ws, monkeypatch):
    """`audiovis serve` without --allow-writes sets AUDIOVIS_READ_ONLY=1 for the page: a writable workspace is
    then read as if it were on a read-only mount."""
    from audiovis.workspace import READ_ONLY_ENV
    ws.set_meta("x", 1)
    ws.close()
    monkeypatch.setenv(READ_ONLY_ENV, "1")
    ro = Workspace(ws.path)
    assert not ro.writable
    assert ro.get_meta("x") == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.set_meta("x", 2)
    ro.close()
    monkeypatch.setenv(READ_ONLY_ENV, "0")
    assert Workspace(ws.path).writable
