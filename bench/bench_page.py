"""Benchmark of the listening page's unit view: warm data preparation time and bytes sent per view.

Times what the page computes when the user switches to a unit it has not shown before (model and index loaded,
i.e. warm; no per-unit cache hit): the clip table, the activation curves, the pictures and the encoded audio of
N clips. Also counts the audio and image bytes one unit view sends to the browser.

    OPENBLAS_NUM_THREADS=1 python bench/bench_page.py --workspace /tmp/demo_ws --units 20 --n 10

``--browser``: the time a visitor waits, in headless Chromium on `audiovis serve` (warm: the server has shown one
view; each timed view is a new unit in a new tab): from opening the unit view's URL to the first audio player
that can play (``readyState >= 3``), median over ``--views`` units; ``--baseline SRC`` runs the same views on a
server of another source tree (e.g. /work/main) first, side by side.

    OPENBLAS_NUM_THREADS=1 python bench/bench_page.py --workspace /tmp/demo_ws --browser --views 5 \
        --baseline /work/main
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _serve(ws: str, src: str, port: int):
    import subprocess
    import sys
    import urllib.request
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=src)
    proc = subprocess.Popen([sys.executable, "-m", "audiovis.cli", "serve", "-w", ws, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=src)
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server of {src} did not start")


def browser_views(ws: str, src: str, units: list[str], n: int, port: int) -> list[float]:
    """Seconds from opening each unit's view to its first playable audio, on a warm server of ``src``."""
    import signal

    from playwright.sync_api import sync_playwright
    proc = _serve(ws, src, port)
    base = f"http://127.0.0.1:{port}"
    playable = "[...document.querySelectorAll('audio')].some(a => a.readyState >= 3)"
    out = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/?view=unit&unit={units[0]}&n={n}")           # warm-up: imports, model, index
            page.wait_for_function(playable, timeout=180_000)
            for u in units[1:]:
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                t = time.perf_counter()
                page.goto(f"{base}/?view=unit&unit={u}&n={n}")
                page.wait_for_function(playable, timeout=120_000, polling=50)
                out.append(time.perf_counter() - t)
                page.close()
            b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default=os.environ.get("AUDIOVIS_WORKSPACE", "workspaces/demo"))
    ap.add_argument("--units", type=int, default=20, help="random units to time (across all layers)")
    ap.add_argument("--n", type=int, default=10, help="clips per unit view")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the page uses 1, see ui/common.py)")
    ap.add_argument("--browser", action="store_true", help="time first playable audio in headless Chromium")
    ap.add_argument("--views", type=int, default=5, help="--browser: unit views timed (after one warm-up)")
    ap.add_argument("--baseline", help="--browser: another source tree to time side by side (e.g. /work/main)")
    a = ap.parse_args(argv)
    if a.browser:
        from audiovis.explore import Explorer
        ex = Explorer(a.workspace)
        live = [u for u in ex.index.units() if not ex.unit_flag(u)]
        units = random.Random(a.seed).sample(live, a.views + 1)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for name, src in ([("baseline", a.baseline)] if a.baseline else []) + [("this tree", here)]:
            t = browser_views(str(ex.ws.path), src, units, a.n, 8600 + len(name))
            print(f"{name} ({src}): first playable audio of a warm unit view, {a.n} clips, {len(t)} units: median "
                  f"{statistics.median(t):.2f} s (each: {', '.join(f'{x:.2f}' for x in t)})")
        return
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
