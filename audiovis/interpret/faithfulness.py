"""Faithfulness, measured: deletion curves (Samek et al. 2017; Petsiuk et al. 2018's RISE deletion metric).

Cells are set to the clip's floor (the baseline of :mod:`.attribution`) in order, most attributed first, in
``steps`` equal steps of the grid, and the model is run again at each step. The curve is the target's change over
the floor, as a share of the clip's: 1 for the clip, 0 when every cell is removed. Its area (mean over the steps,
trapezoid rule on the fraction removed) is small when the cells an attribution ranks first really carry the
target. The same is done for random orders of the cells (``n_random`` of them, averaged): an attribution whose
area is not below random's is no better than guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ParameterError
from .attribution import target_function

STEPS = 10
N_RANDOM = 2


@dataclass
class Deletion:
    """Attributes: ``fractions`` [shape=(steps + 1,)] of cells removed; ``curve`` and ``random`` (mean of the
    random orders) [shape=(steps + 1,)]; ``area`` and ``random_area``."""

    fractions: np.ndarray
    curve: np.ndarray
    random: np.ndarray
    area: float
    random_area: float
    random_areas: list = field(default_factory=list)

    @property
    def better_than_random(self) -> bool:
        return self.area < self.random_area

    def to_dict(self) -> dict:
        return {"area": self.area, "random_area": self.random_area, "random_areas": list(self.random_areas),
                "better_than_random": self.better_than_random, "fractions": self.fractions.tolist(),
                "curve": self.curve.tolist(), "random_curve": self.random.tolist()}


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def deletion_values(net, target, window, order: np.ndarray, fractions: np.ndarray, batch: int = 8) -> np.ndarray:
    """The target with the first ``fraction`` of cells in ``order`` (flat indices) set to the floor."""
    f = target_function(net, target, window)
    x = window.S_db.ravel()
    rows = []
    for fr in fractions:
        z = x.copy()
        z[order[:int(round(fr * x.size))]] = window.floor_db
        rows.append(z.reshape(window.S_db.shape))
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            out.append(f(torch.from_numpy(np.stack(rows[i:i + batch]))).numpy())
    return np.concatenate(out).astype(np.float64)


def deletion(att, steps: int = STEPS, n_random: int = N_RANDOM, seed: int = 0, net=None) -> Deletion:
    """Deletion curve of an :class:`~.attribution.Attribution` against ``n_random`` random orders.

    Parameters
    ----------
    att : Attribution;  net : Network (the one ``att`` was made with)
    steps : int   points of the curve past 0
    """
    if net is None:
        raise ParameterError("deletion needs the network the attribution was made with (net=)")
    if steps < 1 or n_random < 1:
        raise ParameterError(f"deletion steps {steps!r} and n_random {n_random!r} must be at least 1")
    w, t = att.window, att.target
    fr = np.linspace(0.0, 1.0, int(steps) + 1)
    change = att.change

    def norm(v):
        return (v - att.floor_value) / change

    toward = np.sign(change) * att.A          # the cells that carry the clip's difference from its floor first
    curve = norm(deletion_values(net, t, w, np.argsort(-toward, axis=None, kind="stable"), fr))
    rng = np.random.default_rng(seed)
    rand = [norm(deletion_values(net, t, w, rng.permutation(att.A.size), fr)) for _ in range(int(n_random))]
    R = np.mean(rand, axis=0)
    return Deletion(fr, curve, R, _trapezoid(curve, fr), _trapezoid(R, fr), [_trapezoid(r, fr) for r in rand])
