"""Execution engines for the catalogue-sized stages: featurize, embed and index.

``local`` (the default) is this machine (:mod:`audiovis.engines.local`): :mod:`audiovis.features` in a process
pool, and the single-process :mod:`audiovis.index` and :mod:`audiovis.coldstart`. ``ray`` (``pip install
audiovis[ray]``) runs the same work on a Ray cluster with Ray Data: decoding and reading in tasks, the model in an
actor pool, the unit index aggregated with a distributed combine; it writes the same workspace artifacts. See
``docs/scale.md``.

>>> from audiovis import engines
>>> engines.build_index("workspaces/demo", engine="ray", force=True)          # doctest: +SKIP
"""
from __future__ import annotations

import os

from ..errors import ParameterError

ENGINES = ("local", "ray")


def _engine(name: str):
    if name not in ENGINES:
        raise ParameterError(f"engine must be one of {', '.join(ENGINES)}, got '{name}'")
    if name == "ray":
        from . import ray as mod
        mod.require_ray()
        return mod
    from . import local as mod
    return mod


def featurize(workspace, cfg=None, engine: str = "local", ray_address: str | None = None, **kwargs) -> dict:
    """Log-mel features of every song (see :func:`audiovis.features.featurize`) with the chosen engine (local:
    ``n_jobs`` processes, :func:`audiovis.engines.local.featurize`)."""
    mod = _engine(engine)
    if engine == "ray":
        kwargs["address"] = ray_address
    return mod.featurize(workspace, cfg, **kwargs)


def build_index(workspace, cfg=None, engine: str = "local", ray_address: str | None = None, **kwargs) -> dict:
    """The unit index (see :func:`audiovis.index.build_index`) with the chosen engine."""
    mod = _engine(engine)
    if engine == "ray" and (kwargs.get("model") is not None or _has_adapter(workspace)):
        raise ParameterError("--engine ray indexes audiovis's own CNN only; index a model of your own "
                             "(--model) with the local engine")
    if engine == "ray":
        kwargs["address"] = ray_address
    return mod.build_index(workspace, cfg, **kwargs)


def embed(workspace, files, engine: str = "local", ray_address: str | None = None, **kwargs):
    """Predicted factors of new songs -> (list of Embedding, list of {"file", "reason"}) with the chosen engine."""
    mod = _engine(engine)
    if engine == "ray":
        kwargs["address"] = ray_address
    return mod.embed(workspace, files, **kwargs)


def default_address() -> str | None:
    """``AUDIOVIS_RAY_ADDRESS`` or Ray's own ``RAY_ADDRESS`` (None: start a local Ray on demand)."""
    return os.environ.get("AUDIOVIS_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


def _has_adapter(workspace) -> bool:
    from ..workspace import Workspace
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    return ws.exists() and ws.get_meta("adapter") is not None
