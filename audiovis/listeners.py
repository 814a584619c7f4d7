"""Listeners behind a unit: ablating units through the real model, and what that does to users' scores.

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

Counterfactual cold-start queries with these hooks: :mod:`audiovis.counterfactual`.
"""
from __future__ import annotations

import hashlib
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
from .features import FeatureStore
from .index import UnitIndex, reduce_windows, song_batches
from .train import load_model
from .units import Unit, dictionary_base, layer_sizes, parse_unit
from .workspace import Workspace, save_npz

LISTENERS_FILE = "listeners.npz"
PARTIAL_FILE = "listeners.partial.npz"
# what it costs, measured (bench/RESULTS.md): the page says it where it offers the step
LISTENERS_COST = ("It silences every unit in turn over the catalogue: 141 s for the from-scratch demo model "
                  "(576 units); with the default musicnn model (1,547 units) it "
                  "had not reached its first checkpoint after 25 min on the demo on 2 shared cores.")


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


def intervene(model, interventions: list[Intervention], dicts: dict | None = None) -> LayerHooks:
    """Ablate or clamp units in every forward pass of this thread while the context is open.

    A dictionary feature (``dense1.dict:3``, ``dicts`` from :func:`feature_dictionaries`) is changed in its dense
    layer's output: its decoded direction ``W_dec[f] * std`` times ``value - z_f`` is added (ablation: value 0, so
    only where the feature fires, ``z_f > 0``), with ``z`` the dictionary's encoding of that output.

    Examples
    --------
    >>> with intervene(model, parse_interventions(layer_sizes(model), ablate=["conv3:17"])):
    ...     y = model(x)            # (b, n_factors) with conv3:17 silenced
    """
    by_layer: dict[str, list[Intervention]] = {}
    for iv in interventions:
        by_layer.setdefault(dicts[iv.unit.layer][0] if iv.unit.layer in (dicts or {}) else iv.unit.layer,
                            []).append(iv)

    def replace(name, out):
        h = out.detach().float().cpu().numpy() if any(iv.unit.layer != name for iv in by_layer[name]) else None
        out = out.clone()
        for iv in by_layer[name]:
            if iv.unit.layer != name:                                   # a feature of this layer's dictionary
                sae = dicts[iv.unit.layer][1]
                z = sae.encode(h)[:, iv.unit.index]
                out += torch.from_numpy(np.outer((iv.value or 0.0) - z, sae.W_dec[iv.unit.index] * sae.std))
        for iv in by_layer[name]:
            if iv.unit.layer == name:
                out[:, iv.unit.index] = 0.0 if iv.value is None else iv.value
        return out
    return LayerHooks(model, list(by_layer), replace)


def feature_dictionaries(index, model) -> dict:
    """{``"dense1.dict"``: (``"dense1"``, SparseAutoencoder)} for every dense layer with a dictionary loaded by the
    unit index (:mod:`audiovis.dictionary`; conv layers' dictionaries encode a window's maximum over time, which has
    no place in the network to change, and are left out)."""
    from .dictionary import SparseAutoencoder
    out = {}
    for name, folder in getattr(index, "dictionaries", {}).items():
        base = dictionary_base(name)
        if base in getattr(model, "dense_names", ()) and (folder / "sae.npz").exists():
            out[name] = (base, SparseAutoencoder.load(folder / "sae.npz"))
    return out


def parse_interventions(layers: dict[str, int], ablate=(), clamp=(), dicts: dict | None = None) -> list[Intervention]:
    """Check unit names and clamp values.

    Parameters
    ----------
    layers : dict   {layer: n_units} (:func:`audiovis.units.layer_sizes`)
    ablate : str or iterable of str   e.g. ``["conv3:17", "dense1:3"]``
    clamp : str, iterable of ``"UNIT=VALUE"`` strings or ``(unit, value)`` pairs, or dict ``{unit: value}``
    dicts : dict, optional   dictionaries whose features may be named too (:func:`feature_dictionaries`)

    Raises
    ------
    ParameterError
        An unknown layer, an index out of range, an output unit, a malformed or non-finite clamp, a unit named
        twice; the message quotes it.
    """
    ablate = [ablate] if isinstance(ablate, str) else list(ablate or [])
    clamp = [clamp] if isinstance(clamp, str) else list(clamp.items()) if isinstance(clamp, dict) else list(clamp or [])
    out: list[Intervention] = []

    ok = {**intervenable(layers), **{n: sae.n_features for n, (_b, sae) in (dicts or {}).items()}}

    def unit(name) -> Unit:
        u = parse_unit(name, {**layers, **ok})
        if u.layer not in ok:
            raise ParameterError(f"unit {name!r}: output units are the predicted factors themselves and cannot be "
                                 f"ablated or clamped; pick a unit of {', '.join(ok)}")
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
def intervened_factors(model, x: np.ndarray, interventions: list[Intervention], batch_windows: int = 256,
                       dicts: dict | None = None) -> np.ndarray:
    """Predicted factors of windows with units ablated or clamped.

    Parameters
    ----------
    x : np.ndarray [shape=(n, n_mels, window_frames)]

    Returns
    -------
    Y : np.ndarray [shape=(n, n_factors)]
    """
    outs = []
    with intervene(model, interventions, dicts):
        for i in range(0, len(x), batch_windows):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_windows]))).float().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, len(model.out_mean)), np.float32)


