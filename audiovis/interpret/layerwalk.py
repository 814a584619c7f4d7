"""One clip through every layer (after CNN Explainer, Wang et al. 2020): each layer's units as a time x unit
picture, and the units that fire most in it, each of which the page links to its unit view."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TOP = 5


@dataclass
class LayerStep:
    """One layer on one clip.

    Attributes
    ----------
    layer : str
    A : np.ndarray [shape=(units, time)]   (time 1 for layers without a time axis)
    duration_s : float                      the window's length (its time steps tile it)
    top : list of (unit name, activation)   the units with the highest activation (max over time), best first
    """

    layer: str
    A: np.ndarray
    duration_s: float
    top: list


def layer_walk(net, window, top: int = TOP, layers: list[str] | None = None) -> list[LayerStep]:
    """Every layer's activations on ``window`` (one forward pass), in forward order."""
    sizes = net.layers(window)
    names = list(layers) if layers is not None else list(sizes)
    with torch.no_grad():
        acts, _ = net.forward(torch.from_numpy(window.S_db[None]), names, window)
    out = []
    unit_names = getattr(sizes, "names", {})
    for name in names:
        a = acts[name][0].float().numpy()
        A = a if a.ndim == 2 else a[:, None]
        peak = A.max(axis=1)
        best = np.argsort(-peak, kind="stable")[:top]
        label = unit_names.get(name)
        out.append(LayerStep(name, A.astype(np.float32), window.fcfg.window_s,
                             [(f"{name}:{label[i]}" if label else f"{name}:{i}", float(peak[i])) for i in best]))
    return out
