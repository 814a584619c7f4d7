"""Explanations with a score: a one-line description of every unit and dictionary feature (``audiovis explain``).

OpenAI's explain-simulate-score method (Bills et al. 2023, "Language models can explain neurons in language
models") without a language model: the *explanation* of a unit is the few terms that best predict its per-window
activation (``UnitIndex.acts``), chosen by greedy forward selection (each step adds the term most correlated with
what the terms chosen so far leave unexplained, while it adds at least ``min_gain`` R^2, at most ``max_terms``);
the *simulation* is a least-squares map from those terms alone to the activation, fitted on half of the songs;
the *score* is the Pearson correlation of simulated and real per-window activations on the other half (songs
split at random, seeded; a song's windows stay together so neighbouring windows do not leak).

Terms, per window:

* concepts: the workspace's ground truth (song labels, segments: :func:`audiovis.dictionary.window_concepts`),
  ``groove=ska`` (or ``not groove=ska`` when the unit is quieter on it);
* librosa descriptors: tempo, onset rate, spectral centroid and bandwidth, percussive share, loudness (the
  dissection's, cached in ``WS/index/descriptors.npz``) and spectral flatness of the log-mel, each named by its
  direction: ``fast``/``slow``, ``many onsets``/``few onsets``, ``bright``/``dark``, ``wide band``/``narrow
  band``, ``percussive``/``harmonic``, ``loud``/``quiet``, ``noisy``/``tonal``. All of them are cached together
  in ``WS/index/explain_descriptors.npz``, so a second run reads them in milliseconds.

Writes ``WS/index/explanations.json``::

    {"units": {"dense1:80": {"text": "groove=bluegrass, fast", "score": 0.93, "r2_fit": 0.9,
                             "terms": [{"term": "groove=bluegrass", "weight": 1.1}, ...]}, ...},
     "layers": {"dense1": {"median_score": 0.61, "scored": 55, "silent": 201}}, ...}

A unit that is constant on the fitting half (silent) gets ``text`` "silent" and ``score`` None.
"""
from __future__ import annotations

import json
import time

import numpy as np

from .errors import ParameterError
from .workspace import Workspace, read_json, save_json, save_npz

FILE = "explanations.json"
MAX_TERMS = 3
MIN_GAIN = 0.02
# continuous descriptor -> (word when the unit rises with it, word when it falls)
WORDS = {"tempo": ("fast", "slow"), "onset_rate": ("many onsets", "few onsets"), "centroid": ("bright", "dark"),
         "bandwidth": ("wide band", "narrow band"), "percussive": ("percussive", "harmonic"),
         "loudness": ("loud", "quiet"), "flatness": ("noisy", "tonal")}


