"""Benchmark of training throughput: windows per second per model preset (small, paper), CPU (and CUDA if any).

Times what ``audiovis.train.train`` does per step (random 3 s crops from the memory-mapped features, forward,
MSE, backward, AdamW step) for a few steps per preset after one warm-up step, and the inference throughput
of the same model (what ``evaluate`` and ``index`` pay per window). Presets run interleaved over --repeats
rounds.

    OPENBLAS_NUM_THREADS=1 nice python bench/bench_train.py --workspace /tmp/demo_ws2 --steps 5
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default="/tmp/demo_ws2", help="a workspace with features and factors")
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    import numpy as np
    import torch
    import torch.nn.functional as F

    from audiovis.factors import load_factors
    from audiovis.features import FeatureStore
    from audiovis.model import AudioCNN
    from audiovis.train import _Crops, model_config, pick_device
    from audiovis.workspace import Workspace
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    ws = Workspace(a.workspace)
    store = FeatureStore(ws)
    Y = load_factors(ws)["song_factors"]
    songs = np.arange(store.n_songs)
    crops = _Crops(store, songs, Y, np.random.default_rng(0))
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (no GPU lent to this session)"
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads, device {dev}, GPU: {gpu}; load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; batch {a.batch_size}, {a.steps} steps")
    models = {}
    for p in a.presets:
        torch.manual_seed(0)
        m = AudioCNN(model_config(p, Y.shape[1], store.cfg.n_mels, store.cfg.window_frames)).to(dev)
        models[p] = (m, torch.optim.AdamW(m.parameters(), lr=1e-3))
    res = {p: {"train": [], "infer": []} for p in a.presets}

    def step(m, opt):
        x, y = crops.sample(a.batch_size)
        x, y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        loss = F.mse_loss((m(x) - y) / m.out_std, torch.zeros_like(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for r in range(a.repeats):
        for p, (m, opt) in models.items():
            m.train()
            step(m, opt)                                               # warm-up
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step(m, opt)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            tr = a.steps * a.batch_size / (time.perf_counter() - t0)
            m.eval()
            x = torch.from_numpy(crops.sample(256)[0]).to(dev)
            with torch.no_grad():
                m(x)
                t0 = time.perf_counter()
                for _ in range(2):
                    m(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            inf = 2 * 256 / (time.perf_counter() - t0)
            res[p]["train"].append(tr)
            res[p]["infer"].append(inf)
            n_par = sum(q.numel() for q in m.parameters())
            print(f"round {r + 1}: {p:6s} ({n_par / 1e6:5.2f} M params): train {tr:7.1f} windows/s, "
                  f"inference {inf:7.1f} windows/s (load {os.getloadavg()[0]:.1f})", flush=True)
    print("\nmedian:")
    for p in a.presets:
        tr, inf = statistics.median(res[p]["train"]), statistics.median(res[p]["infer"])
        print(f"  {p:6s} train {tr:7.1f} windows/s ({3 * tr / 60:5.1f} min of audio per s), inference {inf:7.1f} "
              f"windows/s")
    if len(a.presets) > 1:
        p0, p1 = a.presets[:2]
        speed = statistics.median(res[p0]['train']) / statistics.median(res[p1]['train'])
        print(f"{p0} / {p1} training speed: {speed:.1f}x")


if __name__ == "__main__":
    main()
