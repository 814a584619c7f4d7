"""Cold-start benchmarks: embed + recommend latency, and similarity search over 1,000,000 vectors.

    python bench/bench_coldstart.py -w /tmp/demo_ws [--threads 2] [--n-vectors 1000000] [--skip-ann] [--skip-latency]

1. Latency (model warm, torch limited to --threads): ``ColdStart.recommend`` end to end (decode, log-mel, CNN on
   every window with unit activations, similarity search, listeners, units) for a 30 s and a 5-minute song made
   by concatenating demo songs (OGG Vorbis, as uploads would be). Reports p50 / p90 over repeats.
2. Similarity search: n random Gaussian vectors and n demo-derived ones (a catalogue song's predicted factors
   plus Gaussian noise of 0.3 x the per-dimension std), dimension 32. faiss HNSW (the default) and IVF, each with
   its search knob calibrated to recall@10 >= 0.97 against exact search, versus exact search (numpy, one
   matrix-vector product + argpartition): build time, p50 per single query, recall@10 on 200 fresh queries.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def _p(ts, q):
    return float(np.percentile(np.asarray(ts) * 1e3, q))


def make_song(ws, seconds: float, out: Path, seed: int = 0) -> Path:
    import soundfile as sf

    from audiovis import audio
    rng = np.random.default_rng(seed)
    songs = ws.songs()
    parts, total = [], 0
    while total < seconds * 22050:
        y = audio.load(ws.resolve_audio(songs[int(rng.integers(len(songs)))]["path"]))
        parts.append(y)
        total += len(y)
    y = np.concatenate(parts)[:int(seconds * 22050)]
    # libsndfile's Vorbis encoder crashes on very large single writes: write in 1 s blocks
    with sf.SoundFile(out, "w", 22050, 1, format="OGG", subtype="VORBIS") as f:
        for i in range(0, len(y), 22050):
            f.write(y[i:i + 22050])
    return out


def bench_latency(ws_path, threads: int, repeats=(21, 7)) -> dict:
    import torch

    from audiovis.coldstart import get_engine
    from audiovis.workspace import Workspace
    torch.set_num_threads(threads)
    ws = Workspace(ws_path)
    eng = get_engine(ws)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for (label, sec), n in zip((("30s", 30.0), ("5min", 300.0)), repeats):
            f = make_song(ws, sec, Path(d) / f"song_{label}.ogg")
            eng.recommend(f)                           # warm-up (and the model stays loaded)
            ts, te = [], []
            for _ in range(n):
                t0 = time.perf_counter()
                eng.embed_file(f)
                te.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                eng.recommend(f)
                ts.append(time.perf_counter() - t0)
            res[label] = {"recommend_p50_ms": round(_p(ts, 50), 1), "recommend_p90_ms": round(_p(ts, 90), 1),
                          "embed_only_p50_ms": round(_p(te, 50), 1), "repeats": n}
            print(f"latency {label}: recommend p50 {res[label]['recommend_p50_ms']} ms, p90 "
                  f"{res[label]['recommend_p90_ms']} ms; embed only p50 {res[label]['embed_only_p50_ms']} ms",
                  flush=True)
    return res


def bench_ann(ws_path, n: int, threads: int, n_queries: int = 200, methods=("hnsw", "ivf")) -> dict:
    import faiss

    from audiovis.ann import VectorIndex, _unit_rows, exact_search, recall_at_k
    from audiovis.coldstart import get_engine
    from audiovis.workspace import Workspace
    faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(0)
    d = 32
    Y = get_engine(Workspace(ws_path)).song_factors
    Y = Y[np.all(np.isfinite(Y), axis=1)]
    sd = Y.std(0)

    def demo_like(m):
        return (Y[rng.integers(0, len(Y), m)] + 0.3 * sd * rng.standard_normal((m, Y.shape[1]))).astype(np.float32)

    out = {}
    for name, gen in (("random", lambda m: rng.standard_normal((m, d)).astype(np.float32)),
                      ("demo-derived", demo_like)):
        X = gen(n)
        Q = gen(n_queries)
        Xn, valid = _unit_rows(X)
        Qn, _ = _unit_rows(Q)
        t0 = time.perf_counter()
        truth, _ = exact_search(Xn, valid, Qn, 10)
        batch_exact_s = time.perf_counter() - t0
        te = []
        for q in Qn[:50]:
            t0 = time.perf_counter()
            exact_search(Xn, valid, q[None], 10)
            te.append(time.perf_counter() - t0)
        for method in methods:
            vi = VectorIndex(X, method=method, seed=0)
            ta = []
            for q in Q:
                t0 = time.perf_counter()
                vi.search(q, 10)
                ta.append(time.perf_counter() - t0)
            I, _ = vi.search(Q, 10)
            r = {"n": n, "dim": d, "method": method, "build_s": round(vi.build_s, 1),
                 ("nprobe" if method == "ivf" else "efSearch"): vi.nprobe,
                 "calibration_recall": round(vi.calibrated_recall, 4), "ann_p50_ms": round(_p(ta, 50), 3),
                 "ann_p90_ms": round(_p(ta, 90), 3), "recall_at_10": round(recall_at_k(I, truth), 4),
                 "exact_p50_ms": round(_p(te, 50), 2), "speedup_vs_exact": round(_p(te, 50) / _p(ta, 50), 1),
                 "exact_batch_200_s": round(batch_exact_s, 2)}
            if method == "ivf":
                r["nlist"] = int(vi._ivf.nlist)
            out[f"{name}/{method}"] = r
            print(f"ann {name}: {json.dumps(r)}", flush=True)
            del vi
        del X, Xn
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="/tmp/demo_ws")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-vectors", type=int, default=1_000_000)
    ap.add_argument("--skip-ann", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    res = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores visible, torch/faiss threads {a.threads}",
           "load_avg": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not a.skip_latency:
        res["latency"] = bench_latency(a.workspace, a.threads)
    if not a.skip_ann:
        res["ann"] = bench_ann(a.workspace, a.n_vectors, a.threads)
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