# --------------------------------------------------------------------------------------------- arrays
def explain_arrays(acts: np.ndarray, terms: np.ndarray, positive: list[str], negative: list[str],
                   songs: np.ndarray, max_terms: int = MAX_TERMS, min_gain: float = MIN_GAIN,
                   seed: int = 0) -> list[dict]:
    """Explain and score every column of ``acts``.

    Parameters
    ----------
    acts : np.ndarray [shape=(n_windows, n_units)]
    terms : np.ndarray [shape=(n_windows, n_terms)]   concept indicators (0/1) and descriptors (finite)
    positive, negative : list of str [len=n_terms]   a term's words when its weight is positive / negative
    songs : np.ndarray [shape=(n_windows,)]   song of each window (the fit/score split is by song)
    max_terms : int   terms per explanation at most
    min_gain : float   R^2 (fitting half) a term must add to be kept
    seed : int   the random split of the songs into a fitting and a scoring half

    Returns
    -------
    list of dict [len=n_units]: text, score (None when it cannot be computed), r2_fit, terms
    """
    acts = np.asarray(acts, np.float64)
    X = np.asarray(terms, np.float64)
    songs = np.asarray(songs)
    if acts.ndim != 2 or X.ndim != 2 or len(acts) != len(X) or len(songs) != len(acts):
        raise ParameterError(f"activations {acts.shape}, terms {X.shape} and songs {songs.shape} must have one "
                             f"row per window")
    if len(positive) != X.shape[1] or len(negative) != X.shape[1]:
        raise ParameterError(f"{X.shape[1]} terms but {len(positive)} positive and {len(negative)} negative names")
    if not np.isfinite(X).all():
        raise ParameterError("terms must be finite (fill missing descriptors first)")
    uniq = np.unique(songs)
    if len(uniq) < 2:
        raise ParameterError(f"scoring needs at least 2 songs (a fitting and a scoring half), got {len(uniq)}")
    fit_songs = np.random.default_rng(seed).permutation(uniq)[:len(uniq) // 2]
    fit = np.isin(songs, fit_songs)
    mu, sd = X[fit].mean(0), X[fit].std(0)
    ok = sd > 1e-9
    Z = np.zeros_like(X)
    Z[:, ok] = (X[:, ok] - mu[ok]) / sd[ok]
    Zf, Zt = Z[fit], Z[~fit]
    n_f = fit.sum()
    out = []
    for j in range(acts.shape[1]):
        yf, yt = acts[fit, j], acts[~fit, j]
        if yf.std() < 1e-9:
            out.append({"text": "silent", "score": None, "r2_fit": None, "terms": []})
            continue
        y0 = yf - yf.mean()
        tss = float(y0 @ y0)
        sel, beta, r2, res = [], np.zeros(0), 0.0, y0
        for _ in range(max_terms):
            c = np.abs(Zf.T @ res) / n_f
            c[~ok] = -1
            c[sel] = -1
            best = int(np.argmax(c))
            if c[best] <= 0:
                break
            cand = sel + [best]
            b, *_ = np.linalg.lstsq(Zf[:, cand], y0, rcond=None)
            r = y0 - Zf[:, cand] @ b
            new_r2 = 1 - float(r @ r) / tss
            if new_r2 - r2 < min_gain:
                break
            sel, beta, r2, res = cand, b, new_r2, r
        if not sel:
            out.append({"text": "unexplained", "score": None, "r2_fit": 0.0, "terms": []})
            continue
        pred = Zt[:, sel] @ beta
        score = None
        if len(yt) > 1 and yt.std() > 1e-9 and pred.std() > 1e-9:
            score = round(float(np.corrcoef(pred, yt)[0, 1]), 4)
        order = np.argsort(-np.abs(beta), kind="stable")
        words = [positive[sel[i]] if beta[i] > 0 else negative[sel[i]] for i in order]
        out.append({"text": ", ".join(words), "score": score, "r2_fit": round(r2, 4),
                    "terms": [{"term": positive[sel[i]], "weight": round(float(beta[i]), 4)} for i in order]})
    return out


# --------------------------------------------------------------------------------------------- descriptors
def logmel_flatness(store, chunk: int = 512) -> np.ndarray:
    """Spectral flatness of every window's log-mel [shape=(n_windows,)]: geometric over arithmetic mean of the
    mel power per frame, averaged over the window's frames."""
    out = np.zeros(len(store.windows), np.float32)
    for i in range(0, len(store.windows), chunk):
        idx = np.arange(i, min(i + chunk, len(store.windows)))
        S = np.asarray(store.batch(idx), np.float64)               # (b, n_mels, frames), dB
        P = 10.0 ** (S / 10.0)
        gm = np.exp(np.log(P + 1e-12).mean(1))
        out[idx] = (gm / (P.mean(1) + 1e-12)).mean(1)
    return out


def window_terms(ws: Workspace, store, descriptors: bool = True, progress: bool = True,
                 force: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
    """The terms of every window [shape=(n_windows, n_terms)] and their positive / negative words: ground-truth
    concepts, then (``descriptors``) the continuous librosa descriptors and flatness (cached, see the module)."""
    from .dictionary import window_concepts
    Y, names = window_concepts(ws, store)
    cols, pos, neg = [Y.astype(np.float32)], list(names), [f"not {c}" for c in names]
    if descriptors:
        D = window_descriptor_values(ws, store, progress, force)
        med = np.nanmedian(D, 0)
        D = np.where(np.isfinite(D), D, np.where(np.isfinite(med), med, 0))
        cols.append(D.astype(np.float32))
        pos += [w[0] for w in WORDS.values()]
        neg += [w[1] for w in WORDS.values()]
    return np.concatenate(cols, 1), pos, neg


def window_descriptor_values(ws: Workspace, store, progress: bool = True, force: bool = False) -> np.ndarray:
    """The continuous descriptors of :data:`WORDS` per window [shape=(n_windows, 7)], cached in
    ``WS/index/explain_descriptors.npz`` (computed from dissection's librosa descriptors and the log-mel)."""
    from .visualise.dissect import DESCRIPTORS, window_descriptors
    path = ws.index_dir / "explain_descriptors.npz"
    sig = json.dumps([ws.get_meta("done:featurize"), list(WORDS), len(store.windows)], default=str)
    if path.exists() and not force:
        with np.load(path, allow_pickle=False) as z:
            if str(z["sig"]) == sig:
                return z["values"]
    base = window_descriptors(ws, store, progress, force)               # (n, 6 + 2): continuous, key, mode
    cont = {name: base[:, i] for i, name in enumerate(DESCRIPTORS)}
    cont["flatness"] = logmel_flatness(store)
    values = np.stack([cont[name] for name in WORDS], 1).astype(np.float32)
    save_npz(path, values=values, sig=np.array(sig))
    return values


# --------------------------------------------------------------------------------------------- the stage
def explain(workspace, descriptors: bool = True, max_terms: int = MAX_TERMS, min_gain: float = MIN_GAIN,
            seed: int = 0, progress: bool = True, force_descriptors: bool = False) -> dict:
    """Explain and score every unit and dictionary feature of the index; writes ``index/explanations.json``.

    Parameters
    ----------
    workspace : str, Path or Workspace   needs the ``index`` stage
    descriptors : bool   use the librosa descriptors as terms too (cached; the first run decodes every song)
    max_terms, min_gain, seed : see :func:`explain_arrays`
    force_descriptors : bool   recompute the cached descriptors

    Returns
    -------
    dict as written (``units``, ``layers`` with each layer's median score, ``terms``, ``seconds``...)
    """
    from .index import UnitIndex
    if max_terms < 1:
        raise ParameterError(f"max_terms must be at least 1, got {max_terms!r}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("index")
    ix = UnitIndex(ws)
    t0 = time.perf_counter()
    X, pos, neg = window_terms(ws, ix.store, descriptors, progress, force_descriptors)
    if X.shape[1] == 0:
        raise ParameterError(f"workspace '{ws.path}' has no ground-truth labels and descriptors are off: nothing "
                             f"to explain units with; drop --no-descriptors or ingest with --labels")
    t_terms = time.perf_counter() - t0
    names = ix.units()
    nW = len(ix.store.windows)
    rows = explain_arrays(np.asarray(ix.acts[:nW], np.float32), X, pos, neg, ix.store.windows[:, 0], max_terms,
                          min_gain, seed)
    units = dict(zip(names, rows))
    layers = {}
    for layer in ix.layers:
        sc = [units[u]["score"] for u in ix.units(layer) if units[u]["score"] is not None]
        layers[layer] = {"median_score": round(float(np.median(sc)), 4) if sc else None, "scored": len(sc),
                         "silent": sum(units[u]["text"] == "silent" for u in ix.units(layer)),
                         "units": ix.layers[layer]}
    res = {"method": "greedy terms -> least squares on half the songs -> Pearson r on the other half",
           "max_terms": max_terms, "min_gain": min_gain, "seed": seed, "n_windows": nW, "terms": pos,
           "descriptors": descriptors, "layers": layers, "units": units,
           "seconds": {"terms": round(t_terms, 2), "explain": round(time.perf_counter() - t0 - t_terms, 2)}}
    save_json(ws.index_dir / FILE, res)
    return res


def load_explanations(ws: Workspace) -> dict[str, dict]:
    """{unit: {text, score, ...}} from ``WS/index/explanations.json``; empty when missing or unreadable."""
    d = read_json(ws.index_dir / FILE, {})
    units = d.get("units", {}) if isinstance(d, dict) else {}
    return {str(u): v for u, v in (units.items() if isinstance(units, dict) else ())
            if isinstance(v, dict) and "text" in v}


def explanation_summary(res: dict) -> str:
    """What ``audiovis explain`` prints: the median score per layer."""
    lines = ["layer           units  scored  silent  median score"]
    for layer, s in res["layers"].items():
        med = "n/a" if s["median_score"] is None else f"{s['median_score']:.3f}"
        lines.append(f"{layer:<15} {s['units']:>5}  {s['scored']:>6}  {s['silent']:>6}  {med:>12}")
    return "\n".join(lines)
