"""Parameterisations of the log-mel input: a bounded image inside a plausible dB range.

``x = lo + (hi - lo) * sigmoid(p)`` per mel bin, so every step stays inside the range real music occupies
(by default the training data's per-bin mean +- ``k`` standard deviations, read from the model's standardisation
buffers), and the optimiser cannot reach implausible loudness.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ParameterError


def data_range(model, k: float = 2.5, floor_db: float = -100.0, ceil_db: float = 20.0):
    """Per-bin plausible dB range from the model's input statistics: (lo, hi) each [shape=(n_mels, 1)]."""
    m, s = model.in_mean.detach().float(), model.in_std.detach().float()
    lo = torch.clamp(m - k * s, min=floor_db)
    hi = torch.clamp(m + k * s, max=ceil_db)
    hi = torch.maximum(hi, lo + 1.0)
    return lo, hi


class BoundedLogmel(torch.nn.Module):
    """A log-mel image [shape=(n_mels, frames)] bounded per mel bin to ``[lo, hi]`` dB by a sigmoid.

    Parameters
    ----------
    lo, hi : torch.Tensor [shape=(n_mels, 1)] or float
    frames : int
    init : np.ndarray or torch.Tensor [shape=(n_mels, frames)], optional
        A real clip's log-mel in dB ("deep dream" start); default: noise around the middle of the range.
    noise : float
        Standard deviation of the initial noise in logit units.
    seed : int
    """

    def __init__(self, lo, hi, frames: int, init=None, noise: float = 0.5, seed: int = 0):
        super().__init__()
        lo = torch.as_tensor(lo, dtype=torch.float32)
        hi = torch.as_tensor(hi, dtype=torch.float32)
        if lo.ndim == 0:
            lo, hi = lo.reshape(1, 1), hi.reshape(1, 1)
        if bool((hi <= lo).any()):
            raise ParameterError("dB range: every upper bound must be above its lower bound")
        self.register_buffer("lo", lo)
        self.register_buffer("hi", hi)
        n_mels = lo.shape[0] if lo.shape[0] > 1 else None
        g = torch.Generator().manual_seed(seed)
        if init is not None:
            x0 = torch.as_tensor(np.asarray(init, dtype=np.float32))
            if x0.ndim != 2 or (n_mels and x0.shape[0] != n_mels):
                raise ParameterError(f"initial log-mel must have shape (n_mels, frames), got {tuple(x0.shape)}")
            u = ((x0 - lo) / (hi - lo)).clamp(0.02, 0.98)
            p = torch.log(u / (1 - u)) + 0.05 * torch.randn(x0.shape, generator=g)
        else:
            if n_mels is None:
                raise ParameterError("without an initial clip the range needs one bound per mel bin")
            p = noise * torch.randn((n_mels, frames), generator=g)
        self.p = torch.nn.Parameter(p)

    def forward(self) -> torch.Tensor:
        """The log-mel in dB [shape=(n_mels, frames)]."""
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.p)
