"""What to explain: a scalar of one window that a model computes, named for the user.

* a unit's activation (``"cnn3:17"``, ``"tags:rock"``, ``"conv3:17"``) in the window. For a layer with a time
  axis (``reduce='above'``, the default): how far the unit rises above its resting level, averaged over the
  window's time steps, ``mean_t max(0, a_t(clip) - a_t(floor))`` with the floor of :mod:`.attribution` (every
  moment it fires counts; units batch-normed after their ReLU, as musicnn's, rest away from 0). ``'mean'`` and
  ``'max'`` take the plain mean or maximum over time (the unit index ranks windows by the maximum, whose gradient
  reaches only the peak's step, so that deleting the peak leaves the next-highest step: see
  ``bench/bench_attribution.py --reduce``, bench/RESULTS.md);
* a listener's cold-start score: the dot product of the window's predicted factors with the listener's WMF
  factors (what :meth:`audiovis.coldstart.ColdStart.listeners` ranks by);
* the similarity to a catalogue song: the cosine of the window's predicted factors with the song's predicted
  factors (what :meth:`audiovis.coldstart.ColdStart.similar` ranks by).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..units import parse_unit

KINDS = ("unit", "listener", "similar")
REDUCE = ("above", "mean", "max")


@dataclass(frozen=True)
class Target:
    """A scalar per window: ``fn(acts, out, rest)`` [shape=(b,)] of the layers ``layers``; ``rest``: the same
    layers' activations on the window's floor (:func:`~.attribution.target_function` passes them).

    Attributes
    ----------
    kind : {'unit', 'listener', 'similar'}
    name : str          ``"cnn3:17"``, ``"U00042"``, ``"song012"``
    title : str         for people: ``"unit cnn3:17"``, ``"listener U00042's score"``
    """

    kind: str
    name: str
    title: str
    layers: tuple
    fn: Callable = field(compare=False, repr=False)

    def __call__(self, acts: dict, out: torch.Tensor, rest: dict | None = None) -> torch.Tensor:
        return self.fn(acts, out, rest)


def unit_target(net, unit: str, window=None, reduce: str = "above") -> Target:
    """A unit's activation in the window; for a layer with a time axis, ``reduce`` over its time steps: 'above'
    (the mean rise above the resting level), 'mean' or 'max'."""
    if reduce not in REDUCE:
        raise ParameterError(f"reduce {reduce!r} is not one of {', '.join(REDUCE)}")
    layers = net.layers(window)
    u = parse_unit(unit, layers)
    named = getattr(layers, "names", {}).get(u.layer)
    name = f"{u.layer}:{named[u.index]}" if named else str(u)          # tags:jazz rather than tags:9

    def fn(acts, out, rest, layer=u.layer, i=u.index):
        a = acts[layer][:, i]
        if a.ndim == 1:
            return a
        if reduce == "above" and rest is not None:
            return torch.relu(a - rest[layer][:, i]).mean(-1)
        return a.amax(-1) if reduce == "max" else a.mean(-1)

    return Target("unit", name, f"unit {name}", (u.layer,), fn)


def _need_factors(net, what: str) -> None:
    if not net.has_factors:
        raise ParameterError(f"{what} needs the workspace's CNN (its output is the factors); this workspace is "
                             f"indexed with a model of your own ({net.name})")


def listener_target(net, ws, user: str) -> Target:
    """Listener ``user``'s cold-start score: window factors . listener factors."""
    from ..factors import load_factors
    _need_factors(net, "a listener's score")
    ids = ws.user_ids()
    if str(user) not in ids:
        close = [u for u in ids if str(user).lower() in u.lower()][:5]
        raise ParameterError(f"listener {user!r} is not in the workspace ({len(ids)} listeners"
                             + (f"; did you mean {', '.join(close)}?" if close else
                                f", e.g. {', '.join(ids[:3])}") + ")")
    x = torch.from_numpy(np.asarray(load_factors(ws)["user_factors"][ids.index(str(user))], np.float32))
    return Target("listener", str(user), f"listener {user}'s score", (), lambda acts, out, rest: out @ x.to(out))


def similar_target(net, ws, song: str) -> Target:
    """Cosine similarity of the window's factors to catalogue song ``song``'s predicted factors."""
    from ..index import UnitIndex
    _need_factors(net, "the similarity to a song")
    ids = ws.song_ids()
    if str(song) not in ids:
        raise ParameterError(f"song {song!r} is not in the workspace (e.g. {', '.join(ids[:3])})")
    y = torch.from_numpy(np.asarray(UnitIndex(ws).song_factors[ids.index(str(song))], np.float32))
    return Target("similar", str(song), f"similarity to {song}", (),
                  lambda acts, out, rest: F.cosine_similarity(out, y.to(out).expand_as(out), dim=-1))


def make_target(net, ws=None, unit: str | None = None, listener: str | None = None, similar: str | None = None,
                window=None) -> Target:
    """The one target named by ``unit``, ``listener`` or ``similar``."""
    given = [k for k, v in (("unit", unit), ("listener", listener), ("similar", similar)) if v is not None]
    if len(given) != 1:
        raise ParameterError(f"name one target: --unit, --listener or --similar (got {', '.join(given) or 'none'})")
    if unit is not None:
        return unit_target(net, unit, window)
    if ws is None:
        raise ParameterError("a listener's score or a similarity needs a workspace")
    return listener_target(net, ws, listener) if listener is not None else similar_target(net, ws, similar)
