"""Network dissection for audio (after Bau et al. 2017): score every unit against labelled concepts.

Concepts per window (the index's 3 s windows):

* ground truth where the workspace has it: song labels (``groove=rock``) and segments, a window taking the
  segment value that covers most of it (so ``lead=none`` before the lead enters);
* for any catalogue, descriptors computed per window with librosa (tempo, onset rate, spectral centroid and
  bandwidth, percussive share from HPSS, chroma-based key and mode, loudness), binarised into concepts: the top
  and bottom tercile of each continuous descriptor (``bright`` / ``dark``, ``fast`` / ``slow``...), the estimated
  key and mode (``key~A``, ``mode~minor``). Cached in ``WS/index/descriptors.npz``.

Score: AUROC of the unit's per-window activation (``UnitIndex.acts``) for concept-vs-rest; a unit is a detector
for a concept when AUROC >= 0.9. Also reported: IoU between the unit's top-0.5% windows and the concept's
windows (Bau's measure, detector there when IoU > 0.04).

Writes ``WS/index/dissection.json``::

    {"metric": "auroc", "threshold": 0.9,
     "units": {"conv2:17": [{"concept": "lead=flute", "score": 0.95, "detector": true, "iou": 0.1}, ...]},
     "concepts": {"lead=flute": [{"unit": "dense1:3", "score": 0.97, "iou": 0.1}, ...]},
     "concept_info": {"lead=flute": {"source": "labels", "positives": 321}}, ...}

(best 5 first in both lists) and ``WS/index/dissection.md`` (concept, best unit, score).
"""
from __future__ import annotations

import json
import re

import numpy as np

from ..errors import ParameterError
from ..features import mel_frequencies
from ..workspace import Workspace, save_json, save_npz, save_text

THRESHOLD = 0.9
IOU_QUANTILE = 0.995
MIN_POSITIVES = 5
TOP = 5
# the librosa descriptor pass's cost, measured (bench/RESULTS.md): seconds of one core per second of audio
DESCRIPTOR_S_PER_AUDIO_S = 0.007

# continuous descriptor -> (name of the top tercile, name of the bottom tercile)
DESCRIPTORS = {
    "tempo": ("fast", "slow"),
    "onset_rate": ("busy", "calm"),
    "centroid": ("bright", "dark"),
    "bandwidth": ("wide band", "narrow band"),
    "percussive": ("percussive", "harmonic"),
    "loudness": ("loud", "quiet"),
}
KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl-Kessler key profiles
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def descriptor_minutes(ws) -> int:
    """About how long (minutes, at least 1) the full dissection's descriptor pass takes on one core for the
    workspace's songs (:data:`DESCRIPTOR_S_PER_AUDIO_S` x their total duration)."""
    audio_s = sum(float(s.get("duration") or 0.0) for s in ws.songs())
    return max(1, round(audio_s * DESCRIPTOR_S_PER_AUDIO_S / 60))


# --------------------------------------------------------------------------------------------- scoring

