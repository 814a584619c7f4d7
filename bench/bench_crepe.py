"""CREPE through the model adapter: index the demo's songs without plays, then the truth check of its pitch units.

CREPE's ``pitch`` units are pitch bins. The check: for every bin unit that fires (its best window reaches
``--fires``), estimate the pitch of each of its top clips independently with librosa's pyin (the median f0 of the
voiced frames within ``--around`` seconds of the unit's peak), take the median over the clips, and count the bin as
right when that is within one semitone of the bin's centre frequency. Also reported: within one semitone modulo
octaves (pyin and CREPE can disagree by an octave on a mixture), and the index time.

    OPENBLAS_NUM_THREADS=1 python bench/bench_crepe.py --workspace /tmp/ws_crepe            # builds it if missing
    OPENBLAS_NUM_THREADS=1 python bench/bench_crepe.py --workspace /tmp/ws_crepe --songs 40  # a quicker subset
    OPENBLAS_NUM_THREADS=1 python bench/bench_crepe.py --speed 4     # seconds per 3 s window, tiny against full
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def build(ws: Path, samples: Path, songs: int | None, capacity: str) -> float:
    from audiovis.pipeline import run_pipeline
    manifest = samples / "songs.csv"
    if songs:                                        # the first N songs of the demo's manifest
        rows = list(csv.reader(manifest.open()))
        tmp = Path(tempfile.mkdtemp()) / "songs.csv"
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(rows[:songs + 1])
        manifest = tmp
    t0 = time.perf_counter()
    run_pipeline(ws, samples, None, manifest, manifest, model=f"crepe:{capacity}")
    return time.perf_counter() - t0


def clip_pitch(path, peak_s: float, around: float) -> float:
    import librosa

    from audiovis.audio import load
    start = max(0.0, peak_s - around)
    y = load(path, sr=22050, offset=start, duration=2 * around, allow_silence=True)
    f0, voiced, _ = librosa.pyin(y, fmin=40, fmax=2000, sr=22050, frame_length=2048)
    f = f0[voiced & np.isfinite(f0)]
    return float(np.median(f)) if len(f) else float("nan")


def truth_check(ws: Path, fires: float, n_clips: int, around: float) -> dict:
    from audiovis.adapters import crepe_bin_frequency
    from audiovis.index import UnitIndex
    from audiovis.workspace import Workspace
    ix = UnitIndex(ws)
    songs = Workspace(ws).songs()
    cache: dict = {}
    firing, right, right_oct, no_pitch, errors = 0, 0, 0, 0, []
    for b in range(ix.layers["pitch"]):
        top = [t for t in ix.top(f"pitch:{b}", n=n_clips) if t["activation"] >= fires]
        if not top:
            continue
        firing += 1
        fs = []
        for t in top:
            key = (t["song_idx"], round(t["peak_s"], 2))
            if key not in cache:
                cache[key] = clip_pitch(Workspace(ws).resolve_audio(songs[t["song_idx"]]["path"]), t["peak_s"], around)
            fs.append(cache[key])
        fs = np.array([f for f in fs if np.isfinite(f)])
        if not len(fs):
            no_pitch += 1
            continue
        semis = 12 * np.log2(np.median(fs) / crepe_bin_frequency(b))
        errors.append(float(semis))
        right += abs(semis) <= 1.0
        right_oct += abs(semis - 12 * np.round(semis / 12)) <= 1.0
    return {"bins": ix.layers["pitch"], "firing": firing, "right": int(right), "right_mod_octave": int(right_oct),
            "no_pitch_found": no_pitch, "share_right": right / max(firing, 1),
            "share_right_mod_octave": right_oct / max(firing, 1),
            "median_abs_error_semitones": float(np.median(np.abs(errors))) if errors else float("nan"),
            "clips_pitched": len(cache)}


def speed(n: int) -> dict:
    """Seconds per 3 s window of random audio through each CREPE capacity (one warm-up window first)."""
    import torch

    from audiovis.adapters import CrepeAdapter
    x = torch.randn(n, 48000)
    out = {}
    for cap in ("tiny", "full"):
        ad = CrepeAdapter(cap)
        ad.outputs(x[:1])
        t0 = time.perf_counter()
        ad.outputs(x)
        out[f"{cap}_s_per_window"] = round((time.perf_counter() - t0) / n, 3)
    out["full_over_tiny"] = round(out["full_s_per_window"] / out["tiny_s_per_window"], 1)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default="/tmp/ws_crepe")
    ap.add_argument("--samples", default=str(Path(__file__).resolve().parents[1] / "samples"))
    ap.add_argument("--songs", type=int, default=None, help="only the first N songs of the demo (default: all)")
    ap.add_argument("--capacity", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--fires", type=float, default=0.5, help="a bin fires when its best window reaches this")
    ap.add_argument("--clips", type=int, default=5, help="top clips per bin to pitch with pyin")
    ap.add_argument("--around", type=float, default=0.25, help="seconds either side of the peak for pyin")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--speed", type=int, default=0, metavar="N",
                    help="only time N windows through tiny and full, and exit")
    a = ap.parse_args(argv)
    if a.speed:
        print(json.dumps(speed(a.speed), indent=2))
        return
    ws = Path(a.workspace)
    if a.rebuild and ws.exists():
        shutil.rmtree(ws)
    index_s = build(ws, Path(a.samples), a.songs, a.capacity) if not (ws / "index" / "units.npz").exists() else None
    t0 = time.perf_counter()
    res = truth_check(ws, a.fires, a.clips, a.around)
    res.update(index_s=None if index_s is None else round(index_s, 1), check_s=round(time.perf_counter() - t0, 1),
               capacity=a.capacity, workspace=str(ws))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
