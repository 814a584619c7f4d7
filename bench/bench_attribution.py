"""Benchmark: faithfulness and speed of attribution (issue 26) on a built workspace.

    OPENBLAS_NUM_THREADS=1 python bench/bench_attribution.py -w /tmp/attr_demo [--layers cnn3 dense1] \
        [--units 20] [--listeners 20] [--steps 32] [--threads 2]

Faithfulness: for the ``--units`` strongest units of each layer (index strength), on the window of each unit's
top clip, and for ``--listeners`` cold-start scores (evenly spread catalogue songs, each with the listener who
scores it highest, on the song's window where that score is highest): integrated gradients' deletion area against
random deletion's (``--deletion-steps`` steps, ``--random`` random orders). Speed: one IG attribution of
``--steps`` steps on one window, warm (median of ``--repeat``), beside its baseline, one plain gradient of the
same target (what ``auralise``'s relevance costs). Prints markdown for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", default="/tmp/attr_demo")
    ap.add_argument("--layers", nargs="+", help="default: cnn3 dense1 (musicnn) or conv3 dense1 (from scratch)")
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--listeners", type=int, default=20)
    ap.add_argument("--steps", type=int, default=32, help="IG steps (faithfulness and timing)")
    ap.add_argument("--deletion-steps", type=int, default=10)
    ap.add_argument("--random", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reduce", default="above", choices=["above", "mean", "max"],
                    help="a unit's value over time (audiovis.interpret.targets)")
    ap.add_argument("--floor-percentile", type=float, help="the floor (default: network.FLOOR_PERCENTILE)")
    ap.add_argument("--no-timing", action="store_true")
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    from audiovis.errors import AudiovisError
    from audiovis.factors import load_factors
    from audiovis.index import UnitIndex
    from audiovis.interpret import network
    from audiovis.interpret.attribution import attribute, target_function
    from audiovis.interpret.faithfulness import deletion
    from audiovis.interpret.network import load_network
    from audiovis.interpret.targets import listener_target, unit_target
    from audiovis.interpret.why import pick_window, song_windows
    from audiovis.workspace import Workspace
    if a.floor_percentile is not None:
        network.FLOOR_PERCENTILE = a.floor_percentile
    ws = Workspace(a.workspace)
    net = load_network(ws)
    ix = UnitIndex(ws)
    arch = getattr(net.model.cfg, "arch", "adapter") if net.model is not None else "adapter"
    layers = a.layers or (["cnn3", "dense1"] if arch == "musicnn" else ["conv3", "dense1"])
    print(f"workspace {ws.path} ({arch}); {platform.node()}, {os.cpu_count()} CPUs, torch threads {a.threads}; "
          f"IG {a.steps} steps, deletion {a.deletion_steps} steps vs {a.random} random orders; units: {a.reduce} over "
          f"time; floor: percentile {network.FLOOR_PERCENTILE:g} of the clip\n")

    def one(target, window):
        att = attribute(net, target, window, "ig", a.steps)
        d = deletion(att, a.deletion_steps, a.random, net=net)
        return d.area, d.random_area

    results, timing_case = {}, None
    for layer in layers:
        rows = sorted(ix.table(layer), key=lambda r: -r["strength"])[:a.units]
        res = []
        for r in rows:
            top = ix.top(r["unit"], n=1)[0]
            w = song_windows(ws, top["song_id"], float(top["start_s"]))[0]
            t = unit_target(net, r["unit"], w, a.reduce)
            try:
                res.append((r["unit"], *one(t, w)))
            except AudiovisError as e:
                res.append((r["unit"], float("nan"), float("nan")))
                print(f"  {r['unit']}: {e}")
            timing_case = timing_case or (t, w)
        results[f"top-{len(rows)} {layer} units"] = res
    fac = load_factors(ws)
    U, ids = np.asarray(fac["user_factors"]), ws.user_ids()
    songs = np.linspace(0, ws.n_songs - 1, a.listeners).round().astype(int)
    res = []
    for s in songs:
        user = ids[int(np.argmax(U @ ix.song_factors[s]))]
        t = listener_target(net, ws, user)
        w = pick_window(net, t, song_windows(ws, ws.song_ids()[s]))
        try:
            res.append((f"{ws.song_ids()[s]} x {user}", *one(t, w)))
        except AudiovisError as e:
            res.append((f"{ws.song_ids()[s]} x {user}", float("nan"), float("nan")))
            print(f"  {ws.song_ids()[s]} x {user}: {e}")
    results[f"{len(songs)} cold-start listener scores"] = res

    print("| targets | IG area below random's | median IG area | median random area |\n|---|---|---|---|")
    for name, res in results.items():
        ok = [(x, y) for _, x, y in res if np.isfinite(x)]
        below = sum(x < y for x, y in ok)
        print(f"| {name} | {below}/{len(ok)} ({below / max(len(ok), 1):.0%}) | "
              f"{statistics.median(x for x, _ in ok):.3f} | {statistics.median(y for _, y in ok):.3f} |")

    if a.no_timing:
        return
    t, w = timing_case
    f = target_function(net, t, w)
    x = torch.from_numpy(w.S_db[None].copy())

    def grad_once():
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xx).sum(), xx)
        return g

    def timed(fn):
        fn()                                    # warm
        ts = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    with torch.enable_grad():
        ig = timed(lambda: attribute(net, t, w, "ig", a.steps))
        g1 = timed(grad_once)
    print(f"\n| one attribution of {t.title} ({w.fcfg.window_s:g} s window), warm | s |\n|---|---|")
    print(f"| integrated gradients, {a.steps} steps | {ig:.3f} |")
    print(f"| baseline: one gradient (auralise's relevance) | {g1:.4f} |")
    print(f"| ratio | {ig / g1:.1f}x |")


if __name__ == "__main__":
    main()
