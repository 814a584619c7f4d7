"""Scale out (Ray): unit-index throughput and per-worker memory on a simulated large catalogue.

The catalogue is faked at the FeatureStore level: a copy of a built workspace (model, catalogue database) whose
features list the source's songs again and again under new song indices (``offsets[s]`` of song ``s`` points at
the frames of source song ``s % n_src``; the frames themselves are not copied), so 20,000 songs need no
decoding and no extra feature storage. Only the index stage reads these features.

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_ray.py --src /tmp/demo_ws2 --songs 2000 4000 --workers 1 2
    OPENBLAS_NUM_THREADS=1 nice python bench/bench_ray.py --src /tmp/demo_ws2 --check   # Ray == local (a copy)

Prints a markdown table: songs, windows, engine, workers, seconds, windows/s and resident memory (MB), sampled
every 0.5 s from /proc for this run's processes (the driver and the Ray workers it started, found by parent
process): the largest anonymous memory (RssAnon: heap, Python objects, torch; what a worker really owns) of a
model actor, the largest file-backed + shared memory (RssFile + RssShmem: pages of the memory-mapped workspace
files and of Ray's object store, reclaimable) of a model actor, the largest anonymous memory of any other Ray
worker (aggregation, histogram tasks), and the driver's anonymous memory. Peak RSS (ru_maxrss) mixes the two
kinds and is not reported.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def make_catalogue(src: Path, dst: Path, n_songs: int) -> Path:
    """A workspace of ``n_songs`` songs repeating the source's features (model and database copied)."""
    if (dst / "features" / "windows.npy").exists() and \
            len(np.load(dst / "features" / "offsets.npy")) == n_songs + 1:
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name in ("catalog.sqlite", "model.pt", "factors.npz"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    (dst / "features").mkdir()
    shutil.copy2(src / "features" / "config.json", dst / "features" / "config.json")
    os.symlink((src / "features" / "logmel.npy").resolve(), dst / "features" / "logmel.npy")
    off = np.load(src / "features" / "offsets.npy")
    win = np.load(src / "features" / "windows.npy")
    n_src = len(off) - 1
    reps = -(-n_songs // n_src)
    offsets = np.concatenate([np.tile(off[:-1], reps)[:n_songs], [off[-1]]])   # offsets[s] only is read
    windows = np.concatenate([np.column_stack([win[:, 0] + r * n_src, win[:, 1]]) for r in range(reps)])
    windows = windows[windows[:, 0] < n_songs]
    np.save(dst / "features" / "offsets.npy", offsets.astype(np.int64))
    np.save(dst / "features" / "windows.npy", windows.astype(np.int64))
    return dst


def _status(pid: int) -> dict | None:
    """RssAnon, RssFile + RssShmem (MB), parent pid and command line of a process (None if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kv = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    mb = lambda key: int(kv.get(key, "0 kB").split()[0]) / 1024   # noqa: E731
    return {"anon": mb("RssAnon"), "file": mb("RssFile") + mb("RssShmem"), "ppid": int(kv["PPid"]), "cmd": cmd}


class MemSampler:
    """Samples this process and its descendants (a local Ray's raylet, workers) every ``every`` seconds."""

    def __init__(self, every: float = 0.5):
        self.every, self.me = every, os.getpid()
        self.peak = {"actor_anon": 0.0, "actor_file": 0.0, "other_anon": 0.0, "driver_anon": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        procs = {}
        for p in os.listdir("/proc"):
            if p.isdigit() and (st := _status(int(p))) is not None:
                procs[int(p)] = st

        def mine(pid: int) -> bool:
            for _ in range(8):
                if pid == self.me:
                    return True
                if pid not in procs:
                    return False
                pid = procs[pid]["ppid"]
            return False

        pk = self.peak
        pk["driver_anon"] = max(pk["driver_anon"], procs.get(self.me, {}).get("anon", 0.0))
        for pid, st in procs.items():
            if pid == self.me or not st["cmd"].startswith("ray::") or not mine(pid):
                continue
            if "_IndexActor" in st["cmd"]:
                pk["actor_anon"] = max(pk["actor_anon"], st["anon"])
                pk["actor_file"] = max(pk["actor_file"], st["file"])
            elif "IDLE" not in st["cmd"]:
                pk["other_anon"] = max(pk["other_anon"], st["anon"])

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)


def run_ray(ws: Path, workers: int, batch_windows: int) -> dict:
    import ray

    from audiovis.engines import ray as ray_engine
    from audiovis.index import IndexConfig
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1"}})
    try:
        info: dict = {}
        with MemSampler() as mem:
            t = time.perf_counter()
            ray_engine.build_index(ws, IndexConfig(batch_windows=batch_windows), force=True, progress=False,
                                   workers=workers, stats=info)
            info["seconds"] = time.perf_counter() - t
        info.update(mem.peak)
    finally:
        ray.shutdown()
    return info


def run_local(ws: Path, batch_windows: int) -> dict:
    import torch

    from audiovis.index import IndexConfig, build_index
    torch.set_num_threads(1)
    with MemSampler() as mem:
        t = time.perf_counter()
        s = build_index(ws, IndexConfig(batch_windows=batch_windows), force=True, progress=False)
        sec = time.perf_counter() - t
    return {"seconds": sec, "windows": s["windows"], "actors": 1, **mem.peak}


def check(src: Path, tmp: Path) -> int:
    """Build the index of a copy of ``src`` with Ray, then with the local engine (same code, same config), and
    compare. (Not against ``src``'s own index: that may have been built by an older version of the code.)"""
    import ray
    import torch

    from audiovis.engines import ray as ray_engine
    from audiovis.index import IndexConfig, build_index
    from audiovis.workspace import Workspace
    dst = tmp / "check_ws"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    cfg = IndexConfig(**Workspace(src).get_meta("done:index")["config"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t = time.perf_counter()
        info: dict = {}
        ray_engine.build_index(dst, cfg, force=True, progress=False, workers=1, stats=info)
        sec = time.perf_counter() - t
    finally:
        ray.shutdown()
    names = ("units.npz", "song_factors_pred.npy", "acts.npy")
    got = {n: (dst / "index" / n).read_bytes() for n in names}
    torch.set_num_threads(1)
    build_index(dst, cfg, force=True, progress=False)
    a, b = np.load(dst / "index" / "units.npz"), np.load(io.BytesIO(got["units.npz"]))
    same_w = {k: bool(np.array_equal(a[k], b[k])) for k in ("top_w", "bot_w", "hist")}
    diffs = {k: float(np.nanmax(np.abs(a[k] - b[k]))) for k in ("top_v", "bot_v", "mean", "std", "sparsity",
                                                                  "vmin", "vmax", "strength", "selectivity")}
    pred = float(np.nanmax(np.abs(np.load(dst / "index" / "song_factors_pred.npy")
                                  - np.load(io.BytesIO(got["song_factors_pred.npy"])))))
    acts = np.abs(np.load(dst / "index" / "acts.npy").astype(np.float32)
                  - np.load(io.BytesIO(got["acts.npy"])).astype(np.float32)).max()
    shutil.rmtree(dst, ignore_errors=True)
    print(f"{src}: ray (1 actor, {info['calls']} calls) {sec:.1f} s; identical: {same_w}; max |diff|: {diffs}; "
          f"song_factors_pred {pred:.2e}; acts {acts:.2e}")
    return 0 if all(same_w.values()) and max(diffs.values()) < 1e-3 else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default="/tmp/demo_ws2", help="a built workspace (default: %(default)s)")
    ap.add_argument("--tmp", default="/tmp/bench_ray", help="where the simulated workspaces go")
    ap.add_argument("--songs", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--local", action="store_true", help="also the local engine (1 torch thread)")
    ap.add_argument("--batch-windows", type=int, default=256)
    ap.add_argument("--check", action="store_true", help="only: Ray index == local index on a copy of --src")
    a = ap.parse_args(argv)
    src, tmp = Path(a.src), Path(a.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    if a.check:
        return check(src, tmp)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| songs | windows | engine | workers | seconds | windows/s | actor anon MB | actor file+shm MB | "
          "other workers anon MB | driver anon MB | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in a.songs:
        ws = make_catalogue(src, tmp / f"sim_{n}", n)
        runs = [("local", 1)] if a.local else []
        runs += [("ray", w) for w in a.workers]
        for engine, w in runs:
            r = run_local(ws, a.batch_windows) if engine == "local" else run_ray(ws, w, a.batch_windows)
            cols = [f"{r[c]:.0f}" if engine == "ray" else "-"   # the local engine has no Ray workers
                    for c in ("actor_anon", "actor_file", "other_anon")]
            print(f"| {n} | {r['windows']} | {engine} | {w} | {r['seconds']:.1f} | {r['windows'] / r['seconds']:.0f} "
                  f"| {' | '.join(cols)} | {r['driver_anon']:.0f} | {os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
