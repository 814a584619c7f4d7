"""Fault injection: each numbered case of issue 27, reproduced through the command line.

1. a FIFO (and an empty file) in the library; 2. a done-marker whose data was removed; 3. two writers on one
workspace; 4. a read-only workspace; 5. damaged or missing files and a full disk give one line, exit 2, and a log;
7. a UTF-16 listening log. Each asserts the message, the exit code and that nothing was lost.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_corpus

from audiovis.workspace import Workspace


def cli(*args, timeout=120, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audiovis.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small library (9 songs of 4 s)."""
    return make_corpus(tmp_path_factory.mktemp("small"), n_songs=9, n_users=20, seconds=4.0, seed=3)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("with_manifest", [False, True])
def test_1_fifo_in_the_library_is_reported_not_opened(small, tmp_path, with_manifest):
    audio = tmp_path / "audio"
    shutil.copytree(small["audio_dir"], audio)
    os.mkfifo(audio / "x.wav")                  # opening it would wait for a writer forever
    (audio / "empty.ogg").touch()
    args = ["ingest", "-w", tmp_path / "ws", "--audio", audio, "--plays", small["plays"]]
    if with_manifest:
        man = tmp_path / "manifest.csv"
        man.write_text(Path(small["manifest"]).read_text() + "x,x.wav,low\nempty,empty.ogg,low\n")
        args += ["--manifest", man]
    r = cli(*args, timeout=60)                  # hung forever before
    assert r.returncode == 0, r.stderr
    assert "x.wav': not a regular file (a FIFO, a named pipe); skipped without reading it" in r.stdout
    assert "empty.ogg': file is empty (0 bytes)" in r.stdout
    ws = Workspace(tmp_path / "ws")
    assert ws.n_songs == 9                      # every real song kept
    assert {row[1] for row in ws.report("ingest")} >= {"x", "empty"}


@pytest.fixture
def ws_copy(built_ws, tmp_path):
    """A writable copy of the session's built workspace."""
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    return dst


def test_2_featurize_reruns_when_its_outputs_are_gone(ws_copy):
    before = Workspace(ws_copy).get_meta("done:featurize")
    assert set(before["outputs"]) == {"features/logmel.npy", "features/offsets.npy", "features/windows.npy",
                                      "features/config.json"}
    logmel = (ws_copy / "features" / "logmel.npy").read_bytes()
    shutil.rmtree(ws_copy / "features")
    r = cli("report", "-w", ws_copy)            # a later stage's reader names the stage to run again
    assert r.returncode == 0                    # report reads the catalogue only
    r = cli("train", "-w", ws_copy, "--preset", "auto", "--epochs", "1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "the 'featurize' stage's output features/logmel.npy is missing" in r.stderr
    assert f"run `audiovis featurize --workspace {ws_copy}` again" in r.stderr
    r = cli("featurize", "-w", ws_copy)
    assert r.returncode == 0, r.stderr
    assert "audiovis: featurize: running again: output features/logmel.npy is missing" in r.stderr
    assert (ws_copy / "features" / "logmel.npy").read_bytes() == logmel     # rebuilt, not the old summary
    assert Workspace(ws_copy).get_meta("done:featurize")["outputs"] == before["outputs"]
    r = cli("featurize", "-w", ws_copy)         # now up to date: nothing said, nothing done
    assert r.returncode == 0 and "running again" not in r.stderr


@pytest.mark.parametrize("stage, victim, why", [
    ("factorize", "factors.npz", "factors.npz has 3 bytes where the stage wrote"),
    ("evaluate", "evaluation.json", "evaluation.json is missing"),
    ("index", "index/acts.npy", "index/acts.npy is not the file the stage wrote (its content changed)"),
])
def test_2_every_stage_checks_what_it_wrote(ws_copy, stage, victim, why, capsys):
    from audiovis.config import FactorConfig, IndexConfig
    from audiovis.evaluate import evaluate
    from audiovis.factors import factorize
    from audiovis.index import build_index
    ws = Workspace(ws_copy)
    done = ws.get_meta(f"done:{stage}")
    p = ws_copy / victim
    if "bytes" in why:
        p.write_bytes(b"bad")
    elif "missing" in why:
        p.unlink()
    else:                                       # same size, other bytes: the sampled hash sees it
        b = bytearray(p.read_bytes())
        b[-5] ^= 0xFF
        p.write_bytes(bytes(b))
    run = {"factorize": lambda: factorize(ws, FactorConfig.from_dict(done["config"])),
           "evaluate": lambda: evaluate(ws),
           "index": lambda: build_index(ws, IndexConfig.from_dict(done["config"]))}[stage]
    run()
    assert f"audiovis: {stage}: running again: output {why}" in capsys.readouterr().err
    again = ws.get_meta(f"done:{stage}")
    assert ws.finished(stage, say=False, config=again.get("config")) is not None
    assert again["outputs"][victim]["size"] > 3
