"""Benchmark of the listening page's unit view: warm data preparation time and bytes sent per view.

Times what the page computes when the user switches to a unit it has not shown before (model and index loaded,
i.e. warm; no per-unit cache hit): the clip table, the activation curves, the pictures and the encoded audio of
N clips. Also counts the audio and image bytes one unit view sends to the browser.

    OPENBLAS_NUM_THREADS=1 python bench/bench_page.py --workspace /tmp/demo_ws --units 20 --n 10
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default=os.environ.get("AUDIOVIS_WORKSPACE", "workspaces/demo"))
    ap.add_argument("--units", type=int, default=20, help="random units to time (across all layers)")
    ap.add_argument("--n", type=int, default=10, help="clips per unit view")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the page uses 1, see ui/common.py)")
    a = ap.parse_args(argv)
    import torch
    torch.set_grad_enabled(False)
    torch.set_num_threads(a.threads)
    from audiovis.explore import Explorer
    t0 = time.perf_counter()
    ex = Explorer(a.workspace)
    load_s = time.perf_counter() - t0
    units = ex.index.units()
    rng = random.Random(a.seed)
    picks = rng.sample(units, min(a.units, len(units)))
    ex.unit_view(picks[0], n=a.n)                                # warm-up (imports, first forward)
    times, audio_b, image_b, durs = [], [], [], []
    for u in picks:
        t = time.perf_counter()
        rows = ex.unit_view(u, n=a.n)
        times.append(time.perf_counter() - t)
        audio_b.append(sum(len(r.audio) for r in rows))
        image_b.append(sum(len(r.image) for r in rows))
        durs.append(sum(r.end_s - r.start_s for r in rows))
    layers = ", ".join(f"{k} {v}" for k, v in ex.layers.items())
    print(f"workspace {ex.ws.path}: {len(ex.songs)} songs, {ex.index.n_units} units ({layers}), "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"cold load of model + index: {load_s:.2f} s")
    q = statistics.quantiles(times, n=20) if len(times) > 1 else times * 19
    print(f"warm unit view, {a.n} clips, {len(picks)} random units: median {statistics.median(times):.3f} s, "
          f"p95 {q[18]:.3f} s, max {max(times):.3f} s")
    print(f"audio per view: median {statistics.median(audio_b) / 1024:.0f} KiB "
          f"({statistics.median(audio_b) * 8 / 1000 / statistics.median(durs):.0f} kbit/s OGG Vorbis, "
          f"{statistics.median(durs):.0f} s of audio; 16-bit PCM would be "
          f"{statistics.median(durs) * 22050 * 2 / 1024:.0f} KiB)")
    print(f"pictures per view: median {statistics.median(image_b) / 1024:.0f} KiB (JPEG)")


if __name__ == "__main__":
    main()
