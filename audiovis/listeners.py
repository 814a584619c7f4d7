"""Listeners behind a unit, and counterfactual listening (a cold-start query with units ablated or clamped).

**Ablation.** Ablating a unit sets its activation to 0 in the windows where it fires: a forward hook on the
unit's layer (thread-filtered like :class:`audiovis.activations.Recorder`, always removed) zeroes the unit's
channel at every time step of such a window, and the rest of the real model runs on. Every conv and dense unit is
post-ReLU, so a window where it does not fire (its window activation, :func:`audiovis.index.reduce_windows`, is
0) holds zeros only: ablating there changes nothing, and a unit that never fires changes nothing at all. The
``output`` layer (the factors themselves) is not ablated.

**The listeners a unit recruits** (:func:`build_listeners`, ``audiovis listeners``). For a catalogue song ``s``
with windows ``W_s``, its predicted factors are ``y_s = mean_{w in W_s} f(x_w)`` and with unit ``j`` ablated
``y_s^-j``. With ``S_j`` the songs in which ``j`` fires in at least one window, the unit's mean factor change is
``d_j = mean_{s in S_j} (y_s - y_s^-j)`` and its **effect** on user ``u`` (WMF user factors ``x_u`` of the fit the
CNN was trained on) is

    effect_j(u) = x_u . d_j = mean_{s in S_j} (x_u . y_s - x_u . y_s^-j)

how much the unit raises user ``u``'s score ``x_u . y`` of a song it fires in, on average (positive: it recruits
the listener; negative: it turns them away). The top listeners are the largest effects; the **mean effect** is
the mean over every user. ``index/listeners.npz`` keeps ``d_j`` for every unit, so any user's effect is one dot
product (:meth:`ListenerIndex.effects`).

**Counterfactual listening** (:func:`counterfactual`, ``audiovis recommend FILE --ablate conv3:17 --clamp
dense1:3=2.5``). The new song's windows go through the model with the units ablated (as above) or clamped
(the channel set to the value at every time step of every window, in the unit's own activation units, those of
the unit view); the counterfactual factors are the mean over windows, and the similar songs and likely listeners
are recomputed from them, next to the original ones.

**Why a listener** (:func:`listener_drivers`): for a new song, the units whose ablation lowers a likely
listener's score ``x_u . y'`` most, i.e. ``x_u . (y' - y'^-j)`` with ``y'`` the mean over the song's windows.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .activations import Recorder
from .errors import ParameterError, WorkspaceError
from .factors import load_factors
from .features import FeatureStore, frame_windows
from .index import reduce_windows, song_batches
from .train import load_model
from .units import Unit, layer_sizes, parse_unit
from .workspace import Workspace, save_npz

LISTENERS_FILE = "listeners.npz"
PARTIAL_FILE = "listeners.partial.npz"


def intervenable(layers: dict[str, int]) -> dict[str, int]:
    """The layers whose units can be ablated or clamped: every conv and dense layer (not ``output``)."""
    return {name: n for name, n in layers.items() if name != "output"}


# --------------------------------------------------------------------------- hooks
class LayerHooks:
    """Forward hooks that replace layer outputs, ``replace(name, out) -> tensor``, in this thread's forward passes
    only (the page serves every visitor from one model: another thread's pass goes through untouched); removed
    on exit, as :class:`audiovis.activations.Recorder`'s."""

    def __init__(self, model, layers, replace):
        modules = dict(model.named_modules())
        self._mods, self.replace = [(name, modules[name]) for name in layers], replace
        self._handles: list = []
        self._thread: int | None = None

    def __enter__(self):
        self._thread = threading.get_ident()
        for name, mod in self._mods:
            self._handles.append(mod.register_forward_hook(
                lambda _m, _i, out, name=name: self.replace(name, out) if threading.get_ident() == self._thread
                else None))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass(frozen=True)
class Intervention:
    """Ablate (``value`` None: 0 where the unit fires) or clamp (``value``: every time step, every window)."""

    unit: Unit
    value: float | None = None

    def __str__(self) -> str:
        return str(self.unit) if self.value is None else f"{self.unit}={self.value:g}"


def intervene(model, interventions: list[Intervention]) -> LayerHooks:
    """Ablate or clamp units in every forward pass of this thread while the context is open.

    Examples
    --------
    >>> with intervene(model, parse_interventions(layer_sizes(model), ablate=["conv3:17"])):
    ...     y = model(x)            # (b, n_factors) with conv3:17 silenced
    """
    by_layer: dict[str, list[Intervention]] = {}
    for iv in interventions:
        by_layer.setdefault(iv.unit.layer, []).append(iv)

    def replace(name, out):
        out = out.clone()
        for iv in by_layer[name]:
            out[:, iv.unit.index] = 0.0 if iv.value is None else iv.value
        return out
    return LayerHooks(model, list(by_layer), replace)


def parse_interventions(layers: dict[str, int], ablate=(), clamp=()) -> list[Intervention]:
    """Check unit names and clamp values.

    Parameters
    ----------
    layers : dict   {layer: n_units} (:func:`audiovis.units.layer_sizes`)
    ablate : str or iterable of str   e.g. ``["conv3:17", "dense1:3"]``
    clamp : str, iterable of ``"UNIT=VALUE"`` strings or ``(unit, value)`` pairs, or dict ``{unit: value}``

    Raises
    ------
    ParameterError
        An unknown layer, an index out of range, an output unit, a malformed or non-finite clamp, a unit named
        twice; the message quotes it.
    """
    ablate = [ablate] if isinstance(ablate, str) else list(ablate or [])
    clamp = [clamp] if isinstance(clamp, str) else list(clamp.items()) if isinstance(clamp, dict) else list(clamp or [])
    out: list[Intervention] = []

    def unit(name) -> Unit:
        u = parse_unit(name, layers)
        if u.layer not in intervenable(layers):
            raise ParameterError(f"unit {name!r}: output units are the predicted factors themselves and cannot be "
                                 f"ablated or clamped; pick a unit of {', '.join(intervenable(layers))}")
        if any(iv.unit == u for iv in out):
            raise ParameterError(f"unit {name!r} is ablated or clamped twice; name each unit once")
        return u

    for name in ablate:
        out.append(Intervention(unit(name)))
    for c in clamp:
        if isinstance(c, str):
            name, sep, val = c.partition("=")
            if not sep:
                raise ParameterError(f"clamp {c!r} is not of the form UNIT=VALUE, e.g. 'conv3:17=2.5'")
        else:
            name, val = c
        try:
            v = float(val)
        except (TypeError, ValueError):
            raise ParameterError(f"clamp {c!r}: value {val!r} is not a number, e.g. 'conv3:17=2.5'") from None
        if not np.isfinite(v):
            raise ParameterError(f"clamp {c!r}: value {v} is not finite")
        out.append(Intervention(unit(name), v))
    return out


# --------------------------------------------------------------------------- the model with units changed
@torch.no_grad()
def intervened_factors(model, x: np.ndarray, interventions: list[Intervention],
                       batch_windows: int = 256) -> np.ndarray:
    """Predicted factors of windows with units ablated or clamped.

    Parameters
    ----------
    x : np.ndarray [shape=(n, n_mels, window_frames)]

    Returns
    -------
    Y : np.ndarray [shape=(n, n_factors)]
    """
    outs = []
    with intervene(model, interventions):
        for i in range(0, len(x), batch_windows):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_windows]))).float().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, len(model.out_mean)), np.float32)


