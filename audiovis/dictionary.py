"""Dictionary features: a sparse autoencoder on a layer's per-window activations (``audiovis dictionary``).

A layer's units are often polysemantic (one unit mixes several concepts) and many are silent (the demo's dense1:
201 of 256 units never fire). A sparse autoencoder (Bricken et al. 2023, Cunningham et al. 2023) rewrites every
window's activation vector as a sparse, non-negative combination of learned directions, the *features*, which
tend to be closer to one concept each. Its input is the index's per-window activations (``index/acts.npy``: conv
units as their maximum over the window, dense units as they are), standardised per unit.

TopK, not L1 (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the encoder keeps the ``k``
largest pre-activations of each window and zeroes the rest, so the sparsity is set directly (no L1 coefficient to
sweep per layer, which moves the sparsity and the reconstruction together), there is no L1 shrinkage of the
activations that are kept, and latents that stopped firing get a gradient from the AuxK loss (the ``aux_k``
largest dead latents reconstruct the residual). Decoder rows have unit norm; seeded; the optimiser state is saved
every ``checkpoint_every`` epochs, so a killed run resumes where it was (same result as an uninterrupted one:
each epoch's shuffle is drawn from ``(seed, epoch)``).

The dictionary of layer ``dense1`` is a layer of its own, ``dense1.dict``, with features ``dense1.dict:17``: it
writes an index in the layer index's format (per-window feature activations, top/bottom-k clips, statistics,
histograms, through :func:`audiovis.index.reduce_batch`, :func:`~audiovis.index.unit_statistics` and
:func:`~audiovis.index.window_histograms`), which :class:`audiovis.index.UnitIndex` loads as an extra layer, so
the page, dissection and export show features exactly like units. Files, ``WS/index/dict/dense1/``::

    sae.npz      weights (W_enc [d, F], b_enc [F], W_dec [F, d], b_dec [d]), input mean and std, k
    acts.npy     [shape=(n_windows, F), float16] per-window feature activations
    units.npz    top/bottom-k, statistics, histograms (as index/units.npz)
    layers.json  {"layers": {"dense1.dict": F}, "k", "n_windows", "base": "dense1"}
    report.json  config, FVU, dead and dense features, detector shares, seconds

Songs added with ``audiovis add`` are encoded with the saved weights and merged in (:func:`update_dictionaries`,
the dictionary is not retrained); a dictionary whose window count does not match the index is left out of
:class:`~audiovis.index.UnitIndex` as stale.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ParameterError, WorkspaceError
from .index import (
    UnitIndex,
    histogram_edges,
    merge_unit_data,
    new_unit_state,
    reduce_batch,
    unit_statistics,
    window_histograms,
)
from .units import DICT_SUFFIX, dictionary_base
from .workspace import Workspace, atomic_path, save_json, save_npz

DENSE_SHARE = 0.25        # a feature that fires on more than this share of windows is "dense"
DETECTOR_AUROC = 0.9      # as dissection's threshold


@dataclass
class DictionaryConfig:
    """Settings of a TopK sparse autoencoder (defaults chosen on the demo's dense1, docs/visualise.md)."""

    features: int = 48          # dictionary size F
    k: int = 6                  # active features per window
    epochs: int = 150
    batch_size: int = 256
    lr: float = 1e-3
    aux_k: int = 0              # dead latents in the AuxK loss (0: half the input width)
    aux_coef: float = 1 / 32
    max_windows: int = 200_000  # training sample (every window is encoded afterwards)
    seed: int = 0
    checkpoint_every: int = 10  # epochs

    def to_dict(self) -> dict:
        return asdict(self)


class SparseAutoencoder:
    """A trained TopK sparse autoencoder (numpy weights; encoding needs no torch).

    Attributes
    ----------
    W_enc : np.ndarray [shape=(d, F)]
    b_enc : np.ndarray [shape=(F,)]
    W_dec : np.ndarray [shape=(F, d)]   unit-norm rows
    b_dec : np.ndarray [shape=(d,)]
    mean, std : np.ndarray [shape=(d,)]   the input standardisation
    k : int
    """

    def __init__(self, W_enc, b_enc, W_dec, b_dec, mean, std, k: int):
        self.W_enc, self.b_enc = np.asarray(W_enc, np.float32), np.asarray(b_enc, np.float32)
        self.W_dec, self.b_dec = np.asarray(W_dec, np.float32), np.asarray(b_dec, np.float32)
        self.mean, self.std, self.k = np.asarray(mean, np.float32), np.asarray(std, np.float32), int(k)

    @property
    def n_features(self) -> int:
        return self.W_enc.shape[1]

    def standardise(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, np.float32) - self.mean) / self.std

    def encode(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Feature activations [shape=(n, F)] (non-negative, at most ``k`` non-zero per row) of raw layer
        activations ``X`` [shape=(n, d)]."""
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.W_enc.shape[0]:
            raise ParameterError(f"the dictionary encodes {self.W_enc.shape[0]} units per window, got an array "
                                 f"of shape {X.shape}")
        out = np.zeros((len(X), self.n_features), np.float32)
        k = min(self.k, self.n_features)
        for i in range(0, len(X), chunk):
            pre = (self.standardise(X[i:i + chunk]) - self.b_dec) @ self.W_enc + self.b_enc
            idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
            v = np.maximum(np.take_along_axis(pre, idx, 1), 0)
            np.put_along_axis(out[i:i + chunk], idx, v, 1)
        return out

    def decode(self, Z: np.ndarray) -> np.ndarray:
        """Reconstruction in standardised units [shape=(n, d)]."""
        return np.asarray(Z, np.float32) @ self.W_dec + self.b_dec

    def save(self, path) -> None:
        save_npz(path, W_enc=self.W_enc, b_enc=self.b_enc, W_dec=self.W_dec, b_dec=self.b_dec, mean=self.mean,
                 std=self.std, k=np.array(self.k))

    @classmethod
    def load(cls, path) -> SparseAutoencoder:
        with np.load(path) as z:
            return cls(z["W_enc"], z["b_enc"], z["W_dec"], z["b_dec"], z["mean"], z["std"], int(z["k"]))


# --------------------------------------------------------------------------------------------- training
def train_sae(X: np.ndarray, cfg: DictionaryConfig | None = None, checkpoint=None, progress: bool = True,
              on_epoch=None) -> SparseAutoencoder:
    """Train a TopK sparse autoencoder on ``X`` [shape=(n, d)] (raw activations; standardised per column).

    Parameters
    ----------
    checkpoint : path, optional
        Training state saved there every ``cfg.checkpoint_every`` epochs and resumed from when it exists with the
        same config and data shape; removed at the end.
    on_epoch : callable, optional
        ``on_epoch(epoch)`` after each epoch (tests use it to interrupt a run).
    """
    import torch
    from tqdm.auto import tqdm
    cfg = cfg or DictionaryConfig()
    X = np.asarray(X, np.float32)
    if X.ndim != 2 or len(X) < 2:
        raise ParameterError(f"a dictionary needs at least 2 windows of activations, got shape {X.shape}")
    if cfg.features < 1 or not 1 <= cfg.k <= cfg.features:
        raise ParameterError(f"need features >= 1 and 1 <= k <= features, got features={cfg.features}, k={cfg.k}")
    n, d = X.shape
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    Xs = torch.from_numpy((X - mean) / std)
    F, k = cfg.features, cfg.k
    aux_k = cfg.aux_k or max(1, d // 2)
    torch.manual_seed(cfg.seed)
    W_dec = torch.randn(F, d)
    W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    params = {"W_dec": W_dec, "W_enc": W_dec.T.clone(), "b_enc": torch.zeros(F), "b_dec": torch.zeros(d)}
    params = {key: torch.nn.Parameter(v) for key, v in params.items()}
    opt = torch.optim.Adam(list(params.values()), lr=cfg.lr)
    since_fired = torch.zeros(F)
    start = 0
    sig = json.dumps([cfg.to_dict(), [n, d]])
    if checkpoint is not None and os.path.exists(checkpoint):
        state = torch.load(checkpoint, weights_only=False)
        if state.get("sig") == sig:
            with torch.no_grad():
                for key, p in params.items():
                    p.copy_(state["params"][key])
            opt.load_state_dict(state["opt"])
            since_fired, start = state["since_fired"], int(state["epoch"])
            if progress:
                print(f"dictionary: resuming at epoch {start}")
    bar = tqdm(range(start, cfg.epochs), desc="dictionary", unit="epoch", disable=not progress,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        perm = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(n))
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            x = Xs[perm[i:i + cfg.batch_size]]
            pre = (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
            v, idx = pre.topk(k, dim=1)
            z = torch.zeros_like(pre).scatter(1, idx, torch.relu(v))
            err = x - (z @ params["W_dec"] + params["b_dec"])
            loss = (err ** 2).sum(1).mean()
            fired = (z > 0).any(0)
            since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + len(x))
            dead = since_fired > n                    # silent for a whole epoch
            if dead.any():                            # AuxK: the largest dead latents reconstruct the residual
                ka = min(int(dead.sum()), aux_k)
                va, ia = torch.where(dead, pre, torch.full_like(pre, -1e9)).topk(ka, dim=1)
                za = torch.zeros_like(pre).scatter(1, ia, torch.relu(va))
                loss = loss + cfg.aux_coef * ((err.detach() - za @ params["W_dec"]) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                params["W_dec"] /= params["W_dec"].norm(dim=1, keepdim=True).clamp_min(1e-8)
            total += float(loss.detach()) * len(x)
        bar.set_postfix(loss=f"{total / n:.4f}")
        if checkpoint is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
            with atomic_path(checkpoint, suffix=".pt") as tmp:
                torch.save({"sig": sig, "epoch": epoch + 1, "since_fired": since_fired, "opt": opt.state_dict(),
                            "params": {key: p.detach().clone() for key, p in params.items()}}, tmp)
        if on_epoch is not None:
            on_epoch(epoch)
    bar.close()
    p = {key: v.detach().numpy() for key, v in params.items()}
    return SparseAutoencoder(p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"], mean, std, k)


def fraction_unexplained(sae: SparseAutoencoder, X: np.ndarray, Z: np.ndarray) -> float:
    """Fraction of variance unexplained, in standardised units: sum |x - x_hat|^2 / sum |x - mean(x)|^2."""
    Xs = sae.standardise(X)
    err = ((Xs - sae.decode(Z)) ** 2).sum(dtype=np.float64)
    var = ((Xs - Xs.mean(0)) ** 2).sum(dtype=np.float64)
    return float(err / var) if var > 0 else float("nan")


def detector_share(acts: np.ndarray, concepts: np.ndarray, threshold: float = DETECTOR_AUROC) -> float | None:
    """Share of columns of ``acts`` [shape=(n, U)] with AUROC >= ``threshold`` for at least one concept
    (``concepts`` [shape=(n, K)] bool), dissection's AUROC (:func:`audiovis.visualise.dissect.auroc_matrix`)."""
    return detectors(acts, concepts, threshold)["share"]


def detectors(acts: np.ndarray, concepts: np.ndarray, threshold: float = DETECTOR_AUROC) -> dict:
    """``share`` and ``count`` of the columns that are detectors (see :func:`detector_share`) and ``concepts``,
    the number of concepts that have one (None each without concepts)."""
    from .visualise.dissect import auroc_matrix
    if concepts.shape[1] == 0 or acts.shape[1] == 0:
        return {"share": None, "count": None, "concepts": None}
    auc = np.nan_to_num(auroc_matrix(acts, concepts), nan=-1.0) >= threshold
    return {"share": float(auc.any(1).mean()), "count": int(auc.any(1).sum()), "concepts": int(auc.any(0).sum())}


def window_concepts(ws: Workspace, store) -> tuple[np.ndarray, list[str]]:
    """Dissection's ground-truth concepts per window, with enough positives and negatives."""
    from .visualise.dissect import MIN_POSITIVES, ground_truth_concepts
    Y, names = ground_truth_concepts(ws, store)
    pos = Y.sum(0)
    keep = (pos >= MIN_POSITIVES) & (len(Y) - pos >= MIN_POSITIVES)
    return Y[:, keep], [c for c, ok in zip(names, keep) if ok]


# --------------------------------------------------------------------------------------------- the stage
def dictionary_dir(ws: Workspace, layer: str):
    return ws.index_dir / UnitIndex.DICT_DIR / layer


def layer_activations(ix: UnitIndex, layer: str, rows=slice(None)) -> np.ndarray:
    """The index's per-window activations of one model layer [shape=(n, units)] float32."""
    lo = ix.offset[layer]
    return np.asarray(ix.acts[rows, lo:lo + ix.layers[layer]], dtype=np.float32)


def _check_layer(ix: UnitIndex, layer: str) -> None:
    if layer.endswith(DICT_SUFFIX) or layer not in ix.model_layers:
        raise ParameterError(f"no layer {layer!r} to learn a dictionary of; layers are "
                             f"{', '.join(ix.model_layers)}")


def write_feature_index(ws: Workspace, ix: UnitIndex, layer: str, Z_all, k: int) -> dict:
    """The feature index of ``layer``'s dictionary from its activations ``Z_all`` [shape=(n_windows, F)]
    (array or memmap): top/bottom-k per feature through :func:`audiovis.index.reduce_batch` (one song's
    windows per batch group, peak at the window centre: a feature has no time axis), statistics, histograms."""
    F = Z_all.shape[1]
    store = ix.store
    nW = len(store.windows)
    st = new_unit_state(F, k)
    centre = store.cfg.window_frames * store.cfg.hop_length / store.cfg.sr / 2
    wsong = store.windows[:, 0]
    bounds = np.searchsorted(wsong, np.append(np.arange(0, store.n_songs, 64), store.n_songs))   # 64 songs
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            A = np.asarray(Z_all[lo:hi], np.float32)
            reduce_batch(st, A, np.full_like(A, centre), np.arange(lo, hi), wsong[lo:hi], k)
    hist = window_histograms(Z_all, *histogram_edges(st["vmin"], st["vmax"]))
    d = dictionary_dir(ws, layer)
    save_npz(d / "units.npz", top_v=st["top_v"], top_w=st["top_w"], top_p=st["top_p"], bot_v=st["bot_v"],
             bot_w=st["bot_w"], bot_p=st["bot_p"], **unit_statistics(st, nW), vmin=st["vmin"], vmax=st["vmax"],
             hist=hist)
    meta = {"layers": {layer + DICT_SUFFIX: F}, "k": k, "n_windows": nW, "base": layer,
            "index_key": UnitIndex.index_key(ws)}
    save_json(d / "layers.json", meta)
    return meta


def train_dictionary(workspace, layer: str, cfg: DictionaryConfig | None = None, force: bool = False,
                     progress: bool = True) -> dict:
    """Train the dictionary of ``layer`` and write its feature index and report (resumable; see the module).

    Parameters
    ----------
    workspace : str, Path or Workspace   needs the ``index`` stage
    layer : str   a model layer of the index (``"dense1"``; conv layers: their max over each window)
    cfg : DictionaryConfig, optional
    force : bool   retrain even when the dictionary on disk has this config and index

    Returns
    -------
    dict
        The report (``report.json``): name, features, inputs, windows, fvu, dead, dense, detector_share,
        detectors and concepts_detected for the features and (``unit_...``) for the layer's units (None without
        ground truth), config, seconds.

    Raises
    ------
    ParameterError
        ``layer`` is not a model layer of the index, or bad settings.

    Examples
    --------
    >>> rep = train_dictionary("workspaces/mine", "dense1")       # then UnitIndex(ws).top("dense1.dict:3")
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("index")
    cfg = cfg or DictionaryConfig()
    ix = UnitIndex(ws)
    _check_layer(ix, layer)
    d = dictionary_dir(ws, layer)
    source = UnitIndex.index_key(ws)
    rp = d / "report.json"
    if rp.exists() and not force and layer + DICT_SUFFIX in ix.dictionaries:   # loaded: not stale
        rep = json.loads(rp.read_text())
        if rep.get("config") == cfg.to_dict() and rep.get("source") == source:
            return rep
    t0 = time.perf_counter()
    X = layer_activations(ix, layer)
    nW = len(X)
    sample = X
    if nW > cfg.max_windows:
        sample = X[np.sort(np.random.default_rng(cfg.seed).choice(nW, cfg.max_windows, replace=False))]
    d.mkdir(parents=True, exist_ok=True)
    sae = train_sae(sample, cfg, checkpoint=d / "train.partial.pt", progress=progress)
    t_train = time.perf_counter() - t0
    Z = sae.encode(X)
    with atomic_path(d / "acts.npy", suffix=".npy") as tmp:
        np.save(tmp, Z.astype(np.float16))
    sae.save(d / "sae.npz")
    write_feature_index(ws, ix, layer, Z, ix.k)
    fire = (Z > 0).mean(0)
    Y, _ = window_concepts(ws, ix.store)
    rep = {"layer": layer, "name": layer + DICT_SUFFIX, "config": cfg.to_dict(), "source": source,
           "features": sae.n_features, "inputs": X.shape[1], "windows": nW,
           "silent_units": int((X.max(0) <= 0).sum()) if nW else 0,
           "fvu": round(fraction_unexplained(sae, X, Z), 4), "dead": int((fire == 0).sum()),
           "dense": int((fire > DENSE_SHARE).sum()), "dense_share_threshold": DENSE_SHARE,
           "mean_firing_rate": round(float(fire.mean()), 4), "detector_threshold": DETECTOR_AUROC,
           "concepts": int(Y.shape[1]), **{f"{pre}{key}": v for pre, A in (("", Z), ("unit_", X))
                                           for key, v in _detector_keys(detectors(A, Y))},
           "train_seconds": round(t_train, 2), "seconds": round(time.perf_counter() - t0, 2)}
    save_json(rp, rep)
    (d / "train.partial.pt").unlink(missing_ok=True)
    return rep


def _detector_keys(d: dict):
    return (("detector_share", d["share"]), ("detectors", d["count"]), ("concepts_detected", d["concepts"]))


def dictionary_summary(rep: dict) -> str:
    """One line per number of a :func:`train_dictionary` report (what the CLI prints)."""
    def pct(v):
        return "n/a (no ground truth)" if v is None else f"{100 * v:.1f}%"
    return (f"{rep['name']}: {rep['features']} features (k={rep['config']['k']}) over {rep['inputs']} units "
            f"({rep['silent_units']} silent), {rep['windows']} windows, {rep['seconds']:.1f} s\n"
            f"  fraction of variance unexplained: {rep['fvu']:.4f}\n"
            f"  dead features (never fire): {rep['dead']}; dense (fire on > {100 * DENSE_SHARE:.0f}% of "
            f"windows): {rep['dense']}\n"
            f"  detectors (AUROC >= {rep['detector_threshold']} for one of {rep['concepts']} concepts): features "
            f"{pct(rep['detector_share'])} ({rep['detectors']}, for {rep['concepts_detected']} concepts), the "
            f"layer's units {pct(rep['unit_detector_share'])} ({rep['unit_detectors']}, for "
            f"{rep['unit_concepts_detected']} concepts)")


def update_dictionaries(workspace) -> list[str]:
    """Encode windows added to the index since each dictionary was built (``audiovis add``) with its saved
    weights and merge them into its feature index (:func:`audiovis.index.merge_unit_data`). Returns the
    dictionary layers updated."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    root = ws.index_dir / UnitIndex.DICT_DIR
    if not root.is_dir():
        return []
    ix = UnitIndex(ws)
    nW = len(ix.store.windows)
    done = []
    for d in sorted(p for p in root.iterdir() if (p / "layers.json").exists() and (p / "sae.npz").exists()):
        meta = json.loads((d / "layers.json").read_text())
        n_old = int(meta["n_windows"])
        base = meta["base"]
        if n_old >= nW or base not in ix.model_layers or meta.get("index_key") != UnitIndex.index_key(ws):
            continue                                  # up to date, or stale (UnitIndex says so)
        old = np.load(d / "acts.npy", mmap_mode="r")
        if len(old) < n_old:
            raise WorkspaceError(f"dictionary {d} is damaged ({len(old)} rows for {n_old} windows): run "
                                 f"`audiovis dictionary -w {ws.path} --layer {base} --force`")
        Z = SparseAutoencoder.load(d / "sae.npz").encode(layer_activations(ix, base, slice(n_old, nW)))
        with atomic_path(d / "acts.npy", suffix=".npy") as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(nW, Z.shape[1]))
            mm[:n_old] = old[:n_old]
            mm[n_old:] = Z.astype(np.float16)
            mm.flush()
            del mm
        del old
        with np.load(d / "units.npz") as z:
            data = {key: z[key] for key in z.files}
        centre = ix.store.cfg.window_frames * ix.store.cfg.hop_length / ix.store.cfg.sr / 2
        widx = np.arange(n_old, nW)
        save_npz(d / "units.npz", **merge_unit_data(data, n_old, Z, np.full_like(Z, centre), widx,
                                                    ix.store.windows[widx, 0], int(meta["k"])))
        meta["n_windows"] = nW
        save_json(d / "layers.json", meta)
        done.append(base + DICT_SUFFIX)
    return done


