"""Counterfactual listening: a cold-start query with units ablated or clamped, next to the original.

**The query** (:func:`counterfactual`, ``audiovis recommend FILE --ablate conv3:17 --clamp dense1:3=2.5``). The
new song's windows go through the model with the units ablated (see :mod:`audiovis.listeners`) or clamped (the
channel set to the value at every time step of every window, in the unit's own activation units, those of the
unit view); the counterfactual factors are the mean over windows, and the similar songs and likely listeners
are recomputed from them, next to the original ones.

**Why a listener** (:func:`listener_drivers`): for a new song, the units whose ablation lowers a likely
listener's score ``x_u . y'`` most, i.e. ``x_u . (y' - y'^-j)`` with ``y'`` the mean over the song's windows.

The hooks and the checks of unit names are :mod:`audiovis.listeners`' (:func:`~audiovis.listeners.intervene`,
:func:`~audiovis.listeners.parse_interventions`, :func:`~audiovis.listeners.ablation_deltas`).
"""
from __future__ import annotations

import time

import numpy as np

from .errors import ParameterError
from .features import frame_windows
from .listeners import ablation_deltas, feature_dictionaries, intervened_factors, parse_interventions, unit_names


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
    dicts = feature_dictionaries(engine.index, engine.model)            # dense1.dict:3 may be named too
    ivs = parse_interventions(engine.layers, ablate, clamp, dicts)
    if not ivs:
        raise ParameterError("nothing to change: name a unit to ablate (e.g. 'conv3:17') or clamp "
                             "(e.g. 'conv3:17=2.5')")
    x = _windows(engine, emb)
    y0 = np.asarray(emb.factors, np.float32)
    y1 = intervened_factors(engine.model, x, ivs, engine.cfg.batch_windows, dicts).mean(0)
    changed = np.zeros(len(x), bool)
    for iv in ivs:
        if iv.value is not None:
            changed[:] = True
        elif emb.acts is not None and iv.unit.layer in dicts:             # where the feature fires
            base, sae = dicts[iv.unit.layer]
            lo = unit_names(engine.layers).index(f"{base}:0")
            changed |= sae.encode(emb.acts[:, lo:lo + engine.layers[base]])[:, iv.unit.index] > 0
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
