"""Benchmark: dreaming one unit with default settings (optimisation + Griffin-Lim), cache off.

    OPENBLAS_NUM_THREADS=1 python bench/bench_visualise.py -w /tmp/demo_ws [--units conv2:17 ...] [--threads 1]

Also times one auralisation and one backward query. Prints a markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", default="/tmp/demo_ws")
    ap.add_argument("--units", nargs="+", default=["conv1:5", "conv2:17", "conv3:3", "dense1:38", "output:3"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from audiovis.index import UnitIndex
    from audiovis.train import load_model
    from audiovis.visualise.auralise import auralise
    from audiovis.visualise.backward import backward_query
    from audiovis.visualise.dream import dream
    from audiovis.visualise.render import RenderConfig
    from audiovis.workspace import Workspace
    ws = Workspace(a.workspace)
    model, _ = load_model(ws)
    ix = UnitIndex(ws)
    cfg = RenderConfig()
    print(f"workspace {ws.path}; torch threads {a.threads}; settings {cfg.to_dict()}\n")
    print("| what | seconds | activation | best real clip | ratio |\n|---|---|---|---|---|")
    tmp = tempfile.mkdtemp()
    for u in a.units:
        t = time.perf_counter()
        d = dream(ws, u, cfg=cfg, model=model, force=True)
        s = time.perf_counter() - t
        ratio = f"{d.ratio:.2f}" if d.ratio is not None else "n/a"
        best = f"{d.best_real:.3f}" if d.best_real is not None else "n/a"
        print(f"| dream {u} | {s:.1f} | {d.activation:.3f} | {best} | {ratio} |")
    top = ix.top("conv2:17", n=1)[0]
    t = time.perf_counter()
    auralise(ws, "conv2:17", top["song_id"], top["start_s"], model=model)
    print(f"| auralise conv2:17 on {top['song_id']} at {top['start_s']:.1f} s | {time.perf_counter() - t:.1f} "
          f"| | | |")
    uid = ws.user_ids()[41]
    t = time.perf_counter()
    r = backward_query(ws, user=uid, cfg=cfg, model=model, out=os.path.join(tmp, "b.wav"))
    print(f"| backward --user {uid} | {time.perf_counter() - t:.1f} | cos {r.start_cosine:.2f} -> {r.cosine:.2f} "
          f"| best real score {r.best_real['score']:.3f} | dream score {r.score:.3f} |")


if __name__ == "__main__":
    main()