@torch.no_grad()
def ablation_deltas(model, x: np.ndarray, layers: dict[str, int] | None = None, hop_s: float = 1.0,
                    chunk_bytes: int = 16 << 20, dicts: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    dicts : dict, optional   also every feature of these dictionaries (:func:`feature_dictionaries`), after the
        units, as :func:`intervene` changes them

    Returns
    -------
    fires : np.ndarray [shape=(b, n_units), bool]   window activation > 0 (a feature: ``z_f > 0``)
    delta : np.ndarray [shape=(b, n_units, n_factors)]   ``f(x_w) - f^-j(x_w)``, the factors' drop
    """
    layers = intervenable(layers or layer_sizes(model))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    dicts = dicts or {}
    acts, base = Recorder(model, list(dict.fromkeys([*layers, *(b for b, _s in dicts.values())]))).record(xt)
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
    F, D = [fires], [delta]
    for bname, sae in dicts.values():                                    # features: h - z_f * W_dec[f] * std
        h = acts[bname].float()
        z = sae.encode(h.numpy())
        dirs = torch.from_numpy(sae.W_dec * sae.std)
        dd = np.zeros((len(xt), z.shape[1], base.shape[1]), np.float32)
        w_idx, f_idx = np.nonzero(z > 0)
        wi, fi = torch.from_numpy(w_idx), torch.from_numpy(f_idx)
        rows = h[wi] - torch.from_numpy(z[w_idx, f_idx])[:, None] * dirs[fi]
        with LayerHooks(model, [bname], lambda _name, _out, rows=rows: rows):
            dd[w_idx, f_idx] = (base[wi] - model(xt[:1]).float()).numpy()
        F.append(z > 0)
        D.append(dd)
    return (np.concatenate(F, 1), np.concatenate(D, 1)) if dicts else (fires, delta)


def unit_names(layers: dict[str, int], dicts: dict | None = None) -> list[str]:
    """Every conv and dense unit, in the order of :func:`~audiovis.index.reduce_windows`' columns (output last),
    then the features of ``dicts``."""
    sizes = {**intervenable(layers), **{n: sae.n_features for n, (_b, sae) in (dicts or {}).items()}}
    return [f"{name}:{i}" for name, n in sizes.items() for i in range(n)]


# --------------------------------------------------------------------------- the listeners step
def signature(ws: Workspace, n_top: int) -> str:
    """What the listeners file depends on: the model, the factors, the catalogue's windows, the dictionaries."""
    nw = ws.get_meta("done:index", {}).get("summary", {}).get("windows")
    saes = [(q.parent.name, hashlib.sha1(q.read_bytes()).hexdigest())
            for q in sorted(ws.index_dir.glob("dict/*/sae.npz"))]
    return json.dumps([str(ws.get_meta("done:train")), str(ws.get_meta("done:factorize")), nw,
                       (ws.features_dir / "windows.npy").stat().st_size
                       if (ws.features_dir / "windows.npy").exists() else None, n_top, saes])


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
    dicts = feature_dictionaries(UnitIndex(ws), model)        # dense1.dict:3 ... after the units
    store = FeatureStore(ws)
    hop_s = store.cfg.hop_length / store.cfg.sr
    U, K = len(unit_names(layers, dicts)), model.cfg.n_factors
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
            fires, delta = ablation_deltas(model, store.batch(widx), layers, hop_s, dicts=dicts)
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
             units=np.array(unit_names(layers, dicts)),
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
        return "missing", (f"Run `audiovis listeners -w {ws.path}` to see which listeners each unit recruits. "
                           f"{LISTENERS_COST}")
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


    def drivers(self, user: str | int, n: int = 10) -> list[dict]:
        """The units that raise a listener's scores most (their effect ``x_u . d_j``, largest first): the
        units that drive what is recommended to them."""
        u = user if isinstance(user, (int, np.integer)) else self.user_ids.index(str(user))
        E = self.delta @ self.user_factors[int(u)]
        return [{"rank": r, "unit": self.units[j], "effect": float(E[j])}
                for r, j in enumerate(np.argsort(-E, kind="stable")[:n], start=1)]


def listening_history(workspace, user_id: str, n: int = 10) -> list[dict]:
    """A listener's most-played songs: ``{rank, song_idx, song_id, plays}``, most plays first.

    Raises
    ------
    ParameterError   no such listener
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    row = ws.db.execute("SELECT idx FROM users WHERE user_id=?", (str(user_id),)).fetchone()
    if row is None:
        raise ParameterError(f"listener {user_id!r} is not in workspace '{ws.path.name}'")
    rows = ws.db.execute("SELECT p.song_idx, s.song_id, p.plays FROM plays p JOIN songs s ON s.idx = p.song_idx "
                         "WHERE p.user_idx=? ORDER BY p.plays DESC, p.song_idx LIMIT ?", (row[0], int(n))).fetchall()
    return [{"rank": r, "song_idx": int(i), "song_id": sid, "plays": float(c)}
            for r, (i, sid, c) in enumerate(rows, start=1)]


def unit_listeners(workspace, unit: str, n: int = 10) -> dict:
    """:meth:`ListenerIndex.of` for one unit (after :func:`build_listeners`)."""
    return ListenerIndex(workspace).of(unit, n)


def format_unit_listeners(d: dict) -> str:
    """Plain-text table of :meth:`ListenerIndex.of`."""
    lines = [f"{d['unit']}: fires in {d['songs_fired']} of {d['songs']} songs; mean effect over users "
             f"{d['mean_effect']:+.4f} (mean |effect| {d['mean_abs_effect']:.4f})",
             "Top listeners (mean rise of x_u . y over the songs it fires in)", f"  {'rank':>4}  {'user_id':<16} "
             f"{'effect':>8}"]
    lines += [f"  {r['rank']:>4}  {r['user_id']:<16} {r['effect']:>+8.4f}" for r in d["listeners"]]
    return "\n".join(lines)