@torch.no_grad()
def ablation_deltas(model, x: np.ndarray, layers: dict[str, int] | None = None, hop_s: float = 1.0,
                    chunk_bytes: int = 16 << 20) -> tuple[np.ndarray, np.ndarray]:
    """How each window's predicted factors change when each unit is ablated, one unit at a time.

    The layers before the unit's run once per window; the unit's layer output, recorded, is repeated once per
    (window, unit) pair where the unit fires, with that unit zeroed, and the rest of the real model runs on it.
    Pairs where the unit does not fire are not run: their change is exactly 0.

    Parameters
    ----------
    model : AudioCNN   in eval mode
    x : np.ndarray [shape=(b, n_mels, window_frames)]
    layers : dict, optional   {layer: n_units}; default every conv and dense layer
    chunk_bytes : int   size of the repeated layer output per forward pass (sets the pairs per pass)

    Returns
    -------
    fires : np.ndarray [shape=(b, n_units), bool]   window activation > 0
    delta : np.ndarray [shape=(b, n_units, n_factors)]   ``f(x_w) - f^-j(x_w)``, the factors' drop
    """
    layers = intervenable(layers or layer_sizes(model))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    acts, base = Recorder(model, list(layers)).record(xt)
    A, _ = reduce_windows(model, acts, layers, hop_s, xt.shape[-1])
    fires = A > 0
    base = base.float()
    delta = np.zeros((len(xt), fires.shape[1], base.shape[1]), np.float32)
    probe, o = xt[:1], 0
    for name, n in layers.items():
        w_idx, c_idx = np.nonzero(fires[:, o:o + n])
        out = acts[name]
        max_rows = max(1, chunk_bytes // max(out[0].numel() * out.element_size(), 1))
        for i in range(0, len(w_idx), max_rows):
            wi, ci = torch.from_numpy(w_idx[i:i + max_rows]), torch.from_numpy(c_idx[i:i + max_rows])
            h = out[wi].clone()
            h[torch.arange(len(wi)), ci] = 0.0
            with LayerHooks(model, [name], lambda _name, _out, h=h: h):    # the rows replace the layer's output
                y = model(probe).float()
            delta[wi.numpy(), o + ci.numpy()] = (base[wi] - y).numpy()
        o += n
    return fires, delta


def unit_names(layers: dict[str, int]) -> list[str]:
    """Every conv and dense unit, in the order of :func:`~audiovis.index.reduce_windows`' columns (output last)."""
    return [f"{name}:{i}" for name, n in intervenable(layers).items() for i in range(n)]


# --------------------------------------------------------------------------- the listeners step
def signature(ws: Workspace, n_top: int) -> str:
    """What the listeners file depends on: the model, the factors, the catalogue's windows."""
    nw = ws.get_meta("done:index", {}).get("summary", {}).get("windows")
    return json.dumps([str(ws.get_meta("done:train")), str(ws.get_meta("done:factorize")), nw,
                       (ws.features_dir / "windows.npy").stat().st_size
                       if (ws.features_dir / "windows.npy").exists() else None, n_top])


def _require_users(ws: Workspace) -> None:
    if ws.get_meta("done:factorize") is None:
        raise WorkspaceError(f"workspace '{ws.path}' has no listeners: no plays were factorised, so there are no "
                             f"user factors (an index-only workspace); listener effects need `audiovis run` with "
                             f"--plays")


@torch.no_grad()
def build_listeners(workspace: str | os.PathLike | Workspace, n_top: int = 20, force: bool = False,
                    progress: bool = True, batch_windows: int = 256, checkpoint_every: int = 4) -> dict:
    """Every conv and dense unit's listeners (see the module docstring): writes ``index/listeners.npz``.

    Resumable: a partial state is saved every ``checkpoint_every`` batches of songs, and a run started again
    goes on from there. Up to date (same model, factors and catalogue) and not ``force``: returns at once.

    Returns
    -------
    summary : dict   units, users, songs, windows, pairs run, seconds
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("index")
    _require_users(ws)
    path, partial = ws.index_dir / LISTENERS_FILE, ws.index_dir / PARTIAL_FILE
    sig = signature(ws, n_top)
    if path.exists() and not force:
        with np.load(path, allow_pickle=False) as z:
            if "n_top" in z.files and str(z["sig"]) == sig:
                return json.loads(str(z["summary"]))
    t0 = time.perf_counter()
    model, _ = load_model(ws)
    model.eval()
    layers = intervenable(layer_sizes(model))
    store = FeatureStore(ws)
    hop_s = store.cfg.hop_length / store.cfg.sr
    U, K = sum(layers.values()), model.cfg.n_factors
    st = None
    if partial.exists() and not force:
        with np.load(partial, allow_pickle=False) as z:
            if str(z["sig"]) == sig:
                st = {k: z[k] for k in z.files if k != "sig"}
    if st is None:
        st = {"next_song": np.array(0), "d_sum": np.zeros((U, K)), "fired": np.zeros(U, np.int64),
              "n_songs": np.array(0), "pairs": np.array(0)}
    elif progress:
        print(f"listeners: resuming at song {int(st['next_song'])}")
    wsong = store.windows[:, 0]
    bar = tqdm(total=len(wsong), desc="listeners", unit="win", disable=not progress)
    bar.update(int(np.searchsorted(wsong, int(st["next_song"]))))
    for b, (_s0, s1, widx) in enumerate(song_batches(store, int(st["next_song"]), batch_windows)):
        if len(widx):
            fires, delta = ablation_deltas(model, store.batch(widx), layers, hop_s)
            songs_b = wsong[widx]
            first, inv, counts = np.unique(songs_b, return_index=True, return_inverse=True, return_counts=True)[1:]
            st["d_sum"] += np.einsum("b,buk->uk", 1.0 / counts[inv], delta, dtype=np.float64)
            st["fired"] += np.maximum.reduceat(fires, first, axis=0).sum(0)
            st["n_songs"] = st["n_songs"] + len(first)
            st["pairs"] = st["pairs"] + int(fires.sum())
            bar.update(len(widx))
        st["next_song"] = np.array(s1)
        if (b + 1) % checkpoint_every == 0:
            save_npz(partial, sig=np.array(sig), **st)
    bar.close()
    fac = load_factors(ws)
    X = np.asarray(fac["user_factors"], np.float32)
    d = (st["d_sum"] / np.maximum(st["fired"], 1)[:, None]).astype(np.float32)
    n = min(n_top, len(X))
    out = {k: [] for k in ("top_users", "top_effect", "bottom_users", "bottom_effect", "mean_effect",
                           "mean_abs_effect")}
    for c in range(0, U, 64):                                         # (n_users, 64 units) of effects at a time
        E = (X @ d[c:c + 64].T).T
        for key, order in (("top", np.argsort(-E, axis=1, kind="stable")[:, :n]),
                           ("bottom", np.argsort(E, axis=1, kind="stable")[:, :n])):
            out[f"{key}_users"].append(order)
            out[f"{key}_effect"].append(np.take_along_axis(E, order, 1))
        out["mean_effect"].append(E.mean(1))
        out["mean_abs_effect"].append(np.abs(E).mean(1))
    summary = {"units": U, "users": len(X), "songs": int(st["n_songs"]), "windows": int(len(wsong)),
               "pairs": int(st["pairs"]), "seconds": round(time.perf_counter() - t0, 2)}
    save_npz(path, sig=np.array(sig), n_top=np.array(n_top), summary=np.array(json.dumps(summary)),
             units=np.array(unit_names(layers)),
             delta=d, delta_all=(st["d_sum"] / max(int(st["n_songs"]), 1)).astype(np.float32),
             songs_fired=st["fired"], **{k: np.concatenate(v) for k, v in out.items()})
    partial.unlink(missing_ok=True)
    return summary


def listeners_state(workspace: str | os.PathLike | Workspace) -> tuple[str, str]:
    """('ready' | 'missing' | 'stale' | 'no-users', what to tell a person)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if ws.get_meta("done:factorize") is None:
        return "no-users", "This workspace has no listeners (no plays were factorised)."
    path = ws.index_dir / LISTENERS_FILE
    if not path.exists():
        return "missing", f"Run `audiovis listeners -w {ws.path}` to see which listeners each unit recruits."
    with np.load(path, allow_pickle=False) as z:
        if "n_top" not in z.files or str(z["sig"]) != signature(ws, int(z["n_top"])):
            return "stale", (f"The listener effects are older than the model, factors or catalogue: run "
                             f"`audiovis listeners -w {ws.path}` again.")
    return "ready", ""


class ListenerIndex:
    """Read access to ``index/listeners.npz``: the listeners behind every unit.

    Attributes
    ----------
    delta : np.ndarray [shape=(n_units, n_factors)]   ``d_j``, mean factor drop over the songs where j fires
    user_factors : np.ndarray [shape=(n_users, n_factors)]
    """

    def __init__(self, workspace: str | os.PathLike | Workspace):
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        state, msg = listeners_state(ws)
        if state != "ready":
            raise WorkspaceError(msg)
        with np.load(ws.index_dir / LISTENERS_FILE, allow_pickle=False) as z:
            self.data = {k: z[k] for k in z.files}
        self.units = [str(u) for u in self.data["units"]]
        self.column = {u: i for i, u in enumerate(self.units)}
        self.delta = self.data["delta"]
        self.user_factors = np.asarray(load_factors(ws)["user_factors"], np.float32)
        self.user_ids = ws.user_ids()
        self.layers: dict[str, int] = {}
        for u in self.units:
            layer = u.split(":")[0]
            self.layers[layer] = self.layers.get(layer, 0) + 1

    def col(self, unit: str | Unit) -> int:
        u = parse_unit(str(unit), self.layers)
        return self.column[str(u)]

    def effects(self, unit: str | Unit) -> np.ndarray:
        """Every user's effect [shape=(n_users,)]: ``x_u . d_j``."""
        return self.user_factors @ self.delta[self.col(unit)]

    def of(self, unit: str | Unit, n: int = 10) -> dict:
        """The unit's top ``n`` listeners (largest effect) and the users it turns away, with the mean effect."""
        c = self.col(unit)
        E = self.effects(unit)
        order = np.argsort(-E, kind="stable")
        def rows(idx):
            return [{"rank": r, "user_idx": int(u), "user_id": self.user_ids[u], "effect": float(E[u])}
                    for r, u in enumerate(idx, start=1)]
        return {"unit": self.units[c], "songs_fired": int(self.data["songs_fired"][c]),
                "songs": json.loads(str(self.data["summary"]))["songs"], "mean_effect": float(E.mean()),
                "mean_abs_effect": float(np.abs(E).mean()), "listeners": rows(order[:n]),
                "turned_away": rows(order[::-1][:n])}


def unit_listeners(workspace, unit: str, n: int = 10) -> dict:
    """:meth:`ListenerIndex.of` for one unit (after :func:`build_listeners`)."""
    return ListenerIndex(workspace).of(unit, n)


# --------------------------------------------------------------------------- cold start
def _windows(engine, emb) -> np.ndarray:
    if emb.frames is None:
        raise ParameterError(f"'{emb.file}': the embedding keeps no frames; embed it with keep_frames=True")
    return frame_windows(emb.frames, engine.fcfg.window_frames)[1]


def _has_users(engine) -> bool:
    X = getattr(engine, "user_factors", None)
    return X is not None and len(X) > 0


def listener_drivers(engine, emb, listeners: list[dict], n: int = 3) -> list[dict]:
    """Add ``"drivers"`` to each listener row: the ``n`` units whose ablation lowers ``x_u . y'`` most.

    Parameters
    ----------
    engine : audiovis.coldstart.ColdStart;  emb : Embedding with ``frames``
    listeners : list of dict   rows of ``ColdStart.listeners`` (``user_idx``)

    Returns
    -------
    listeners, each with ``drivers``: [{"unit", "effect"}], ``effect = x_u . (y' - y'^-j)`` > 0
    """
    if not listeners or not _has_users(engine):
        return listeners
    x = _windows(engine, emb)
    names = unit_names(engine.layers)
    dy = np.zeros((len(names), engine.user_factors.shape[1]))
    bw = engine.cfg.batch_windows
    for i in range(0, len(x), bw):
        dy += ablation_deltas(engine.model, x[i:i + bw], engine.layers, engine.hop_s)[1].sum(0)
    dy /= max(len(x), 1)
    for r in listeners:
        c = dy @ engine.user_factors[r["user_idx"]]
        top = [j for j in np.argsort(-c, kind="stable")[:n] if c[j] > 0]
        r["drivers"] = [{"unit": names[j], "effect": float(c[j])} for j in top]
    return listeners


def _clips(engine, rows: list[dict], factors: np.ndarray) -> list[dict]:
    for r in rows:
        r["clip_start_s"], r["clip_end_s"], r["clip_cosine"] = engine.best_window(r["song_idx"], factors)
    return rows


def counterfactual(engine, emb, ablate=(), clamp=(), k: int = 10, n_users: int = 10, exclude=None) -> dict:
    """A cold-start query with units ablated or clamped, next to the original (see the module docstring).

    Parameters
    ----------
    engine : audiovis.coldstart.ColdStart
    emb : Embedding   with ``frames`` (``embed_file(..., units=True, keep_frames=True)``)
    ablate, clamp : as :func:`parse_interventions`
    exclude : iterable of int   catalogue songs not to return

    Returns
    -------
    dict with ``interventions`` (str), ``windows`` / ``windows_changed`` (ablated units fire there, or any
    clamp), ``factors`` (counterfactual ``y'``), ``cosine_to_original``, ``original`` and ``counterfactual``
    (each ``{"similar", "listeners"}``; similar songs with their closest window ``clip_start_s``/``clip_end_s``,
    counterfactual rows with ``rank_before`` (None: new in the list) and listeners with ``score_before``),
    ``changes`` (ids that entered and left each list) and ``seconds``.
    """
    t0 = time.perf_counter()
    ivs = parse_interventions(engine.layers, ablate, clamp)
    if not ivs:
        raise ParameterError("nothing to change: name a unit to ablate (e.g. 'conv3:17') or clamp "
                             "(e.g. 'conv3:17=2.5')")
    x = _windows(engine, emb)
    y0 = np.asarray(emb.factors, np.float32)
    y1 = intervened_factors(engine.model, x, ivs, engine.cfg.batch_windows).mean(0)
    changed = np.zeros(len(x), bool)
    for iv in ivs:
        if iv.value is not None:
            changed[:] = True
        elif emb.acts is not None:
            changed |= emb.acts[:, unit_names(engine.layers).index(str(iv.unit))] > 0     # model layers' columns
        else:
            changed[:] = True
    ex = sorted(int(i) for i in (exclude or []))
    users = _has_users(engine)
    orig = {"similar": _clips(engine, engine.similar(y0, k, exclude=ex), y0),
            "listeners": engine.listeners(y0, n_users) if users else []}
    cf = {"similar": _clips(engine, engine.similar(y1, k, exclude=ex), y1),
          "listeners": engine.listeners(y1, n_users) if users else []}
    before = {r["song_idx"]: r["rank"] for r in orig["similar"]}
    for r in cf["similar"]:
        r["rank_before"] = before.get(r["song_idx"])
    if users:
        s0 = engine.user_factors @ y0
        rank0 = np.empty(len(s0), np.int64)
        rank0[np.argsort(-s0, kind="stable")] = np.arange(1, len(s0) + 1)
        for r in cf["listeners"]:
            r["score_before"] = float(s0[r["user_idx"]])
            r["rank_before"] = int(rank0[r["user_idx"]])
    changes = {}
    for key, id_key in (("similar", "song_id"), ("listeners", "user_id")):
        a, b = [r[id_key] for r in orig[key]], [r[id_key] for r in cf[key]]
        changes[key] = {"kept": len(set(a) & set(b)), "entered": [i for i in b if i not in a],
                        "left": [i for i in a if i not in b]}
    cos = float(y0 @ y1 / max(np.linalg.norm(y0) * np.linalg.norm(y1), 1e-12))
    return {"interventions": [str(iv) for iv in ivs], "windows": int(len(x)), "windows_changed": int(changed.sum()),
            "factors": [float(v) for v in y1], "cosine_to_original": cos, "original": orig, "counterfactual": cf,
            "changes": changes, "seconds": round(time.perf_counter() - t0, 4)}


def format_counterfactual(cf: dict) -> str:
    """Plain-text side-by-side tables (original | counterfactual) of :func:`counterfactual`'s result."""
    lines = [f"Counterfactual: {', '.join(cf['interventions'])} ({cf['windows_changed']} of {cf['windows']} "
             f"windows changed; cosine of the factors to the original {cf['cosine_to_original']:.3f})",
             f"  {'rank':>4}  {'original song':<16} {'score':>7}   {'counterfactual':<16} {'score':>7} {'was':>4}"]
    o, c = cf["original"], cf["counterfactual"]
    for a, b in zip(o["similar"], c["similar"]):
        was = b["rank_before"] if b["rank_before"] is not None else "new"
        lines.append(f"  {a['rank']:>4}  {a['song_id']:<16} {a['score']:>7.3f}   {b['song_id']:<16} "
                     f"{b['score']:>7.3f} {was!s:>4}")
    if c["listeners"]:
        lines += ["", f"  {'rank':>4}  {'original user':<16} {'score':>7}   {'counterfactual':<16} {'score':>7} "
                      f"{'was':>5}"]
        for a, b in zip(o["listeners"], c["listeners"]):
            lines.append(f"  {a['rank']:>4}  {a['user_id']:<16} {a['score']:>7.3f}   {b['user_id']:<16} "
                         f"{b['score']:>7.3f} {b['rank_before']:>5}")
    for key in ("similar", "listeners"):
        ch = cf["changes"][key]
        if ch["entered"]:
            lines.append(f"  {key}: entered {', '.join(ch['entered'])}; left {', '.join(ch['left'])}")
    return "\n".join(lines)


def format_unit_listeners(d: dict) -> str:
    """Plain-text table of :meth:`ListenerIndex.of`."""
    lines = [f"{d['unit']}: fires in {d['songs_fired']} of {d['songs']} songs; mean effect over users "
             f"{d['mean_effect']:+.4f} (mean |effect| {d['mean_abs_effect']:.4f})",
             "Top listeners (mean rise of x_u . y over the songs it fires in)", f"  {'rank':>4}  {'user_id':<16} "
             f"{'effect':>8}"]
    lines += [f"  {r['rank']:>4}  {r['user_id']:<16} {r['effect']:>+8.4f}" for r in d["listeners"]]
    return "\n".join(lines)
