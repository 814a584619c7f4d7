"""What a frozen pretrained network computes for every window of a workspace, computed once and cached.

``features/<name>.npy`` [shape=(n_windows, d), float32] holds one row per window of the feature store (in its
order), written block by block into ``features/<name>.partial.npy`` (a killed run resumes at the first block
not yet written) and renamed into place when complete; ``features/<name>.json`` records the feature settings and
the window count it was computed for, so a cache of another featurization is recomputed, not reused.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from ..features import FeatureStore
from ..workspace import Workspace, save_json

BLOCK = 256                                   # windows per block (and per saved step)


def _key(store: FeatureStore, extra: dict) -> dict:
    return {"feature": store.cfg.to_dict(), "n_windows": int(len(store.windows)),
            "n_frames": int(store.offsets[-1]), **extra}


def cached_windows(ws: Workspace, store: FeatureStore, name: str, fn, dim: int, extra: dict | None = None,
                   progress: bool = True, batch_size: int = 64) -> np.ndarray:
    """``fn(x)`` for every window of the store, cached in the workspace.

    Parameters
    ----------
    fn : callable
        (batch, n_mels, frames) float32 dB log-mel tensor -> (batch, dim) tensor; run under ``torch.no_grad``.
    extra : dict
        What else the rows depend on (the network's name), stored with the cache and compared.

    Returns
    -------
    np.ndarray [shape=(n_windows, dim), float32], memory-mapped.
    """
    d = ws.features_dir
    final, partial, meta = d / f"{name}.npy", d / f"{name}.partial.npy", d / f"{name}.json"
    key = _key(store, {**(extra or {}), "dim": int(dim)})
    try:
        old = json.loads(meta.read_text())
    except (OSError, ValueError):
        old = None
    if old is not None and old.get("key") == key and old.get("complete") and final.exists():
        return np.load(final, mmap_mode="r")
    n = len(store.windows)
    if not (old is not None and old.get("key") == key and partial.exists()):
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim)).flush()
        old = {"key": key, "done": 0, "complete": False}
        save_json(meta, old)
    out = np.load(partial, mmap_mode="r+")
    start = int(old.get("done", 0))
    bar = tqdm(total=n, initial=start, desc=f"{name}: windows", unit="win", disable=not progress)
    with torch.no_grad():
        for lo in range(start, n, BLOCK):
            hi = min(lo + BLOCK, n)
            for b in range(lo, hi, batch_size):
                e = min(b + batch_size, hi)
                out[b:e] = fn(torch.from_numpy(store.batch(np.arange(b, e)))).float().numpy()
            out.flush()
            save_json(meta, {"key": key, "done": hi, "complete": False})
            bar.update(hi - lo)
    bar.close()
    del out
    os.replace(partial, final)
    save_json(meta, {"key": key, "done": n, "complete": True})
    return np.load(final, mmap_mode="r")


def check_musicnn_features(fcfg, what: str = "musicnn") -> None:
    """Raise a :class:`~audiovis.errors.ParameterError` unless the features are at musicnn's settings."""
    from ..errors import ParameterError
    from .musicnn import HOP_LENGTH, N_FFT, N_MELS, SR
    want = {"sr": SR, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS,
            "fmin": 0.0, "fmax": None}
    have = {k: getattr(fcfg, k) for k in want}
    if have != want:
        raise ParameterError(f"{what} needs the workspace's features at musicnn's settings {want}, but they were "
                             f"computed with {have}: rerun `audiovis featurize -w WS --force` with the default "
                             f"front end, or train a from-scratch preset (--preset auto)")


POOLED = 1506
TRUNK_LAYERS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "penultimate", "tags")


def trunk_rows(net, x_db: torch.Tensor, hop_s: float) -> torch.Tensor:
    """One row per window of what a frozen musicnn gives: its pooled features (1506), then each unit's window
    activation and peak time (seconds from the window start) for :data:`TRUNK_LAYERS`, through the index's one
    reduction (:func:`audiovis.activations.reduce_windows`) -> [shape=(batch, 1506 + 2 * units)]."""
    from ..activations import reduce_windows
    from .musicnn import from_db
    f = net.features(from_db(x_db))
    acts = {k: f[k] for k in TRUNK_LAYERS}
    A, P = reduce_windows(None, acts, {k: acts[k].shape[1] for k in TRUNK_LAYERS}, hop_s, x_db.shape[-1])
    return torch.cat([f["pool"], torch.from_numpy(A), torch.from_numpy(P)], dim=1)


