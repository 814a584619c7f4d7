"""The NIPS 2013 cold-start protocol: rank held-out songs for each user by x_u . y'_i; AUC and mAP@k."""
from __future__ import annotations

import os

import numpy as np

from .errors import WorkspaceError
from .factors import load_factors
from .features import FeatureStore
from .metrics import cold_start_metrics
from .models.frozen import FrozenWindows, mean_per_song, uses_trunk_cache
from .readout import ridge_fit_predict
from .units import layer_sizes
from .workspace import Workspace, save_json, save_text

OUTPUTS = ("evaluation.json", "evaluation.md")     # what the stage writes (its done-marker records them)


def mfcc_stats(store: FeatureStore, songs: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """The baseline's features: mean and std of MFCCs and their deltas over the song [shape=(n, 4 * n_mfcc)]."""
    import librosa
    out = []
    for s in songs:
        S_db = np.asarray(store.song(s), dtype=np.float32).T          # (n_mels, t)
        M = librosa.feature.mfcc(S=S_db, n_mfcc=n_mfcc)                 # (n_mfcc, t)
        D = librosa.feature.delta(M, width=9 if M.shape[1] >= 9 else 3)
        out.append(np.concatenate([M.mean(1), M.std(1), D.mean(1), D.std(1)]))
    return np.array(out, dtype=np.float64)


def logmel_stats(store: FeatureStore, songs: np.ndarray) -> np.ndarray:
    """The stronger cheap baseline's features: per mel band, over all the song's stored log-mel frames, the mean,
    the std, the mean absolute frame-to-frame difference and the 90th percentile [shape=(n, 4 * n_mels)].

    Float64 throughout (the frames are stored as float16); a one-frame song has a mean absolute delta of 0.
    """
    out = []
    for s in songs:
        A = np.asarray(store.song(int(s)), dtype=np.float64)          # (t, n_mels)
        d = np.abs(np.diff(A, axis=0)).mean(0) if len(A) > 1 else np.zeros(A.shape[1])
        out.append(np.concatenate([A.mean(0), A.std(0), d, np.percentile(A, 90, axis=0)]))
    return np.array(out, dtype=np.float64)


def stats_ridge(store: FeatureStore, extract, Y: np.ndarray, tr: np.ndarray, va: np.ndarray,
                te: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge from per-song statistics to factors: the predicted factors of the test songs and the lambda.

    ``extract(store, songs)`` gives one row of statistics per song (:func:`mfcc_stats`, :func:`logmel_stats`);
    the ridge is fitted on the training songs' factors ``Y[tr]`` with its features standardised on the training
    songs and lambda picked on the validation songs (:func:`ridge_fit_predict`).
    """
    F = extract(store, np.concatenate([tr, va, te]))
    Ftr, Fva, Fte = np.split(F, [len(tr), len(tr) + len(va)])
    return ridge_fit_predict(Ftr, Y[tr], Fva, Y[va], Fte)


# the cheap baselines, each a ridge from per-song statistics to factors (key in evaluation.json, progress label)
STATS_BASELINES = (("mfcc_linear", "MFCC", mfcc_stats), ("logmel_stats_ridge", "log-mel statistics", logmel_stats))


def one_hot_labels(labels: dict[str, dict[str, str]], song_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """One column per (concept, value) of the ground truth [shape=(n_songs, n_values)]."""
    cols = sorted({(c, v) for d in labels.values() for c, v in d.items()})
    pos = {cv: i for i, cv in enumerate(cols)}
    M = np.zeros((len(song_ids), len(cols)))
    for i, sid in enumerate(song_ids):
        for c, v in labels.get(sid, {}).items():
            M[i, pos[(c, v)]] = 1
    return M, [f"{c}={v}" for c, v in cols]


def cold_start_split(ws: Workspace, store: FeatureStore, fac: dict) -> tuple[np.ndarray, ...]:
    """The protocol's songs: training, validation and held-out song indices (those with at least one window),
    and which held-out songs each user played.

    Returns
    -------
    tr, va, te : np.ndarray   song indices;  P : np.ndarray [shape=(n_users, len(te)), bool]
    """
    has = store.has_windows()
    tr, va, te = (np.flatnonzero((fac["split"] == s) & has) for s in ("train", "valid", "test"))
    return tr, va, te, (ws.play_matrix().tocsc()[:, te] > 0).toarray()


def evaluate(workspace: str | os.PathLike | Workspace, k: int = 500, force: bool = False,
             progress: bool = True) -> dict:
    """Cold-start evaluation on the held-out songs; writes ``evaluation.json`` and ``evaluation.md``."""
    from .train import load_model, predict_songs
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("train")
    done = None if force else ws.finished("evaluate", OUTPUTS, say=progress)
    if done:
        return done["results"]
    store = FeatureStore(ws)
    fac = load_factors(ws)
    tr, va, te, P = cold_start_split(ws, store, fac)
    if len(te) < 2:
        raise WorkspaceError(f"only {len(te)} held-out songs with features: nothing to evaluate")
    X, Y = fac["user_factors"], fac["song_factors"]
    rng = np.random.default_rng(0)
    results: dict = {"test_songs": len(te), "k": k, "models": {}}
    m = results["models"]
    rand = [cold_start_metrics(X, rng.standard_normal((len(te), X.shape[1])), P, k) for _ in range(5)]
    m["random"] = {"auc": float(np.mean([r["auc"] for r in rand])), "map": float(np.mean([r["map"] for r in rand])),
                   "users": rand[0]["users"]}
    for key, label, extract in STATS_BASELINES:
        if progress:
            print(f"evaluate: {label} baseline")
        pred, lam = stats_ridge(store, extract, Y, tr, va, te)
        m[key] = {**cold_start_metrics(X, pred, P, k), "lambda": lam}
    pooled, why = _pretrained_pooled(ws, store, progress)
    if pooled is not None:                             # ridge on the frozen MSD tagger's pooled features
        S = mean_per_song(store, pooled)
        pred, lam = ridge_fit_predict(S[tr], Y[tr], S[va], Y[va], S[te])
        m["pretrained_ridge"] = {**cold_start_metrics(X, pred, P, k), "lambda": lam}
    else:
        results["pretrained_ridge_missing"] = why
    if progress:
        print("evaluate: content model")
    model, _ = load_model(ws)
    results["preset"] = (ws.get_meta("done:train") or {}).get("summary", {}).get("preset")
    if uses_trunk_cache(model):                        # the frozen layers' output is cached: run the head only
        sel = np.flatnonzero(np.isin(store.windows[:, 0], te))
        A, _, _ = FrozenWindows(ws, store, model, layer_sizes(model), progress).activations(sel)
        pred = mean_per_song(store, A[:, -model.cfg.n_factors:], te, windows=sel)
    else:
        pred = predict_songs(model, store, te)
    m["cnn"] = cold_start_metrics(X, pred, P, k)
    labels = ws.labels()
    if labels:
        ids = ws.song_ids()
        L, _names = one_hot_labels(labels, ids)
        pred, lam = ridge_fit_predict(L[tr], Y[tr], L[va], Y[va], L[te])
        m["audible_oracle"] = {**cold_start_metrics(X, pred, P, k), "lambda": lam}
    pop = np.log1p(P.sum(axis=0))                      # how many users played each held-out song
    m["popularity"] = cold_start_metrics(np.ones((len(X), 1)), pop[:, None], P, k)
    m["upper_bound"] = cold_start_metrics(fac["user_factors_full"], fac["song_factors_full"][te], P, k)
    lo, hi = m["random"]["auc"], m["upper_bound"]["auc"]
    for v in m.values():
        v["gap_share"] = (v["auc"] - lo) / (hi - lo) if hi > lo else float("nan")
    if "audible_oracle" in m:
        results["cnn_share_of_oracle"] = m["cnn"]["gap_share"] / m["audible_oracle"]["gap_share"]
    results["cnn_minus_mfcc_auc"] = m["cnn"]["auc"] - m["mfcc_linear"]["auc"]
    results["cnn_minus_logmel_stats_auc"] = m["cnn"]["auc"] - m["logmel_stats_ridge"]["auc"]
    if "pretrained_ridge" in m:
        results["cnn_minus_pretrained_ridge_auc"] = m["cnn"]["auc"] - m["pretrained_ridge"]["auc"]
    save_json(ws.path / "evaluation.json", results)
    save_text(ws.path / "evaluation.md", markdown_table(results))
    ws.mark_done("evaluate", {"results": results}, outputs=OUTPUTS)
    return results


def _pretrained_pooled(ws: Workspace, store: FeatureStore, progress: bool):
    """The MSD tagger's cached pooled features for the baseline row, or (None, why not)."""
    from .errors import DependencyError, ParameterError
    from .models.frozen import pooled_features
    try:
        return pooled_features(ws, store, progress=progress), None
    except (ParameterError, DependencyError) as e:
        return None, str(e)


NAMES = {"random": "random", "mfcc_linear": "linear regression on MFCC statistics",
         "logmel_stats_ridge": "ridge on log-mel band statistics",
         "pretrained_ridge": "ridge on the pretrained MSD tagger's pooled features (musicnn, frozen)",
         "cnn": "content model (audiovis)",
         "audible_oracle": "audible oracle (true concept labels, linear)",
         "popularity": "popularity of the held-out songs (uses their plays)",
         "upper_bound": "upper bound (WMF with plays)"}


def markdown_table(results: dict) -> str:
    lines = [f"Cold-start evaluation on {results['test_songs']} held-out songs "
             f"({results['models']['random']['users']} users with plays of them); mAP@{results['k']}.", "",
             "| model | AUC | mAP | share of random-to-upper-bound AUC gap |", "|---|---|---|---|"]
    for key, v in results["models"].items():
        lines.append(f"| {NAMES.get(key, key)} | {v['auc']:.4f} | {v['map']:.4f} | {100 * v['gap_share']:.1f}% |")
    lines.append("")
    if results.get("preset"):
        lines.insert(1, f"Content model: preset `{results['preset']}`.")
    if "cnn_share_of_oracle" in results:
        lines.append(f"Content model share / oracle share: {100 * results['cnn_share_of_oracle']:.1f}%; "
                     f"content model AUC minus MFCC AUC: {results['cnn_minus_mfcc_auc']:+.4f}.")
    if "cnn_minus_logmel_stats_auc" in results:        # absent from evaluations written before this baseline
        lines.append(f"Content model AUC minus log-mel statistics AUC: {results['cnn_minus_logmel_stats_auc']:+.4f}.")
    if "cnn_minus_pretrained_ridge_auc" in results:
        lines.append(f"Content model AUC minus pretrained-tagger ridge AUC: "
                     f"{results['cnn_minus_pretrained_ridge_auc']:+.4f}.")
    elif results.get("pretrained_ridge_missing"):
        lines.append(f"No pretrained-tagger row: {results['pretrained_ridge_missing']}")
    return "\n".join(lines) + "\n"
