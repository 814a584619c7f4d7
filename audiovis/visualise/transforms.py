"""Transformation robustness and smoothness: random jitter each step, total variation over time and frequency."""
from __future__ import annotations

import torch


def jitter(x: torch.Tensor, max_time: int = 8, max_freq: int = 1, generator: torch.Generator | None = None,
           batch: int = 1) -> torch.Tensor:
    """``batch`` randomly shifted copies of ``x`` [shape=(n_mels, T)] -> [shape=(batch, n_mels, T)].

    Time shifts are circular (the network is nearly shift-invariant in time, so the image must not depend on
    where a pattern sits); frequency shifts (a bin or two, like a small transposition) replicate the edge bin.
    """
    out = []
    for _ in range(batch):
        dt = int(torch.randint(-max_time, max_time + 1, (1,), generator=generator)) if max_time else 0
        df = int(torch.randint(-max_freq, max_freq + 1, (1,), generator=generator)) if max_freq else 0
        y = torch.roll(x, dt, dims=-1)
        if df > 0:
            y = torch.cat([y[:1].expand(df, -1), y[:-df]], 0)
        elif df < 0:
            y = torch.cat([y[-df:], y[-1:].expand(-df, -1)], 0)
        out.append(y)
    return torch.stack(out)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring cells over time and over frequency (dB per cell)."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().mean() + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
