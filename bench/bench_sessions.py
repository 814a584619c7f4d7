"""Benchmark of concurrent visitors: 1, 2, 4 and 8 browser sessions open different unit views at the same time.

For each session count, a fresh `audiovis serve` is started and warmed with one view (model and index loaded),
then that many headless Chromium sessions open unit views of units nobody has viewed yet, all at once. Per
session it records the time to first paint (the unit's title is drawn) and to first audio (the first clip's
player has a source the browser can fetch). It also reads the server's CPU time (user + system, /proc) over the
round, and the CPU time of the Chromium processes, which share the same cores.
``--server-only`` runs the same views with no browser (one AppTest per session, all at once in threads), which
measures the server's side alone.

    OPENBLAS_NUM_THREADS=1 python bench/bench_sessions.py -w workspaces/demo --sessions 1 2 4 8 --n 10
    OPENBLAS_NUM_THREADS=1 python bench/bench_sessions.py -w workspaces/demo --sessions 1 2 4 8 --server-only

Needs Debian's chromium and playwright (the dev extra). Prints one table row per session count.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _browser import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402

HAS_AUDIO = "() => { const a = document.querySelector('audio'); return !!(a && (a.currentSrc || a.src)); }"


def _chromium_cpu_s() -> float:
    """user + system CPU seconds of every Chromium process (the visitors' side of the same 2 cores)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if b"chromium" in open(f"/proc/{d}/cmdline", "rb").read():
                    f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                    total += (int(f[11]) + int(f[12])) / tick
            except OSError:
                pass
    return total


def server_only_round(ws: str, units: list[str], n: int, warm_unit: str) -> dict:
    """The same views without browsers: one AppTest per session, all run at once in threads of this process
    (the page's script in the server's way: one thread per session, shared caches). Time to the finished run."""
    import threading

    from streamlit.testing.v1 import AppTest
    app = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
    os.environ["AUDIOVIS_WORKSPACE"] = str(Path(ws).resolve())

    def view(unit, out, i, t0):
        at = AppTest.from_file(app, default_timeout=300)
        at.query_params.update(view="unit", unit=unit, n=str(n), bottom="0")
        at.run()
        assert not at.exception and len(at.get("audio")) >= 1, (unit, at.exception)
        out[i] = time.perf_counter() - t0

    view(warm_unit, [None], 0, time.perf_counter())                     # model and index loaded
    done = [None] * len(units)
    c0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=view, args=(u, done, i, t0)) for i, u in enumerate(units)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"done": done, "wall": wall, "cpu": time.process_time() - c0}


def _server_cpu_s(port: int) -> float:
    """user + system CPU seconds of the process listening on ``port`` and its threads (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / tick
    return float("nan")


def one_round(ws: str, units: list[str], n: int, warm_unit: str) -> dict:
    from playwright.sync_api import sync_playwright
    with serve_app(ws) as base, sync_playwright() as p:
        port = int(base.rsplit(":", 1)[1])
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            warm = browser.new_page()
            warm.goto(f"{base}/?view=unit&unit={warm_unit}&n=1")
            warm.wait_for_function("document.querySelectorAll('audio').length >= 1", timeout=180_000)
            warm.close()
            pages = [browser.new_context(viewport={"width": 1200, "height": 900}).new_page() for _ in units]
            cpu0, ccpu0, t0 = _server_cpu_s(port), _chromium_cpu_s(), time.perf_counter()
            for page, unit in zip(pages, units):
                page.goto(f"{base}/?view=unit&unit={unit}&n={n}&bottom=0", wait_until="commit")
            paint, audio = [None] * len(units), [None] * len(units)
            deadline = t0 + 300
            while any(a is None for a in audio) and time.perf_counter() < deadline:
                for i, (page, unit) in enumerate(zip(pages, units)):
                    if paint[i] is None and page.evaluate(
                            "u => [...document.querySelectorAll('h1')].some(h => h.innerText.includes(u))",
                            f"Unit {unit}"):
                        paint[i] = time.perf_counter() - t0
                    if audio[i] is None and page.evaluate(HAS_AUDIO):
                        audio[i] = time.perf_counter() - t0
                time.sleep(0.05)
            wall = time.perf_counter() - t0
            cpu = _server_cpu_s(port) - cpu0
            ccpu = _chromium_cpu_s() - ccpu0
            for page in pages:                                        # every clip's source is real audio
                src = page.eval_on_selector("audio", "e => e.currentSrc || e.src")
                assert page.request.get(src).ok
        finally:
            browser.close()
    if any(a is None for a in audio):
        raise RuntimeError(f"{sum(a is None for a in audio)} of {len(units)} sessions had no audio after 300 s")
    return {"paint": paint, "audio": audio, "wall": wall, "cpu": cpu, "chromium_cpu": ccpu}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default=os.environ.get("AUDIOVIS_WORKSPACE", "workspaces/demo"))
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--n", type=int, default=10, help="clips per unit view")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server-only", action="store_true",
                    help="no browsers: the sessions' scripts run at once in this process (AppTest threads)")
    a = ap.parse_args(argv)
    from audiovis.index import UnitIndex
    from audiovis.workspace import Workspace
    all_units = UnitIndex(Workspace(a.workspace)).units()
    rng = random.Random(a.seed)
    print(f"workspace {a.workspace}, {a.n} clips per view, {os.cpu_count()} CPU(s)")
    if a.server_only:
        print("| sessions | view finished median / max (s) | server CPU (s) | CPU / wall |")
        print("|---|---|---|---|")
    else:
        print("| sessions | first paint median / max (s) | first audio median / max (s) | server CPU (s) | "
              "Chromium CPU (s) |")
        print("|---|---|---|---|---|")
    for k in a.sessions:
        picks = rng.sample(all_units, k + 1)
        if a.server_only:
            r = server_only_round(a.workspace, picks[1:], a.n, picks[0])
            print(f"| {k} | {statistics.median(r['done']):.1f} / {max(r['done']):.1f} | {r['cpu']:.1f} | "
                  f"{r['cpu'] / r['wall']:.2f} |", flush=True)
            continue
        r = one_round(a.workspace, picks[1:], a.n, picks[0])
        print(f"| {k} | {statistics.median(r['paint']):.1f} / {max(r['paint']):.1f} | "
              f"{statistics.median(r['audio']):.1f} / {max(r['audio']):.1f} | {r['cpu']:.1f} | "
              f"{r['chromium_cpu']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