def auroc_matrix(acts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every unit for every concept (Mann-Whitney U with average ranks for ties).

    Parameters
    ----------
    acts : np.ndarray [shape=(n_windows, n_units)]
    labels : np.ndarray [shape=(n_windows, n_concepts)] bool

    Returns
    -------
    auc : np.ndarray [shape=(n_units, n_concepts)]  NaN for a concept without positives or negatives
    """
    from scipy.stats import rankdata
    acts = np.asarray(acts, dtype=np.float64)
    Y = np.asarray(labels, dtype=np.float64)
    if acts.shape[0] != Y.shape[0]:
        raise ParameterError(f"activations have {acts.shape[0]} windows but labels have {Y.shape[0]}")
    R = rankdata(acts, axis=0, method="average")                       # (n, U)
    n_pos = Y.sum(0)
    n_neg = Y.shape[0] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (R.T @ Y - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[:, (n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def iou_matrix(acts: np.ndarray, labels: np.ndarray, quantile: float = IOU_QUANTILE) -> np.ndarray:
    """IoU between each unit's windows above its ``quantile`` and each concept's windows [shape=(U, K)]."""
    acts = np.asarray(acts, dtype=np.float32)
    thr = np.quantile(acts, quantile, axis=0)
    A = (acts >= thr) & (acts > 0)                                      # a silent unit detects nothing
    Y = np.asarray(labels, dtype=bool)
    inter = A.T.astype(np.float64) @ Y.astype(np.float64)
    union = A.sum(0)[:, None] + Y.sum(0)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def dissect_arrays(acts: np.ndarray, unit_names: list[str], labels: np.ndarray, concept_names: list[str],
                   threshold: float = THRESHOLD, top: int = TOP, iou: bool = True) -> dict:
    """Score units against concepts and build the ``dissection.json`` structure (without ``concept_info``)."""
    if len(unit_names) != acts.shape[1] or len(concept_names) != labels.shape[1]:
        raise ParameterError("unit or concept names do not match the array shapes")
    auc = auroc_matrix(acts, labels)
    io = iou_matrix(acts, labels) if iou else None
    units, concepts = {}, {}
    for i, u in enumerate(unit_names):
        order = [j for j in np.argsort(-np.nan_to_num(auc[i], nan=-1))[:top] if np.isfinite(auc[i, j])]
        units[u] = [{"concept": concept_names[j], "score": round(float(auc[i, j]), 4),
                     "detector": bool(auc[i, j] >= threshold),
                     **({"iou": round(float(io[i, j]), 4)} if io is not None else {})} for j in order]
    for j, c in enumerate(concept_names):
        if not np.isfinite(auc[:, j]).any():
            continue
        order = np.argsort(-np.nan_to_num(auc[:, j], nan=-1))[:top]
        concepts[c] = [{"unit": unit_names[i], "score": round(float(auc[i, j]), 4),
                        **({"iou": round(float(io[i, j]), 4)} if io is not None else {})} for i in order]
    return {"metric": "auroc", "threshold": threshold, "iou_quantile": IOU_QUANTILE, "units": units,
            "concepts": concepts}


# --------------------------------------------------------------------------------------------- concepts
def _window_times(store) -> tuple[np.ndarray, np.ndarray]:
    hop_s = store.cfg.hop_length / store.cfg.sr
    start = store.windows[:, 1] * hop_s
    return start, start + store.cfg.window_frames * hop_s


def ground_truth_concepts(ws: Workspace, store, max_values: int = 30) -> tuple[np.ndarray, list[str]]:
    """Per-window ground-truth concepts [shape=(n_windows, K)] bool and their names ``concept=value``.

    A song's labels hold for all its windows; a concept that has segments takes, per window, the value of the
    segment covering most of the window. Concepts with more than ``max_values`` values (numbers) are skipped.
    """
    labels = ws.labels()
    if not labels:
        return np.zeros((len(store.windows), 0), bool), []
    ids = ws.song_ids()
    start, end = _window_times(store)
    song = store.windows[:, 0]
    segs: dict[str, dict[str, list]] = {}
    for s in ws.segments():
        segs.setdefault(s["song_id"], {}).setdefault(s["concept"], []).append(s)
    concepts = sorted({c for d in labels.values() for c in d})
    values: dict[str, list] = {}
    for c in concepts:
        col = []
        for w in range(len(song)):
            sid = ids[song[w]]
            v = labels.get(sid, {}).get(c)
            cand = segs.get(sid, {}).get(c)
            if cand:
                ov = [min(end[w], s["end_s"]) - max(start[w], s["start_s"]) for s in cand]
                v = cand[int(np.argmax(ov))]["value"]
            col.append(v)
        values[c] = col
    cols, names = [], []
    for c in concepts:
        vals = sorted({v for v in values[c] if v not in (None, "")})
        if not 2 <= len(vals) <= max_values:
            continue
        arr = np.array(values[c], dtype=object)
        for v in vals:
            cols.append(arr == v)
            names.append(f"{c}={v}")
    return (np.stack(cols, 1) if cols else np.zeros((len(song), 0), bool)), names


def _song_descriptors(y: np.ndarray, logmel: np.ndarray, windows: np.ndarray, cfg) -> np.ndarray:
    """Descriptors of one song's windows [shape=(n_windows_of_song, 6 + 2)]: the continuous ones in
    ``DESCRIPTORS`` order, then key index (0..11) and mode (1 major, 0 minor)."""
    import librosa
    sr, hop, W = cfg.sr, cfg.hop_length, cfg.window_frames
    M_db = logmel.T.astype(np.float32)                                  # (n_mels, t)
    M = 10.0 ** (M_db / 10.0)
    f = mel_frequencies(cfg.n_mels, sr, cfg.fmin, cfg.fmax)[:, None]         # the front end's mel scale
    H, P = librosa.decompose.hpss(M, kernel_size=17)
    env = librosa.onset.onset_strength(S=M_db, sr=sr, hop_length=hop)
    S = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=hop)) ** 2
    chroma = librosa.feature.chroma_stft(S=S, sr=sr, n_fft=cfg.n_fft)
    out = np.zeros((len(windows), len(DESCRIPTORS) + 2), np.float32)
    profiles = np.stack([np.roll(_MAJOR, k) for k in range(12)] + [np.roll(_MINOR, k) for k in range(12)])
    profiles = (profiles - profiles.mean(1, keepdims=True)) / profiles.std(1, keepdims=True)
    for i, st in enumerate(windows):
        sl = slice(int(st), int(st) + W)
        m = M[:, sl]
        e = m.sum(0) + 1e-12
        cen = (f * m).sum(0) / e
        bw = np.sqrt(((f - cen) ** 2 * m).sum(0) / e)
        w = e / e.sum()
        ctx = env[max(0, int(st) - W):int(st) + 2 * W]                  # 9 s of context for a stable tempo
        tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=ctx, sr=sr, hop_length=hop))[0])
        onsets = librosa.onset.onset_detect(onset_envelope=env[sl], sr=sr, hop_length=hop)
        c = chroma[:, sl].mean(1)
        c = (c - c.mean()) / (c.std() + 1e-9)
        k = int(np.argmax(profiles @ c))
        out[i] = [tempo, len(onsets) / (W * hop / sr), float((cen * w).sum()), float((bw * w).sum()),
                  float(P[:, sl].sum() / (H[:, sl].sum() + P[:, sl].sum() + 1e-12)),
                  float(10 * np.log10(m.mean() + 1e-12)), k % 12, 1.0 if k < 12 else 0.0]
    return out


def window_descriptors(ws: Workspace, store=None, progress: bool = True, force: bool = False) -> np.ndarray:
    """librosa descriptors of every window [shape=(n_windows, 8)], cached in ``WS/index/descriptors.npz``."""
    from tqdm.auto import tqdm

    from .. import audio
    from ..features import FeatureStore
    store = store or FeatureStore(ws)
    path = ws.index_dir / "descriptors.npz"
    sig = json.dumps([ws.get_meta("done:featurize"), sorted(DESCRIPTORS), 2], default=str)
    if path.exists() and not force:
        with np.load(path, allow_pickle=False) as z:
            if str(z["sig"]) == sig and z["values"].shape[0] == len(store.windows):
                return z["values"]
    songs = ws.songs()
    out = np.full((len(store.windows), len(DESCRIPTORS) + 2), np.nan, np.float32)
    for s in tqdm(songs, desc="descriptors", unit="song", disable=not progress):
        widx = store.song_windows(s["idx"])
        if not len(widx):
            continue
        try:
            y = audio.load(ws.resolve_audio(s["path"]), sr=store.cfg.sr, max_duration=store.cfg.max_duration)
        except Exception:
            continue
        out[widx] = _song_descriptors(y, np.asarray(store.song(s["idx"])), store.windows[widx, 1], store.cfg)
    save_npz(path, values=out, sig=np.array(sig))
    return out


def descriptor_concepts(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Binarise descriptors: top/bottom tercile of each continuous one, estimated key and mode."""
    cols, names = [], []
    ok = np.isfinite(values).all(1)
    for j, (hi_name, lo_name) in enumerate(DESCRIPTORS.values()):
        v = values[:, j]
        lo, hi = np.nanquantile(v, [1 / 3, 2 / 3]) if ok.any() else (0, 0)
        if hi > lo:
            cols += [ok & (v > hi), ok & (v < lo)]
            names += [hi_name, lo_name]
    key, mode = values[:, -2], values[:, -1]
    for k, name in enumerate(KEYS):
        cols.append(ok & (key == k))
        names.append(f"key~{name}")
    cols += [ok & (mode == 1), ok & (mode == 0)]
    names += ["mode~major", "mode~minor"]
    return np.stack(cols, 1), names


# --------------------------------------------------------------------------------------------- the stage
def dissect(workspace, descriptors: bool = True, threshold: float = THRESHOLD, progress: bool = True,
            force_descriptors: bool = False) -> dict:
    """Score every unit of the index against every concept; writes ``index/dissection.json`` and ``.md``."""
    from ..index import UnitIndex
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("index")
    ix = UnitIndex(ws)
    Y_gt, n_gt = ground_truth_concepts(ws, ix.store)
    cols, names, info = [Y_gt], list(n_gt), {n: {"source": "labels"} for n in n_gt}
    if descriptors:
        Y_d, n_d = descriptor_concepts(window_descriptors(ws, ix.store, progress, force_descriptors))
        cols.append(Y_d)
        names += n_d
        info.update({n: {"source": "descriptor"} for n in n_d})
    Y = np.concatenate(cols, 1)
    pos = Y.sum(0)
    keep = (pos >= MIN_POSITIVES) & (len(Y) - pos >= MIN_POSITIVES)
    Y, names = Y[:, keep], [n for n, k in zip(names, keep) if k]
    for n, p in zip(names, Y.sum(0)):
        info[n]["positives"] = int(p)
    acts = np.asarray(ix.acts, dtype=np.float32)
    res = dissect_arrays(acts, ix.units(), Y, names, threshold)
    res["concept_info"] = {n: info[n] for n in names}
    res["n_windows"] = int(len(Y))
    save_json(ws.index_dir / "dissection.json", res)
    save_text(ws.index_dir / "dissection.md", markdown_report(res))
    return res


def markdown_report(res: dict) -> str:
    thr = res["threshold"]
    lines = ["# Network dissection\n",
             f"Score: AUROC of a unit's per-window activation for concept-vs-rest over {res.get('n_windows', '?')} "
             f"windows; a unit is a detector when AUROC >= {thr}. IoU: the unit's top "
             f"{100 * (1 - res.get('iou_quantile', IOU_QUANTILE)):.1f}% windows vs the concept's windows.\n",
             "| concept | source | best unit | AUROC | IoU | detector | runners-up |", "|---|---|---|---|---|---|---|"]
    info = res.get("concept_info", {})
    for c, lst in res["concepts"].items():
        if not lst:
            continue
        b = lst[0]
        ru = ", ".join(f"{e['unit']} {e['score']:.3f}" for e in lst[1:3])
        lines.append(f"| {c} | {info.get(c, {}).get('source', '')} | {b['unit']} | {b['score']:.3f} | "
                     f"{b.get('iou', float('nan')):.3f} | {'yes' if b['score'] >= thr else 'no'} | {ru} |")
    n_det = sum(1 for lst in res["concepts"].values() if lst and lst[0]["score"] >= thr)
    lines.append(f"\n{n_det} of {len(res['concepts'])} concepts have a detector (AUROC >= {thr}).")
    return "\n".join(lines) + "\n"


def load_dissection(ws: Workspace) -> dict:
    p = ws.index_dir / "dissection.json"
    if not p.exists():
        from ..errors import WorkspaceError
        raise WorkspaceError(f"workspace '{ws.path}' has no dissection yet: run `audiovis dissect -w {ws.path}`")
    return json.loads(p.read_text())


# --------------------------------------------------------------------------------------------- search
_STOP = {"unit", "units", "for", "the", "a", "an", "of", "detector", "detectors", "that", "detect", "detects",
         "with", "which", "neuron", "neurons", "find", "show", "me", "in", "and", "is"}


def _tokens(s: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9#]+", s.lower()) if t and t not in _STOP]


def _match(q: str, t: str) -> bool:
    if q == t:
        return True
    n = min(len(q), len(t))
    return n >= 4 and q[:max(4, n - 2)] == t[:max(4, n - 2)]            # "distorted" ~ "distortion"


def search_concepts(query: str, concepts: list[str]) -> list[str]:
    """Concepts matching a free-text query, best first: "units for distorted guitar" -> lead=distortion_guitar."""
    qt = _tokens(query)
    if not qt:
        return []
    scored = []
    for c in concepts:
        ct = _tokens(c)
        hits = sum(any(_match(q, t) for t in ct) for q in qt)
        if hits:
            scored.append((-hits / len(qt), -hits / max(len(ct), 1), c))
    return [c for *_, c in sorted(scored)]


def search_units(query: str, res: dict, n: int = 5) -> list[dict]:
    """Rows (concept, unit, score, detector) for the concepts matching ``query``, best units first."""
    rows = []
    for c in search_concepts(query, list(res["concepts"])):
        for e in res["concepts"][c][:n]:
            rows.append({"concept": c, "unit": e["unit"], "score": e["score"],
                         "detector": e["score"] >= res["threshold"], "iou": e.get("iou")})
    return rows
