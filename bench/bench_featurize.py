"""Benchmark of the featurize stage against the plain librosa way and the decode-only floor, on the same files.

Makes a mixed library once (re-encoding the demo's samples/audio/*.ogg into WAV, FLAC, OGG Vorbis, MP3 and
Opus at 8, 22.05, 44.1 and 48 kHz, mono and stereo) under --corpus, then times, interleaved over --repeats
rounds (the machine is shared and noisy, so ratios within a round are what to read):

- audiovis: ``audiovis.engines.local.featurize(ws, n_jobs=2, force=True)`` on an ingested workspace (decode with
  soundfile, soxr resampling, numpy/scipy log-mel, this process and one spawned worker, per-song cache files,
  consolidation into one ``logmel.npy``, the catalogue updates);
- librosa:  ``librosa.load(sr=22050)`` + ``librosa.feature.melspectrogram`` + ``librosa.power_to_db``, one process;
- floor:    decode + mono + resample only (``audiovis.audio.load``: soundfile + soxr), with the same process
  pool over both cores (``floor-2``) and in one process (``floor-1``).

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_featurize.py --songs 100 --repeats 3
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

# (extension, soundfile format, subtype, rate, channels): 10 kinds, cycled over the songs
KINDS = [("wav", "WAV", "PCM_16", 8000, 1), ("flac", "FLAC", "PCM_16", 22050, 2), ("ogg", "OGG", "VORBIS", 44100, 2),
         ("mp3", "MP3", "MPEG_LAYER_III", 44100, 2), ("opus", "OGG", "OPUS", 48000, 1),
         ("wav", "WAV", "PCM_16", 48000, 2), ("flac", "FLAC", "PCM_24", 44100, 1), ("ogg", "OGG", "VORBIS", 22050, 1),
         ("mp3", "MP3", "MPEG_LAYER_III", 22050, 1), ("wav", "WAV", "PCM_16", 22050, 1)]


def make_corpus(out: Path, n: int, samples: Path) -> list[Path]:
    import soundfile as sf
    import soxr
    out.mkdir(parents=True, exist_ok=True)
    srcs = sorted(samples.glob("*.ogg"))[:n]
    if len(srcs) < n:
        raise SystemExit(f"need {n} songs in {samples}, found {len(srcs)}")
    files = []
    for i, src in enumerate(srcs):
        ext, fmt, sub, sr, ch = KINDS[i % len(KINDS)]
        p = out / f"{src.stem}.{ext}"
        files.append(p)
        if p.exists():
            continue
        y, sr0 = sf.read(src, dtype="float32", always_2d=True)
        y = y.mean(1)
        if sr != sr0:
            y = soxr.resample(y, sr0, sr, quality="HQ").astype(np.float32)
        if ch == 2:
            y = np.stack([y, 0.9 * y], 1)
        sf.write(p, y, sr, format=fmt, subtype=sub)
    with open(out / "plays.tsv", "w") as f:
        for i, p in enumerate(files):
            f.write(f"u{i % 7}\t{p.stem}\t1\n")
    return files


def _librosa_one(path):
    import librosa
    y, sr = librosa.load(path, sr=22050)
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128)
    return librosa.power_to_db(S, ref=1.0, top_db=None)


def _floor_one(path):
    from audiovis import audio
    return len(audio.load(path, sr=22050))


def run_librosa(files):
    return [_librosa_one(str(p)) for p in files]


def run_floor(files, n_jobs):
    if n_jobs == 1:
        return [_floor_one(p) for p in files]
    with mp.get_context("spawn").Pool(n_jobs) as pool:
        return list(pool.imap_unordered(_floor_one, [str(p) for p in files], chunksize=2))


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended (pool workers)."""
    while mp.active_children():          # reap the pool's workers (featurize lets them exit in the background)
        time.sleep(0.01)
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--corpus", default="/tmp/audiovis_bench_featurize")
    ap.add_argument("--samples", default=str(Path(__file__).resolve().parents[1] / "samples" / "audio"))
    ap.add_argument("--skip-librosa", action="store_true", help="only audiovis and the floor")
    a = ap.parse_args(argv)
    from audiovis.catalog import ingest
    from audiovis.engines.local import featurize
    from audiovis.features import FeatureStore
    from audiovis.workspace import Workspace
    root = Path(a.corpus)
    files = make_corpus(root / f"lib{a.songs}", a.songs, Path(a.samples))
    hours = sum(__import__("soundfile").info(str(p)).duration for p in files) / 3600
    ws = Workspace(root / f"ws{a.songs}")
    ingest(ws, root / f"lib{a.songs}", root / f"lib{a.songs}" / "plays.tsv", progress=False)
    kinds = sorted({(k[0], k[3]) for k in KINDS})
    print(f"{len(files)} songs, {hours * 60:.1f} min of audio, kinds {kinds}; "
          f"{platform.processor() or platform.machine()}"
          f", {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    methods = {
        "audiovis": lambda: featurize(ws, n_jobs=2, force=True, progress=False),
        "floor-2": lambda: run_floor(files, 2),
        "floor-1": lambda: run_floor(files, 1),
    }
    if not a.skip_librosa:
        methods["librosa"] = lambda: run_librosa(files)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(a.repeats):
        row = []
        for m, fn in methods.items():
            c0 = _cpu_seconds()
            t0 = time.perf_counter()
            fn()
            times[m].append(time.perf_counter() - t0)
            cpu[m].append(_cpu_seconds() - c0)
            row.append(f"{m} {times[m][-1]:.1f} s")
        print(f"round {r + 1}: " + ", ".join(row) + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    print("\nmedian seconds (songs/s), and CPU seconds (all processes: what the work costs, whatever the load):")
    for m, v in med.items():
        print(f"  {m:9s} {v:7.2f} s  {len(files) / v:6.1f} songs/s  {hours * 3600 / v:6.0f}x real time   "
              f"cpu {statistics.median(cpu[m]):5.2f} s")
    par = [f1 / f2 for f1, f2 in zip(times["floor-1"], times["floor-2"])]
    print(f"parallel speed-up of the floor (floor-1 / floor-2, per round): {', '.join(f'{x:.2f}' for x in par)}; "
          f"about 1.6 on an idle 2-core machine (pool start-up included), 1 or less when another process "
          f"takes a core")
    ratios_floor = [t / f for t, f in zip(times["audiovis"], times["floor-2"])]
    print(f"audiovis / floor-2 (per round): {', '.join(f'{x:.2f}' for x in ratios_floor)}; "
          f"median {statistics.median(ratios_floor):.2f} (target <= 1.5)")
    if "librosa" in times:
        sp = [lb / t for t, lb in zip(times["audiovis"], times["librosa"])]
        print(f"librosa / audiovis speed-up (per round): {', '.join(f'{x:.2f}' for x in sp)}; "
              f"median {statistics.median(sp):.2f} (target >= 2)")
        # same numbers as librosa (librosa pads with zeros here too: compare away from the edges)
        store = FeatureStore(ws)
        errs = []
        for i in range(0, len(files), max(1, len(files) // 10)):
            ref = _librosa_one(str(files[i]))
            ours = np.asarray(store.song(i), dtype=np.float32).T
            t = min(ref.shape[1], ours.shape[1])
            errs.append(np.percentile(np.abs(ref[:, 2:t - 2] - ours[:, 2:t - 2]), 99))
        print(f"audiovis vs librosa log-mel: 99th percentile |dB difference| per song, max over 10 songs "
              f"{max(errs):.3f} dB (float16 storage, and librosa's default pad mode)")


if __name__ == "__main__":
    main()
