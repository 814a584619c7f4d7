"""Throughput of the pretrained musicnn front end on a CPU, beside the featurize floor, in seconds of audio per
second (per core where run on one thread).

On --songs of the demo's audio (samples/audio, decoded at 16 kHz), interleaved over --repeats rounds (the machine
is shared and noisy, so read the ratios within a round):

- decode:   ``audiovis.audio.load(sr=16000)`` (soundfile + soxr), the floor every stage pays once;
- logmel:   decode + ``audiovis.features.logmel`` at musicnn's settings (what featurize computes per song);
- musicnn-N: the frozen front end's pass per 3 s window (``audiovis.models.frozen.trunk_rows``: the tagger's
  layers, their pooled features and every unit's window maximum and peak; what ``train`` caches and ``index``
  reuses), with torch on N threads, batches of 64 windows.

    OPENBLAS_NUM_THREADS=1 python bench/bench_musicnn.py --songs 20 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--songs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    from audiovis.audio import load
    from audiovis.features import logmel
    from audiovis.models.frozen import trunk_rows
    from audiovis.models.musicnn import HOP_LENGTH, N_FFT, N_FRAMES, N_MELS, SR, load_musicnn
    files = sorted((Path(__file__).resolve().parents[1] / "samples" / "audio").glob("*.ogg"))[:a.songs]
    net = load_musicnn("msd")
    results: dict[str, list[float]] = {}
    for r in range(a.repeats):
        t0 = time.perf_counter()
        ys = [load(f, sr=SR) for f in files]
        t_dec = time.perf_counter() - t0
        audio_s = sum(len(y) for y in ys) / SR
        t0 = time.perf_counter()
        mels = [logmel(y, sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS) for y in ys]
        t_mel = time.perf_counter() - t0
        wins = np.concatenate([np.stack([S[:, i:i + N_FRAMES] for i in range(0, S.shape[1] - N_FRAMES + 1,
                                                                                 N_FRAMES)]) for S in mels])
        results.setdefault("decode (1 process)", []).append(audio_s / t_dec)
        results.setdefault("decode + logmel (1 process)", []).append(audio_s / (t_dec + t_mel))
        win_audio = len(wins) * N_FRAMES * HOP_LENGTH / SR
        for n in a.threads:
            torch.set_num_threads(n)
            with torch.no_grad():
                trunk_rows(net, torch.from_numpy(wins[:2]), HOP_LENGTH / SR)       # warm up
                t0 = time.perf_counter()
                for i in range(0, len(wins), 64):
                    trunk_rows(net, torch.from_numpy(wins[i:i + 64]), HOP_LENGTH / SR)
                dt = time.perf_counter() - t0
            results.setdefault(f"musicnn front end ({n} thread{'s' if n > 1 else ''})", []).append(win_audio / dt)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()), flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{len(files)} songs, {audio_s:.0f} s of audio, {len(wins)} windows\n")
    print("| step | seconds of audio per second (median of rounds) |\n|---|---|")
    for k, v in results.items():
        print(f"| {k} | {statistics.median(v):.1f} |")


if __name__ == "__main__":
    main()
