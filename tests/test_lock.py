"""The workspace writer lock: one writer, named to the others; re-entrant in a thread; gone with its process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from audiovis.lock import WorkspaceLocked, lock_holder, writer_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no flock")


def test_reentrant_in_a_thread_exclusive_across_threads(tmp_path):
    got = []

    def other():
        try:
            with writer_lock(tmp_path):
                got.append("locked")
        except WorkspaceLocked as e:
            got.append(e.holder)

    with writer_lock(tmp_path, command="main"):
        with writer_lock(tmp_path, command="inner"):          # the same thread: re-entrant
            t = threading.Thread(target=other)
            t.start()
            t.join()
        assert lock_holder(tmp_path)["command"] == "main"      # the inner block did not release it
    assert got == [{"pid": os.getpid(), "command": "main", "since": got[0]["since"]}]
    assert lock_holder(tmp_path) is None
    assert (tmp_path / ".audiovis.lock").read_bytes() == b""   # no stale name once released


def test_kill_9_releases_the_lock(tmp_path):
    code = ("import sys, time; from audiovis.lock import writer_lock\n"
            "with writer_lock(sys.argv[1], command='doomed'):\n    print('held', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "held\n"
        assert lock_holder(tmp_path) == {"pid": p.pid, "command": "doomed", "since": lock_holder(tmp_path)["since"]}
        with pytest.raises(WorkspaceLocked, match=f"PID {p.pid}: doomed"):
            with writer_lock(tmp_path):
                pass
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert lock_holder(tmp_path) is None                        # the OS released it, though its name stays
    t0 = time.monotonic()
    with writer_lock(tmp_path, command="next"):
        assert lock_holder(tmp_path)["command"] == "next"
    assert time.monotonic() - t0 < 0.5                          # taken at once, no waiting on the dead


def test_a_readers_probe_never_turns_a_writer_away(tmp_path):
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            lock_holder(tmp_path)

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(50):
            with writer_lock(tmp_path):
                pass
    finally:
        stop.set()
        for t in threads:
            t.join()
