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