def trunk_cache(ws: Workspace, store: FeatureStore, dataset: str = "msd", progress: bool = True) -> np.ndarray:
    """:func:`trunk_rows` of the wheel's ``dataset`` tagger for every window of the store, computed once and cached
    [shape=(n_windows, 1506 + 2 * units)]: the frozen front end's input to a head (training, evaluation's
    pretrained baseline) and its units' index entries (the index of a frozen model runs only the head)."""
    from .musicnn import load_musicnn
    check_musicnn_features(store.cfg)
    net = load_musicnn(dataset)
    hop_s = store.cfg.hop_length / store.cfg.sr
    with torch.no_grad():
        sizes = {k: v.shape[1] for k, v in net.features(torch.zeros(1, store.cfg.n_mels, 32)).items()}
    units = sum(sizes[k] for k in TRUNK_LAYERS)
    return cached_windows(ws, store, f"musicnn_{dataset}", lambda x: trunk_rows(net, x, hop_s),
                          POOLED + 2 * units, {"net": f"musicnn:{dataset}", "rows": "pool+A+P"}, progress)


def pooled_features(ws: Workspace, store: FeatureStore, dataset: str = "msd", progress: bool = True) -> np.ndarray:
    """The pooled features (max and mean over time, 1506) of the wheel's ``dataset`` musicnn tagger for every
    window [shape=(n_windows, 1506)] (a view of :func:`trunk_cache`)."""
    return trunk_cache(ws, store, dataset, progress)[:, :POOLED]


class FrozenWindows:
    """The index's view of a content model on a frozen pretrained front end: the front end's units come from the
    cache written when the head was trained (:func:`audiovis.models.frozen.trunk_cache`: the same reduction, run
    once), and only the head runs here."""

    def __init__(self, ws: Workspace, store: FeatureStore, model, layers: dict[str, int], progress: bool = True):
        self.store, self.model = store, model
        self.rows = trunk_cache(ws, store, model.dataset, progress)
        self.n_trunk = sum(layers[k] for k in TRUNK_LAYERS)
        if list(layers)[:len(TRUNK_LAYERS)] != list(TRUNK_LAYERS) or \
                self.rows.shape[1] != POOLED + 2 * self.n_trunk:
            from ..errors import ParameterError
            raise ParameterError("the frozen front end's cache does not fit the model's layers")
        self.pooled = POOLED
        self.centre = store.cfg.window_frames * store.cfg.hop_length / store.cfg.sr / 2

    @torch.no_grad()
    def activations(self, widx: np.ndarray):
        from .regressor import window_stats
        r = np.asarray(self.rows[widx], dtype=np.float32)
        p, A_t, P_t = np.split(r, [self.pooled, self.pooled + self.n_trunk], axis=1)
        feats = torch.cat([torch.from_numpy(p), window_stats(torch.from_numpy(self.store.batch(widx)))], dim=1)
        hidden, out = (t.numpy() for t in self.model.head(feats, hidden=True))
        A = np.concatenate([A_t, hidden, out], axis=1)
        P = np.concatenate([P_t, np.full((len(widx), hidden.shape[1] + out.shape[1]), self.centre, np.float32)], 1)
        return A, P, np.ones(len(widx), bool)


def mean_per_song(store: FeatureStore, rows: np.ndarray, songs: np.ndarray | None = None,
                  windows: np.ndarray | None = None) -> np.ndarray:
    """Per-song mean of per-window rows [shape=(len(songs), d)] (zeros for a song without windows): ``rows`` holds
    one row per window of the store, or per window of ``windows`` (indices into the store's windows).
    (:func:`audiovis.activations.song_means` runs a model's layer itself; this averages rows already computed.)"""
    songs = np.arange(store.n_songs) if songs is None else np.asarray(songs)
    song_of = store.windows[:, 0] if windows is None else store.windows[np.asarray(windows), 0]
    E = np.zeros((store.n_songs, rows.shape[1]))
    np.add.at(E, song_of, np.asarray(rows, dtype=np.float64))
    counts = np.bincount(song_of, minlength=store.n_songs)
    return (E / np.maximum(counts, 1)[:, None])[songs]


def uses_trunk_cache(model) -> bool:
    """Whether a content model's pretrained layers are frozen and its units' index entries come from
    :func:`trunk_cache` (:class:`FrozenWindows`)."""
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "arch", "") == "musicnn" and cfg.frozen and len(model.dense_names) == 1
