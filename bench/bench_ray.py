"""Scale out (Ray): unit-index throughput and per-worker memory on a simulated large catalogue.

The catalogue is faked at the FeatureStore level: a copy of a built workspace (model, catalogue database) whose
features list the source's songs again and again under new song indices (``offsets[s]`` of song ``s`` points at
the frames of source song ``s % n_src``; the frames themselves are not copied), so 20,000 songs need no
decoding and no extra feature storage. Only the index stage reads these features.

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_ray.py --src /tmp/demo_ws2 --songs 2000 4000 --workers 1 2
    OPENBLAS_NUM_THREADS=1 nice python bench/bench_ray.py --src /tmp/demo_ws2 --check   # Ray == local on the demo

Prints a markdown table: songs, windows, engine, workers, seconds, windows/s, max actor RSS (MB), driver RSS.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
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


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ray(ws: Path, workers: int, batch_windows: int) -> dict:
    import ray

    from audiovis.engines import ray as ray_engine
    from audiovis.index import IndexConfig
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1"}})
    try:
        info: dict = {}
        t = time.perf_counter()
        ray_engine.build_index(ws, IndexConfig(batch_windows=batch_windows), force=True, progress=False,
                               workers=workers, stats=info)
        info["seconds"] = time.perf_counter() - t
    finally:
        ray.shutdown()
    return info


def run_local(ws: Path, batch_windows: int) -> dict:
    import torch

    from audiovis.index import IndexConfig, build_index
    torch.set_num_threads(1)
    t = time.perf_counter()
    s = build_index(ws, IndexConfig(batch_windows=batch_windows), force=True, progress=False)
    return {"seconds": time.perf_counter() - t, "windows": s["windows"], "actors": 1, "max_actor_rss_mb": _rss_mb()}


def check(src: Path, tmp: Path) -> int:
    """Build the demo's index with Ray on a copy and compare it with the demo's local index."""
    import ray

    from audiovis.engines import ray as ray_engine
    from audiovis.index import IndexConfig
    from audiovis.workspace import Workspace
    dst = tmp / "check_ws"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    cfg = IndexConfig(**Workspace(src).get_meta("done:index")["config"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t = time.perf_counter()
        ray_engine.build_index(dst, cfg, force=True, progress=False, workers=1)
        sec = time.perf_counter() - t
    finally:
        ray.shutdown()
    a, b = np.load(src / "index" / "units.npz"), np.load(dst / "index" / "units.npz")
    same_w = {k: bool(np.array_equal(a[k], b[k])) for k in ("top_w", "bot_w", "hist")}
    diffs = {k: float(np.nanmax(np.abs(a[k] - b[k]))) for k in ("top_v", "bot_v", "mean", "std", "sparsity",
                                                                  "vmin", "vmax", "strength", "selectivity")}
    pred = float(np.nanmax(np.abs(np.load(src / "index" / "song_factors_pred.npy")
                                  - np.load(dst / "index" / "song_factors_pred.npy"))))
    acts = np.abs(np.load(src / "index" / "acts.npy").astype(np.float32)
                  - np.load(dst / "index" / "acts.npy").astype(np.float32)).max()
    print(f"demo, ray (1 actor) {sec:.1f} s; identical: {same_w}; max |diff|: {diffs}; "
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
    ap.add_argument("--check", action="store_true", help="only: Ray index == local index on --src")
    a = ap.parse_args(argv)
    src, tmp = Path(a.src), Path(a.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    if a.check:
        return check(src, tmp)
    print("| songs | windows | engine | workers | seconds | windows/s | max actor private RSS (MB) | driver peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in a.songs:
        ws = make_catalogue(src, tmp / f"sim_{n}", n)
        runs = [("local", 1)] if a.local else []
        runs += [("ray", w) for w in a.workers]
        for engine, w in runs:
            r = run_local(ws, a.batch_windows) if engine == "local" else run_ray(ws, w, a.batch_windows)
            print(f"| {n} | {r['windows']} | {engine} | {w} | {r['seconds']:.1f} | "
                  f"{r['windows'] / r['seconds']:.0f} | {r['max_actor_rss_mb']:.0f} | {_rss_mb():.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
