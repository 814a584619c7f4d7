"""Building blocks both network families share: the dense head from pooled features to the factors."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class DenseBlock(nn.Module):
    """Linear + ReLU; a ``dense`` layer's output is its activation (what the index records)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x):                      # (B, d_in) -> (B, d_out)
        return F.relu(self.linear(x))


def add_head(net: nn.Module, d_in: int, dense: tuple, n_factors: int, dropout: float) -> list[str]:
    """Add ``dense1``... (:class:`DenseBlock`), ``drop`` and ``output`` (linear to the factors) to ``net``;
    returns the dense layers' names."""
    names = []
    for i, d in enumerate(dense, start=1):
        net.add_module(f"dense{i}", DenseBlock(d_in, d))
        names.append(f"dense{i}")
        d_in = d
    net.drop = nn.Dropout(dropout)
    net.output = nn.Linear(d_in, n_factors)
    return names
