"""Benchmark of concurrent visitors: 1, 2, 4 and 8 browser sessions open different unit views at the same time.

For each session count, a fresh `audiovis serve` is started and warmed with one view (model and index loaded),
then that many headless Chromium sessions open unit views of units nobody has viewed yet, all at once. Per
session it records the time to first paint (the unit's title is drawn) and to first audio (the first clip's
player has a source the browser can fetch). It also reads the server's CPU time (user + system, /proc) over the
round, so that waiting (wall >> CPU) and work (CPU) can be told apart.

    OPENBLAS_NUM_THREADS=1 python bench/bench_sessions.py -w workspaces/demo --sessions 1 2 4 8 --n 10

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
            cpu0, t0 = _server_cpu_s(port), time.perf_counter()
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
            for page in pages:                                        # every clip's source is real audio
                src = page.eval_on_selector("audio", "e => e.currentSrc || e.src")
                assert page.request.get(src).ok
        finally:
            browser.close()
    if any(a is None for a in audio):
        raise RuntimeError(f"{sum(a is None for a in audio)} of {len(units)} sessions had no audio after 300 s")
    return {"paint": paint, "audio": audio, "wall": wall, "cpu": cpu}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default=os.environ.get("AUDIOVIS_WORKSPACE", "workspaces/demo"))
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--n", type=int, default=10, help="clips per unit view")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from audiovis.index import UnitIndex
    all_units = UnitIndex(a.workspace).units()
    rng = random.Random(a.seed)
    print(f"workspace {a.workspace}, {a.n} clips per view, {os.cpu_count()} CPU(s)")
    print("| sessions | first paint median / max (s) | first audio median / max (s) | server CPU (s) | "
          "CPU / wall |")
    print("|---|---|---|---|---|")
    for k in a.sessions:
        picks = rng.sample(all_units, k + 1)
        r = one_round(a.workspace, picks[1:], a.n, picks[0])
        print(f"| {k} | {statistics.median(r['paint']):.1f} / {max(r['paint']):.1f} | "
              f"{statistics.median(r['audio']):.1f} / {max(r['audio']):.1f} | {r['cpu']:.1f} | "
              f"{r['cpu'] / r['wall']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
