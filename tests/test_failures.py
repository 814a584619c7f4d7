"""The command line's error boundary: which failures are known, what their line says, where the log goes."""
from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from audiovis import failures
from audiovis.errors import ParameterError


@pytest.fixture
def ws(tmp_path):
    w = tmp_path / "ws"
    (w / "index").mkdir(parents=True)
    return w


def test_known_failures_name_the_file_and_the_repair(ws):
    d = failures.describe
    assert d(ParameterError("k must be >= 1, got 0"), ws) == "k must be >= 1, got 0"
    assert d(OSError(errno.ENOSPC, "No space left on device", str(ws / "features" / "x.npy")), ws) == (
        f"the disk is full (writing '{ws}/features/x.npy'): free some space, then run the same command again; "
        f"finished work is kept, nothing half-written is used")
    assert d(OSError("42048 requested and 1984 written"), ws).startswith("the disk is full")     # numpy's
    assert d(PermissionError(errno.EACCES, "Permission denied", str(ws / "model.pt")), ws) == (
        f"'{ws}/model.pt' cannot be accessed (permission denied): a command that changes the workspace needs "
        f"write access (check, serve, report, recommend, embed, export and attribute only read)")
    assert d(PermissionError(errno.EACCES, "Permission denied", "/proc/out/why"), ws) == (     # e.g. --out
        "'/proc/out/why' cannot be accessed (permission denied): it is outside the workspace (an --out folder, "
        "an input file); give one you may read and write")
    assert d(FileNotFoundError(errno.ENOENT, "No such file", str(ws / "index" / "units.npz")), ws) == (
        f"'{ws}/index/units.npz' is missing: rebuild it with `audiovis index -w {ws}`")
    assert d(FileNotFoundError(errno.ENOENT, "No such file", str(ws / "model.pt")), ws).endswith(
        f"`audiovis train -w {ws}`")
    assert "is damaged" in d(sqlite3.DatabaseError("file is not a database"), ws)
    assert d(KeyError("x"), ws) is None and d(ValueError("bad"), ws) is None    # no workspace file involved


def test_a_damaged_file_is_found_in_the_failing_frames(ws):
    import numpy as np
    p = ws / "index" / "song_factors_pred.npy"
    np.save(p, np.zeros((50, 8), np.float32))
    p.write_bytes(p.read_bytes()[:100])
    try:
        np.load(p)
    except ValueError as e:
        line = failures.describe(e, ws)
        assert line.startswith(f"'{p}' is damaged or cut short (") and line.endswith(
            f"): rebuild it with `audiovis index -w {ws} --force`"), line
    else:
        pytest.fail("a cut .npy loaded")


def test_the_log_goes_to_the_workspace_else_the_cache(ws, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert failures.log_path(ws) == ws / "logs" / "errors.log"
    assert failures.log_path(tmp_path / "absent") == tmp_path / "cache" / "audiovis" / "errors.log"
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    assert failures.log_path(ws) == tmp_path / "cache" / "audiovis" / "errors.log"     # read-only
    try:
        raise KeyError("surprise")
    except KeyError as e:
        assert failures.report(e, ws, ["report", "-w", str(ws)], debug=True) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith(
        f"audiovis: error: unexpected KeyError: 'surprise'; traceback in {tmp_path}/cache/audiovis/errors.log; "
        f"please report it\n")
    assert f"audiovis report -w {ws}" in (tmp_path / "cache" / "audiovis" / "errors.log").read_text()


def test_the_log_keeps_one_older_file(ws):
    log = ws / "logs" / "errors.log"
    log.parent.mkdir()
    log.write_bytes(b"x" * (failures.LOG_MAX_BYTES + 1))
    try:
        raise RuntimeError("again")
    except RuntimeError as e:
        failures.report(e, ws, ["index"])
    assert (ws / "logs" / "errors.log.1").stat().st_size == failures.LOG_MAX_BYTES + 1
    assert "RuntimeError: again" in log.read_text() and log.stat().st_size < 10_000
