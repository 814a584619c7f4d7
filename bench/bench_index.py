"""Benchmark of the index stage: windows per second and peak memory at N and 10 N songs.

Makes synthetic workspaces of N songs by repeating the demo workspace's songs (features, catalogue rows) under
new song ids, with the demo's trained model, then runs ``build_index(force=True)`` in a subprocess per size,
sampling its memory from /proc every 50 ms: peak RSS (``VmHWM``, which also counts the pages of the
memory-mapped feature and activation files it has touched, clean and reclaimable) and peak anonymous memory
(``RssAnon``: what the process itself allocates; this is what must stay flat). Sizes run interleaved over
--repeats rounds.

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_index.py --demo /tmp/demo_ws2 --sizes 400 4000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

CHILD = """
import json, sys, time
from audiovis.index import IndexConfig, build_index
t0 = time.perf_counter()
s = build_index(sys.argv[1], IndexConfig(), force=True, progress=False)
dt = time.perf_counter() - t0
st = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)
print(json.dumps({"seconds": dt, "windows": s["windows"], "units": s["units"],
                  "VmHWM_kB": int(st['VmHWM'].split()[0])}))
"""


def make_ws(demo: Path, out: Path, n: int) -> Path:
    """A workspace of ``n`` songs: demo song ``i % n_demo`` under the id ``<id>~<i // n_demo>``."""
    if (out / "features" / "windows.npy").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in ("model.pt", "factors.npz"):
        shutil.copy(demo / f, out / f)
    db = sqlite3.connect(out / "catalog.sqlite")
    src = sqlite3.connect(demo / "catalog.sqlite")
    src.backup(db)
    src.close()
    rows = db.execute("SELECT song_id, path, duration, sr, channels, status, reason, split FROM songs "
                      "ORDER BY idx").fetchall()
    nd = len(rows)
    with db:
        db.execute("DELETE FROM songs")
        db.executemany("INSERT INTO songs(idx, song_id, path, duration, sr, channels, status, reason, split) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       [(i, f"{rows[i % nd][0]}~{i // nd}", *rows[i % nd][1:]) for i in range(n)])
        db.execute("DELETE FROM meta WHERE key='done:index'")
    db.close()
    f_in, f_out = demo / "features", out / "features"
    f_out.mkdir(exist_ok=True)
    shutil.copy(f_in / "config.json", f_out / "config.json")
    cfg = json.loads((f_in / "config.json").read_text())
    W = int(round(cfg["window_s"] * cfg["sr"] / cfg["hop_length"]))
    L = np.load(f_in / "logmel.npy", mmap_mode="r")
    off = np.load(f_in / "offsets.npy")
    lengths = np.diff(off)[np.arange(n) % nd]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    mm = np.lib.format.open_memmap(f_out / "logmel.npy", mode="w+", dtype=np.float16,
                                   shape=(int(offsets[-1]), L.shape[1]))
    for i in range(n):
        j = i % nd
        mm[offsets[i]:offsets[i + 1]] = L[off[j]:off[j + 1]]
    mm.flush()
    del mm
    windows = np.array([(i, s) for i in range(n) for s in range(0, int(lengths[i]) - W + 1, W)],
                       np.int64).reshape(-1, 2)
    np.save(f_out / "offsets.npy", offsets)
    np.save(f_out / "windows.npy", windows)
    return out


def run_one(ws: Path) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ws)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    peak_anon = peak_rss = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                st = dict(ln.split(":", 1) for ln in f if ":" in ln)
            peak_anon = max(peak_anon, int(st.get("RssAnon", "0 kB").split()[0]))
            peak_rss = max(peak_rss, int(st.get("VmRSS", "0 kB").split()[0]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"index failed on {ws}: {err[-3000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    r["RssAnon_peak_kB"] = peak_anon
    return r


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="/tmp/demo_ws2", help="a built workspace to repeat (not modified)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 4000])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="/tmp/audiovis_bench_index")
    a = ap.parse_args(argv)
    wss = {n: make_ws(Path(a.demo), Path(a.out) / f"ws{n}", n) for n in a.sizes}
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"demo {a.demo}")
    res: dict[int, list[dict]] = {n: [] for n in a.sizes}
    for r in range(a.repeats):
        for n in a.sizes:
            x = run_one(wss[n])
            res[n].append(x)
            print(f"round {r + 1}: {n:6d} songs {x['windows']:7d} windows {x['units']} units: {x['seconds']:7.1f} s, "
                  f"{x['windows'] / x['seconds']:6.0f} windows/s, peak RSS {x['VmHWM_kB'] / 1024:6.0f} MiB, "
                  f"peak anonymous {x['RssAnon_peak_kB'] / 1024:6.0f} MiB (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    base = a.sizes[0]
    for n in a.sizes[1:]:
        for key, name in (("VmHWM_kB", "peak RSS"), ("RssAnon_peak_kB", "peak anonymous")):
            ratio = statistics.median(x[key] for x in res[n]) / statistics.median(x[key] for x in res[base])
            print(f"{name} at {n} / at {base} songs: {ratio:.2f} (target <= 1.2)")
        sp = statistics.median(x["windows"] / x["seconds"] for x in res[n]) / \
            statistics.median(x["windows"] / x["seconds"] for x in res[base])
        print(f"windows/s at {n} / at {base} songs: {sp:.2f}")


if __name__ == "__main__":
    main()
