"""Benchmark of dictionary features and explanations on a copy of a built workspace (issue 20).

Copies the workspace (the demo's is never written to), trains a dictionary of each layer (``train_dictionary``
with ``force=True``: wall seconds, FVU, dead and dense features, detector share and count next to the layer's
units), then runs ``explain`` twice: the first run computes the librosa descriptors unless they are cached, the
second reads them (the number the issue asks for: "after the descriptors are cached"). One torch thread, as the
CLI uses.

    OPENBLAS_NUM_THREADS=1 python bench/bench_dictionary.py --demo workspaces/demo --work /tmp/bench_dict
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="workspaces/demo", help="built workspace to copy (read only)")
    ap.add_argument("--work", default="/tmp/bench_dict", help="the copy (reused when it exists)")
    ap.add_argument("--layers", nargs="+", default=None, help="default: every layer of the model")
    ap.add_argument("--out", help="also write the results as JSON")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    from audiovis.dictionary import train_dictionary
    from audiovis.explain import explain
    from audiovis.index import UnitIndex
    work = Path(a.work)
    if not work.exists():
        shutil.copytree(a.demo, work)
    layers = a.layers or list(UnitIndex(work, dictionaries=False).layers)
    rows = []
    for layer in layers:
        t0 = time.perf_counter()
        rep = train_dictionary(work, layer, force=True, progress=False)
        rows.append({"wall_s": round(time.perf_counter() - t0, 2), **rep})
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        res = explain(work, progress=False)
        times.append(round(time.perf_counter() - t0, 2))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, 1 torch thread")
    print("| dictionary | features (k) | wall s | FVU | dead | dense | detector share (count, concepts) | "
          "the layer's units |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['features']} ({r['config']['k']}) | {r['wall_s']:.1f} | {r['fvu']:.4f} | "
              f"{r['dead']} | {r['dense']} | {100 * r['detector_share']:.1f}% ({r['detectors']}, "
              f"{r['concepts_detected']}) | {100 * r['unit_detector_share']:.1f}% ({r['unit_detectors']}, "
              f"{r['unit_concepts_detected']}) |")
    print(f"\nexplain: first run {times[0]:.1f} s, second run (descriptors cached) {times[1]:.1f} s, "
          f"{len(res['units'])} units and features")
    print("| layer | units | scored | silent | median score |\n|---|---|---|---|---|")
    for layer, s in res["layers"].items():
        med = "n/a" if s["median_score"] is None else f"{s['median_score']:.3f}"
        print(f"| {layer} | {s['units']} | {s['scored']} | {s['silent']} | {med} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"dictionaries": rows, "explain_s": times, "layers": res["layers"]},
                                          indent=2))


if __name__ == "__main__":
    main()
