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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    import sqlite3
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    db = sqlite3.connect(dst / "catalog.sqlite")    # the copy's WAL into the file: the last close removes it
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
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


TINY = ["--factors", "8", "--iterations", "10", "--test-fraction", "0.3", "--preset", "auto", "--epochs", "2",
        "--steps-per-epoch", "4", "--batch-size", "16", "--num-threads", "1", "-k", "4", "--batch-windows", "16",
        "--jobs", "1"]


def test_3_a_second_writer_is_told_who_holds_the_workspace(ws_copy):
    from audiovis.lock import lock_holder, writer_lock
    assert lock_holder(ws_copy) is None
    with writer_lock(ws_copy, command="audiovis run (the test)"):
        holder = lock_holder(ws_copy)
        assert holder["pid"] == os.getpid() and holder["command"] == "audiovis run (the test)"
        r = cli("featurize", "-w", ws_copy, timeout=60)
        assert r.returncode == 2, r.stderr
        assert r.stderr == (f"audiovis: error: workspace '{ws_copy.resolve()}' is being written by another writer "
                            f"(PID {os.getpid()}: audiovis run (the test)); wait for it to finish, or run the "
                            f"command again with --wait\n")
        r = cli("report", "-w", ws_copy, timeout=60)       # readers never take the lock
        assert r.returncode == 0, r.stderr
        p = subprocess.Popen([sys.executable, "-m", "audiovis.cli", "evaluate", "-w", ws_copy, "--wait"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = p.stderr.readline()                      # it says whom it waits for, then waits
            assert first.startswith(f"audiovis: waiting for the writer of '{ws_copy.resolve()}' to finish "
                                    f"(PID {os.getpid()}"), first
            assert p.poll() is None
        except BaseException:
            p.kill()
            raise
    out, err = p.communicate(timeout=120)                     # released: it runs
    assert p.returncode == 0, err
    assert lock_holder(ws_copy) is None


@pytest.mark.slow        # three tiny runs of every stage: ~40 s on 2 busy cores
def test_3_two_concurrent_runs_equal_one_clean_run(small, tmp_path):
    import numpy as np
    inputs = ["--audio", small["audio_dir"], "--plays", small["plays"], "--manifest", small["manifest"]]
    clean = cli("run", "-w", tmp_path / "clean", *inputs, *TINY, timeout=600)
    assert clean.returncode == 0, clean.stderr
    cmd = [sys.executable, "-m", "audiovis.cli", "run", "-w", str(tmp_path / "ws"), *map(str, inputs), *TINY,
           "--wait"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum("waiting for the writer" in err for _, err in outs) == 1     # one ran, the other waited
    a, b = Workspace(tmp_path / "clean"), Workspace(tmp_path / "ws")
    assert a.songs() == [dict(s, path=s["path"]) for s in b.songs()]
    assert a.play_matrix().toarray().tolist() == b.play_matrix().toarray().tolist()
    for rel in ("factors.npz", "index/units.npz"):
        with np.load(a.path / rel) as za, np.load(b.path / rel) as zb:
            assert za.files == zb.files
            for k in za.files:
                np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{rel}:{k}")
    for rel in ("features/logmel.npy", "index/acts.npy", "index/song_factors_pred.npy"):
        np.testing.assert_array_equal(np.load(a.path / rel), np.load(b.path / rel), err_msg=rel)
    for stage in ("featurize", "index"):
        assert a.get_meta(f"done:{stage}")["outputs"] == b.get_meta(f"done:{stage}")["outputs"]


# --- 4. read-only workspaces ------------------------------------------------------------------------------------

@pytest.fixture
def read_only(ws_copy, tmp_path):
    """The built workspace on a read-only bind mount (root ignores file modes, not a read-only mount); skipped
    where mounting is not allowed."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    assert not list(ws_copy.glob("catalog.sqlite-*"))  # as a cleanly closed catalogue is: the immutable path
    r = subprocess.run(["mount", "--bind", str(ws_copy), str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"mount --bind not allowed here: {r.stderr.decode().strip()}")
    try:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True)
        if r.returncode:
            pytest.skip(f"read-only remount not allowed here: {r.stderr.decode().strip()}")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)   # lazy: this process may still map its files


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_4_read_commands_work_on_a_read_only_workspace(read_only, ws_copy, corpus, tmp_path):
    before = _tree(ws_copy)
    assert not Workspace(read_only).writable
    song = sorted(Path(corpus["audio_dir"]).iterdir())[0]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    for args in (["report"], ["recommend", song, "-k", "3"], ["embed", song], ["export", "--out", tmp_path / "x"]):
        r = cli(args[0], "-w", read_only, *args[1:], env=env)
        assert r.returncode == 0, (args, r.stderr)
    r = cli("featurize", "-w", read_only, "--force", env=env)     # a writer: one line, exit 2, log in the cache
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "is on a read-only file system: a command that changes the workspace needs write access" in r.stderr
    assert "OSError" in (tmp_path / "cache" / "audiovis" / "errors.log").read_text()
    assert _tree(ws_copy) == before                          # nothing written on read


@pytest.mark.parametrize("view", ["unit", "song"])
def test_4_the_page_plays_clips_from_a_read_only_workspace(read_only, monkeypatch, view):
    from streamlit.testing.v1 import AppTest

    from audiovis.cli import page_path
    from audiovis.ui.common import WORKSPACES_ENV
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(read_only))
    monkeypatch.setenv(WORKSPACES_ENV, str(read_only))
    at = AppTest.from_file(str(page_path()), default_timeout=120)
    at.query_params["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    audio = [el for el in at.get("audio")]
    assert audio, "no clip on the page"
    assert all(el.proto.url for el in audio)


@pytest.mark.slow
def test_4_the_page_served_without_allow_writes_writes_nothing(ws_copy, monkeypatch):
    """`audiovis serve` without --allow-writes sets AUDIOVIS_READ_ONLY=1: every view reads the workspace through
    a read-only catalogue and keeps what it builds (e.g. a similarity index) in memory; only SQLite's own
    shared-memory files may appear beside the catalogue."""
    from streamlit.testing.v1 import AppTest

    from audiovis.cli import page_path
    from audiovis.ui.common import ALLOW_ADD_ENV, WORKSPACES_ENV
    from audiovis.workspace import READ_ONLY_ENV
    for k, v in {"AUDIOVIS_WORKSPACE": str(ws_copy), WORKSPACES_ENV: str(ws_copy), ALLOW_ADD_ENV: "0",
                 READ_ONLY_ENV: "1"}.items():
        monkeypatch.setenv(k, v)
    assert not Workspace(ws_copy).writable
    before = _tree(ws_copy)
    for view in ("unit", "layer", "song", "coldstart", "visualise"):
        at = AppTest.from_file(str(page_path()), default_timeout=180)
        at.query_params["view"] = view
        at.run()
        assert not at.exception, (view, [e.value for e in at.exception])
        if view == "visualise":                 # a dream is not cached, and the page says so
            assert any("Results are not kept: this server only reads" in i.value for i in at.info)
    after = {k: v for k, v in _tree(ws_copy).items() if not k.startswith("catalog.sqlite-")}
    assert after == before


# --- 5. one line, exit 2, a log --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def song(corpus):
    return sorted(Path(corpus["audio_dir"]).iterdir())[0]


def _one_line(r, code=2) -> str:
    """The failure's line: the last on stderr, the only error, no traceback (progress bars may come before)."""
    assert r.returncode == code, r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1].startswith("audiovis: error: ") and r.stderr.count("audiovis: error:") == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[-1]


@pytest.mark.parametrize("cmd", ["report", "recommend", "embed"])
def test_5_truncated_catalog(ws_copy, song, cmd):
    db = ws_copy / "catalog.sqlite"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 3)
    r = cli(cmd, "-w", ws_copy, *([song] if cmd != "report" else []))
    line = _one_line(r)
    assert f"the catalogue '{db}' is damaged" in line and f"`audiovis run -w {ws_copy}" in line
    log = (ws_copy / "logs" / "errors.log").read_text()
    assert "Traceback" in log and "DatabaseError" in log and f"audiovis {cmd}" in log
    r = cli(cmd, "-w", ws_copy, *([song] if cmd != "report" else []), "--debug")
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr


@pytest.mark.parametrize("cmd", ["recommend", "embed"])
def test_5_missing_unit_index(ws_copy, song, cmd):
    (ws_copy / "index" / "units.npz").unlink()
    line = _one_line(cli(cmd, "-w", ws_copy, song))
    assert "index/units.npz is missing" in line and f"audiovis index --workspace {ws_copy}" in line
    ws = Workspace(ws_copy)                     # a workspace from before done-markers recorded their files
    done = ws.get_meta("done:index")
    done.pop("outputs")
    ws.set_meta("done:index", done)
    ws.close()
    line = _one_line(cli(cmd, "-w", ws_copy, song))
    assert f"'{ws_copy}/index/units.npz' is missing: rebuild it with `audiovis index -w {ws_copy}`" in line


def test_5_damaged_array_names_its_file(ws_copy, song):
    p = ws_copy / "index" / "song_factors_pred.npy"
    p.write_bytes(p.read_bytes()[:100])         # same name, cut short (its stage's record is not consulted)
    line = _one_line(cli("recommend", "-w", ws_copy, song))
    assert f"'{p}' is damaged or cut short" in line and f"`audiovis index -w {ws_copy} --force`" in line


def test_5_disk_full_during_featurize(ws_copy, tmp_path):
    """A real full disk: the workspace on a 2 MiB tmpfs (needs root; skipped otherwise)."""
    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(full)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        small_ws = full / "ws"
        small_ws.mkdir()
        shutil.copy2(ws_copy / "catalog.sqlite", small_ws)
        for f in ws_copy.glob("catalog.sqlite-*"):
            shutil.copy2(f, small_ws)
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
        line = _one_line(cli("featurize", "-w", small_ws, "--jobs", "1", env=env))
        assert "the disk is full (writing '" in line and "run the same command again" in line
        assert Workspace(small_ws).n_songs == Workspace(ws_copy).n_songs        # the catalogue is intact
        logs = [small_ws / "logs" / "errors.log", tmp_path / "cache" / "audiovis" / "errors.log"]
        assert any(p.exists() and "Traceback" in p.read_text() for p in logs)  # the cache when even it is full
    finally:
        subprocess.run(["umount", "-l", str(full)], check=True)


def test_5_unexpected_failure_is_one_line_and_a_log(ws_copy, monkeypatch, capsys):
    from audiovis import cli as cli_mod
    from audiovis import failures

    def boom(a):
        raise KeyError("surprise")
    monkeypatch.setattr(cli_mod, "_dispatch", boom)
    assert cli_mod.main(["report", "-w", str(ws_copy)]) == 1
    err = capsys.readouterr().err
    log = failures.log_path(ws_copy)
    assert err == f"audiovis: error: unexpected KeyError: 'surprise'; traceback in {log}; please report it\n"
    assert "KeyError: 'surprise'" in log.read_text()


# --- 7. UTF-16 listening logs ------------------------------------------------------------------------------------

def test_7_utf16_log_is_read_or_named(small, tmp_path):
    text = Path(small["plays"]).read_text()
    n_rows = len(text.splitlines())
    bom = tmp_path / "plays_bom.tsv"
    bom.write_bytes(text.encode("utf-16"))                  # with a byte-order mark: read as it is
    r = cli("ingest", "-w", tmp_path / "ws", "--audio", small["audio_dir"], "--plays", bom)
    assert r.returncode == 0, r.stderr
    assert f'"log_rows": {n_rows}' in r.stdout and '"log_problems": {}' in r.stdout
    bare = tmp_path / "plays_le.tsv"
    bare.write_bytes(text.encode("utf-16-le"))              # no mark: named, not "non-numeric play count"
    line = _one_line(cli("ingest", "-w", tmp_path / "ws2", "--audio", small["audio_dir"], "--plays", bare))
    assert f"listening log '{bare}' is not UTF-8: it looks like UTF-16LE text without a byte-order mark" in line
    assert not (tmp_path / "ws2" / "catalog.sqlite").exists()


# --- the page: a "being rebuilt" notice; any URL gives a page, never a traceback -------------------------------

def _page(monkeypatch, ws_dir, **params):
    from streamlit.testing.v1 import AppTest

    from audiovis.cli import page_path
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(ws_dir))
    monkeypatch.delenv("AUDIOVIS_WORKSPACES", raising=False)
    at = AppTest.from_file(str(page_path()), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_the_page_says_while_a_writer_rebuilds_the_workspace(ws_copy, monkeypatch):
    from audiovis.lock import writer_lock
    at = _page(monkeypatch, ws_copy)
    assert not at.exception and not any("being rebuilt" in i.value for i in at.info)
    with writer_lock(ws_copy, command="audiovis run -w demo"):
        at = _page(monkeypatch, ws_copy)
    assert not at.exception
    notes = [i.value for i in at.info if "being rebuilt" in i.value]
    assert notes == [f"This workspace is being rebuilt (audiovis run -w demo, PID {os.getpid()}): what you see "
                     f"may change; reload the page when it finishes."]
    assert at.get("audio"), "the page still plays what is there"


_ODD = ["", " ", "conv1:3", "conv9:99999", "conv1:-1", "output:0", "dense1.dict:2", "../../etc/passwd", "song000",
        "S0001", "bogus", "unit", "layer", "song", "coldstart", "0", "-1", "1e9", "true", "%00", "<script>", "é:1"]
_VALUE = st.one_of(st.sampled_from(_ODD), st.text(max_size=12))
_PARAMS = st.dictionaries(st.sampled_from(["ws", "view", "unit", "layer", "n", "bottom", "song", "q", "zz"]),
                          _VALUE, max_size=5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=_PARAMS)
def test_property_every_url_gives_a_page_without_a_traceback(built_ws, monkeypatch, params):
    at = _page(monkeypatch, built_ws[0], **params)
    assert not at.exception, (params, [e.value for e in at.exception])
    shown = [e.value for e in [*at.error, *at.warning, *at.info, *at.markdown, *at.code]]
    assert not any("Traceback" in str(v) for v in shown), params
