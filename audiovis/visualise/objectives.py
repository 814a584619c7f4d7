"""Objectives: scalar functions of the recorded activations that the optimiser maximises.

Names follow :mod:`audiovis.units`: ``"conv2:17"`` (one unit), ``"conv2"`` (a whole layer, deep-dream style),
``"output:3"`` (one latent factor). A :class:`TargetObjective` pulls the output towards a target vector.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..units import layer_sizes, parse_unit


@dataclass(frozen=True)
class Objective:
    """Maximise one unit (``index`` set) or a whole layer (``index`` None).

    A conv unit's value while optimising is the mean of its activation over time (smooth, every frame gets a
    gradient); :meth:`measure` reports what the unit index stores: the maximum over time inside the window.
    """

    layer: str
    index: int | None = None

    @property
    def name(self) -> str:
        return self.layer if self.index is None else f"{self.layer}:{self.index}"

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __call__(self, acts: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        """Per-example value [shape=(b,)] to maximise."""
        a = acts[self.layer]
        if self.index is None:
            return (a ** 2).flatten(1).mean(1)          # whole layer: mean squared activation (deep dream)
        a = a[:, self.index]
        return a.mean(-1) if a.ndim == 2 else a        # conv (b, T) -> mean over time; dense/output (b,)

    def measure(self, acts: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        """The activation as the unit index measures it [shape=(b,)]: max over time (conv) or the value."""
        a = acts[self.layer]
        if self.index is None:
            return (a ** 2).flatten(1).mean(1)
        a = a[:, self.index]
        return a.amax(-1) if a.ndim == 2 else a


@dataclass(frozen=True)
class TargetObjective:
    """Pull the model output towards ``target`` [shape=(n_factors,)]: maximise cosine or minimise squared error.

    The value is ``cos(f(x), target)`` (``loss="cosine"``) or ``-||f(x) - target||^2`` (``loss="mse"``).
    """

    target: torch.Tensor
    loss: str = "cosine"
    name: str = "target"

    def __post_init__(self):
        if self.loss not in ("cosine", "mse"):
            raise ParameterError(f"loss {self.loss!r} is not 'cosine' or 'mse'")

    @property
    def layers(self) -> list[str]:
        return []

    def __call__(self, acts, out: torch.Tensor) -> torch.Tensor:
        t = self.target.to(out).expand_as(out)
        if self.loss == "cosine":
            return F.cosine_similarity(out, t, dim=-1)
        return -((out - t) ** 2).sum(-1)

    def measure(self, acts, out):
        return self(acts, out)


def parse_objective(spec: str, model=None) -> Objective:
    """Parse ``"conv2:17"``, ``"conv2"`` or ``"output:3"``; with ``model`` also check layer and range.

    Raises
    ------
    ParameterError  naming the bad value and what is allowed.
    """
    layers = layer_sizes(model) if model is not None else None
    s = str(spec).strip()
    if ":" in s:
        u = parse_unit(s, layers)
        return Objective(u.layer, u.index)
    if not s or " " in s:
        raise ParameterError(f"objective {spec!r} is not a unit ('conv2:17'), a layer ('conv2') or a factor "
                             f"('output:3')")
    if layers is not None and s not in layers:
        raise ParameterError(f"objective {spec!r}: no layer {s!r}; layers are {', '.join(layers)}")
    return Objective(s, None)
