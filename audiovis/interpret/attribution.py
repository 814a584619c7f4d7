"""Attribution of a target to the cells of one window's time x mel-band grid, with Captum.

Every method explains the difference between the target on the clip and on its *floor*: the same window with
every cell at the clip's quiet background level (its 5th percentile,
:attr:`~audiovis.interpret.network.Window.floor_db`), i.e. the clip taken away. (Its very quietest cell is
often digital silence, -100 dB, far outside what the models were trained on: removed cells became holes that the
dense layers overreact to.) A cell's attribution is its share of that difference (integrated gradients'
completeness: the cells sum to it, up to the path integral's error, ``delta``).

``ig``
    Integrated gradients (Sundararajan et al. 2017, :class:`captum.attr.IntegratedGradients`): gradients along
    the straight path from the floor to the clip, ``steps`` points (Gauss-Legendre), times (clip - floor).
``gradshap``
    GradientSHAP (Lundberg & Lee 2017, :class:`captum.attr.GradientShap`): the expected gradient x (clip -
    baseline) over ``steps`` random points between the clip and baselines drawn around the floor (noise of
    :data:`SHAP_STDEV_DB`), an approximation of SHAP values.
``occlusion``
    Occlusion (Zeiler & Fergus 2014, :class:`captum.attr.Occlusion`): patches of :data:`OCCLUSION_PATCH` (mel
    bands, frames) set to the floor, moved by half a patch; each cell gets the mean drop of the patches that
    cover it, shared by the patch's cells. Model-agnostic (no gradients), coarse.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError

METHODS = {"ig": "integrated gradients", "gradshap": "GradientSHAP", "occlusion": "occlusion"}
STEPS = 32
SHAP_STDEV_DB = 3.0
SHAP_BASELINES = 4
OCCLUSION_PATCH = (8, 16)
MIN_CHANGE = 1e-4        # a target that moves less than this between floor and clip has nothing to attribute


@dataclass
class Attribution:
    """One attribution.

    Attributes
    ----------
    A : np.ndarray [shape=(n_mels, frames)]   each cell's share of ``value - floor_value`` (signed)
    value, floor_value : float                the target on the clip and on its floor
    method : str;  steps : int;  target : Target;  window : Window
    delta : float or None                     integrated gradients' convergence error (sum A - change)
    """

    A: np.ndarray
    value: float
    floor_value: float
    method: str
    steps: int
    target: object
    window: object
    delta: float | None = None

    @property
    def change(self) -> float:
        return self.value - self.floor_value

    def positive(self) -> np.ndarray:
        """The cells that raise the target, as a share of their sum [shape=(n_mels, frames)] (sums to 1)."""
        P = np.clip(self.A, 0, None)
        s = P.sum()
        return (P / s if s > 0 else P).astype(np.float32)


def target_function(net, target, window):
    """``f(x)`` [shape=(b,)] for Captum: the target of log-mel windows ``x`` [shape=(b, n_mels, frames)] (a unit's
    target gets its layer's activations on the window's floor, its resting level)."""
    layers = list(target.layers)
    rest = None
    if layers:
        with torch.no_grad():
            acts, _ = net.forward(torch.full((1,) + window.S_db.shape, window.floor_db), layers, window)
        rest = {k: v.detach() for k, v in acts.items()}

    def f(x):
        acts, out = net.forward(x, layers, window)
        return target(acts, out, rest)
    return f


def check_window(net, target, window) -> tuple[float, float]:
    """(target on the clip, on its floor); a :class:`ParameterError` for a silent clip or a target that the
    clip does not move (a unit that does not fire)."""
    if window.silent:
        raise ParameterError(f"the window of {window.label or 'the clip'} at {window.start_s:.1f} s is silent "
                             f"(its log-mel spans {float(np.ptp(window.S_db)):.2f} dB): there is nothing to "
                             f"attribute; pick another window (--at) or another clip")
    f = target_function(net, target, window)
    x = torch.from_numpy(window.S_db[None])
    with torch.no_grad():
        v = float(f(x)[0])
        v0 = float(f(torch.full_like(x, window.floor_db))[0])
    small = MIN_CHANGE * max(1.0, abs(v))
    if target.kind == "unit" and v - v0 < small:      # ReLU units at 0, batch-normed ones no higher than on silence
        raise ParameterError(f"{target.title} does not fire in the window of {window.label or 'the clip'} at "
                             f"{window.start_s:.1f} s (activation {v:.3g}, {v0:.3g} on silence): nothing to "
                             f"attribute; pick a window where it fires (--at), e.g. one of its top clips")
    if abs(v - v0) < small:
        raise ParameterError(f"{target.title} is the same on the window of {window.label or 'the clip'} at "
                             f"{window.start_s:.1f} s ({v:.4g}) as on silence ({v0:.4g}): the clip does not move "
                             f"it, so there is nothing to attribute")
    return v, v0


def attribute(net, target, window, method: str = "ig", steps: int = STEPS, seed: int = 0) -> Attribution:
    """Attribute ``target`` on ``window`` to its log-mel cells.

    Parameters
    ----------
    net : Network;  target : Target;  window : Window
    method : {'ig', 'gradshap', 'occlusion'}
    steps : int
        Path points (``ig``), samples (``gradshap``); unused by ``occlusion``.
    seed : int
        GradientSHAP's random baselines and points.

    Raises
    ------
    ParameterError  an unknown method, a silent window, a target the window does not move.
    """
    from captum.attr import GradientShap, IntegratedGradients, Occlusion
    if method not in METHODS:
        raise ParameterError(f"attribution method {method!r} is not one of {', '.join(METHODS)}")
    if not 1 <= int(steps) <= 1024:
        raise ParameterError(f"steps {steps!r} must be between 1 and 1024")
    v, v0 = check_window(net, target, window)
    f = target_function(net, target, window)
    x = torch.from_numpy(window.S_db[None].copy())
    base = torch.full_like(x, window.floor_db)
    delta = None
    with torch.enable_grad():
        if method == "ig":
            A, d = IntegratedGradients(f).attribute(x, baselines=base, n_steps=int(steps),
                                                    internal_batch_size=int(steps),
                                                    return_convergence_delta=True)
            delta = float(d[0])
        elif method == "gradshap":
            g = torch.Generator().manual_seed(seed)
            bases = base + SHAP_STDEV_DB * torch.randn((SHAP_BASELINES,) + tuple(x.shape[1:]), generator=g)
            torch.manual_seed(seed)               # captum draws its points with torch's global generator
            A = GradientShap(f).attribute(x, baselines=bases, n_samples=int(steps), stdevs=0.0)
        else:
            bands = min(OCCLUSION_PATCH[0], x.shape[1])
            frames = min(OCCLUSION_PATCH[1], x.shape[2])
            with torch.no_grad():
                A = Occlusion(f).attribute(x, sliding_window_shapes=(bands, frames),
                                           strides=(max(1, bands // 2), max(1, frames // 2)), baselines=base,
                                           perturbations_per_eval=16)
            A = A / (bands * frames)          # a patch's drop shared by its cells: the same units as the others
    return Attribution(A[0].detach().numpy().astype(np.float32), v, v0, method, int(steps), target, window, delta)
