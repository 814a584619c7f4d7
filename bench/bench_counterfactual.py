"""Counterfactual cold-start queries and the listeners step (audiovis.counterfactual, audiovis.listeners).

    python bench/bench_counterfactual.py -w /tmp/ws_listen [--threads 2] [--songs 20] [--listeners]

1. Counterfactual query, after the song's features are computed (``ColdStart.counterfactual`` on an embedding
   kept with ``keep_frames=True``: the song's windows through the model with the units changed, similar songs
   with their closest windows, likely listeners, the comparison): for ``--songs`` held-out demo songs (split
   ``test``, read as new files), one ablation (the song's most active unit), one clamp (that unit at twice its
   peak), three ablations at once and, per dense-layer dictionary (``audiovis dictionary``), an ablation of the
   song's strongest feature. p50 / max over all queries. Also ``listener_drivers`` (every conv and dense
   unit ablated in turn, for the 10 likely listeners) and the full ``recommend`` with ``--ablate``.
2. ``--listeners``: ``build_listeners(force=True)`` on the workspace (write access: use a copy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--songs", type=int, default=20)
    ap.add_argument("--listeners", action="store_true", help="also time the listeners step (writes into -w)")
    a = ap.parse_args(argv)
    import torch

    from audiovis import listeners as L
    from audiovis.coldstart import get_engine
    from audiovis.counterfactual import listener_drivers
    from audiovis.workspace import Workspace
    torch.set_num_threads(a.threads)
    ws = Workspace(a.workspace)
    eng = get_engine(ws)
    test = [s for s, sp in zip(ws.songs(), ws.splits()) if sp == "test"][:a.songs]
    dicts = L.feature_dictionaries(eng.index, eng.model)
    cf_t, drv_t, rec_t, examples = [], [], [], []
    for i, s in enumerate(test):
        path = ws.resolve_audio(s["path"])
        emb = eng.embed_file(path, units=True, keep_frames=True)
        units = [u["unit"] for u in eng.active_units(emb, 3)]
        top = eng.active_units(emb, 1)[0]
        queries = [([units[0]], []), ([], [f"{units[0]}={2 * top['peak_activation']:.3f}"]), (units, [])]
        for name, (base, sae) in dicts.items():                     # the song's strongest dictionary feature
            lo = L.unit_names(eng.layers).index(f"{base}:0")
            z = sae.encode(emb.acts[:, lo:lo + eng.layers[base]])
            queries.append(([f"{name}:{int(z.max(0).argmax())}"], []))
        for ablate, clamp in queries:
            t0 = time.perf_counter()
            cf = eng.counterfactual(emb, ablate, clamp, k=10, n_users=10, exclude=[s["idx"]])
            cf_t.append(time.perf_counter() - t0)
            if i < 3:
                examples.append({"song": s["song_id"], "interventions": cf["interventions"],
                                 "windows_changed": f"{cf['windows_changed']}/{cf['windows']}",
                                 "cosine": round(cf["cosine_to_original"], 4),
                                 "similar_kept": cf["changes"]["similar"]["kept"],
                                 "listeners_kept": cf["changes"]["listeners"]["kept"]})
        t0 = time.perf_counter()
        listener_drivers(eng, emb, eng.listeners(emb.factors, 10))
        drv_t.append(time.perf_counter() - t0)
        if i < 5:
            t0 = time.perf_counter()
            eng.recommend(path, ablate=[units[0]])
            rec_t.append(time.perf_counter() - t0)
    ms = lambda ts, q: round(float(np.percentile(np.asarray(ts) * 1e3, q)), 1)   # noqa: E731
    out = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                      f"torch {torch.__version__}, {a.threads} threads",
           "songs": len(test), "counterfactual_ms": {"n": len(cf_t), "p50": ms(cf_t, 50), "max": ms(cf_t, 100)},
           "drivers_ms": {"p50": ms(drv_t, 50), "max": ms(drv_t, 100)},
           "recommend_with_ablate_ms": {"p50": ms(rec_t, 50), "max": ms(rec_t, 100)}, "examples": examples}
    if a.listeners:
        t0 = time.perf_counter()
        summary = L.build_listeners(ws, force=True, progress=False)
        out["listeners_step"] = {**summary, "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