# --------------------------------------------------------------------------------------------- the page
def feature_curves(ex, unit, spans, dense_hop_frames: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """A dictionary feature's activation over time in each (song_idx, start_s, end_s) span, for
    :meth:`audiovis.explore.Explorer.activation_curves`: 3 s windows centred every ``dense_hop_frames``
    frames, their base-layer activations (:func:`audiovis.index.reduce_windows`) encoded by the dictionary.

    Returns
    -------
    list of (times [shape=(m,)] song seconds, values [shape=(m,)])
    """
    import torch

    from .activations import Recorder
    from .index import reduce_windows
    base = dictionary_base(unit.layer)
    W, hop_s = ex.cfg.window_frames, ex.hop_s
    if getattr(ex, "model", None) is None:         # a model adapter: the index's own windows, one value each
        c = ex.index.column(unit)
        out = []
        for song_idx, start_s, end_s in spans:
            w = ex.store.song_windows(song_idx)
            t = ex.store.windows[w, 1] * hop_s + W * hop_s / 2
            keep = (t >= start_s - W * hop_s / 2) & (t <= end_s + W * hop_s / 2)
            out.append((t[keep], np.asarray(ex.index.acts[w[keep], c:c + 1], np.float32)[:, 0]))
        return out
    sae = _cached_sae(str(dictionary_dir(ex.ws, base) / "sae.npz"))
    out = []
    for song_idx, start_s, end_s in spans:
        n = ex.store.n_frames(song_idx)
        if n < W:
            out.append((np.zeros(0), np.zeros(0)))
            continue
        song = ex.store.song(song_idx)
        centres = np.arange(start_s / hop_s, end_s / hop_s + 1e-6, dense_hop_frames)
        starts = np.clip(np.round(centres - W / 2).astype(np.int64), 0, n - W)
        x = torch.from_numpy(np.stack([np.asarray(song[s:s + W], dtype=np.float32).T for s in starts]))
        with torch.no_grad():
            acts, _ = Recorder(ex.model, [base]).record(x)
            A, _ = reduce_windows(ex.model, acts, {base: ex.index.layers[base]}, hop_s, W)
        out.append((centres * hop_s, sae.encode(A)[:, unit.index]))
    return out


_SAE_CACHE: dict[tuple[str, int], SparseAutoencoder] = {}


def _cached_sae(path: str) -> SparseAutoencoder:
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _SAE_CACHE:
        _SAE_CACHE.clear()
        _SAE_CACHE[key] = SparseAutoencoder.load(path)
    return _SAE_CACHE[key]
