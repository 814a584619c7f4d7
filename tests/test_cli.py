"""The command line's process handling: `audiovis serve` stopped with SIGTERM leaves nothing running."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (Linux /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (Linux /proc/net/tcp and tcp6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for r in rows:
            local, state = r.split()[1], r.split()[3]
            addr, p = local.rsplit(":", 1)
            if int(p, 16) == port and state == "0A":           # LISTEN
                if len(addr) == 8:
                    out.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    b = bytes.fromhex(addr)
                    out.add(socket.inet_ntop(socket.AF_INET6, b"".join(b[i:i + 4][::-1] for i in range(0, 16, 4))))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_serve_sigterm_leaves_no_server(tmp_path):
    port = _free_port()
    marker = f"AUDIOVIS_TEST_MARKER={tmp_path.name}"
    env = dict(os.environ, AUDIOVIS_TEST_MARKER=tmp_path.name, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "audiovis.cli", "serve", "-w", str(tmp_path / "ws"),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            assert proc.poll() is None, "serve exited before the page answered"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() - t0 < 90, "the page did not answer within 90 s"
            time.sleep(0.3)
        assert _pids_with_env(marker) == [proc.pid], "serve must be the server itself, not its parent"
        assert _listen_addresses(port) == {"127.0.0.1"}, "serve must bind localhost unless told --host"
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        time.sleep(0.5)
        assert _pids_with_env(marker) == [], "a process of the server outlived SIGTERM"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after SIGTERM"
    finally:
        for pid in _pids_with_env(marker):
            os.kill(pid, signal.SIGKILL)
