"""Similarity search over song factor vectors: exact for small catalogues, approximate (faiss IVF) for large ones.

Similarity is **cosine** between factor vectors. WMF factor norms mostly encode popularity and confidence (how
many plays a song has), not what it sounds like, and a cold-start song has no plays; cosine compares the
direction in taste space only, so a new song is not pulled towards the most popular songs. (For "who will play
it", where popularity does matter, :mod:`audiovis.coldstart` ranks users by the dot product ``x_u . y'``.)

Below ``threshold`` vectors (default 50,000) search is exact: one matrix-vector product in numpy. Above it, when
``faiss`` is installed (``pip install audiovis[ann]``), an approximate index over the unit vectors (inner product)
is built: HNSW by default (``IndexHNSWFlat``, M=32; robust on high-intrinsic-dimension data such as random
vectors, and songs can be appended without retraining), or an inverted file (``IndexIVFFlat``, about ``2 sqrt(n)``
lists; builds faster, good on clustered data) with ``method='ivf'``. The search-time knob (HNSW ``efSearch``,
IVF ``nprobe``) is calibrated against exact search on a sample of near-catalogue queries: the smallest power of
two whose recall@10 reaches ``target_recall`` (default 0.97). Without faiss, large catalogues fall back to exact
search (correct, slower). Rows that are NaN (songs without a window) are never returned.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .errors import ParameterError
from .workspace import atomic_path

ANN_THRESHOLD = 50_000
TARGET_RECALL = 0.97


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _unit_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-normalise rows; return (normalised float32 rows, valid mask). NaN or zero rows become zeros."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ParameterError(f"vectors must have shape (n, d), got shape {X.shape}")
    valid = np.all(np.isfinite(X), axis=1)
    Xn = np.where(valid[:, None], X, 0).astype(np.float32)
    norm = np.linalg.norm(Xn, axis=1, keepdims=True)
    valid &= norm[:, 0] > 0
    Xn = np.where(valid[:, None], Xn / np.maximum(norm, 1e-12), 0).astype(np.float32)
    return np.ascontiguousarray(Xn), valid


def exact_search(Xn: np.ndarray, valid: np.ndarray, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product of unit rows (ties by row index).

    Parameters
    ----------
    Xn : np.ndarray [shape=(n, d)]  unit rows (zeros where not ``valid``)
    Q : np.ndarray [shape=(m, d)]   unit queries

    Returns
    -------
    idx : np.ndarray [shape=(m, k'), int64], scores : np.ndarray [shape=(m, k'), float32]; ``k' = min(k, valid)``
    """
    S = Q @ Xn.T                                                   # (m, n)
    S[:, ~valid] = -np.inf
    k = int(min(k, valid.sum()))
    if k <= 0:
        return np.zeros((len(Q), 0), np.int64), np.zeros((len(Q), 0), np.float32)
    part = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < S.shape[1] else np.tile(np.arange(S.shape[1]),
                                                                                   (len(Q), 1))
    ps = np.take_along_axis(S, part, 1)
    order = np.lexsort((part, -ps), axis=1)
    idx = np.take_along_axis(part, order, 1)
    return idx.astype(np.int64), np.take_along_axis(ps, order, 1).astype(np.float32)


class VectorIndex:
    """Cosine similarity search over the rows of ``vectors``.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, d)]
        Catalogue vectors; row ``i`` is catalogue item ``i``. NaN rows are kept as placeholders, never returned.
    method : {'auto', 'exact', 'hnsw', 'ivf'}
        'auto' = exact below ``threshold`` rows or without faiss, 'hnsw' above.
    threshold : int
    target_recall : float
        Recall@10 against exact search that the IVF ``nprobe`` is calibrated to reach.
    seed : int

    Attributes
    ----------
    method : str   'exact', 'hnsw' or 'ivf' (what is actually used)
    nprobe : int   the calibrated search knob: lists probed per query (ivf) or efSearch (hnsw)
    build_s : float   seconds to build (train, add, calibrate)
    calibrated_recall : float   recall@10 measured during calibration
    """

    def __init__(self, vectors: np.ndarray, method: str = "auto", threshold: int = ANN_THRESHOLD,
                 target_recall: float = TARGET_RECALL, seed: int = 0, n_threads: int | None = None):
        if method not in ("auto", "exact", "hnsw", "ivf"):
            raise ParameterError(f"method {method!r} is not one of 'auto', 'exact', 'hnsw', 'ivf'")
        t0 = time.perf_counter()
        self.Xn, self.valid = _unit_rows(vectors)
        self.d = self.Xn.shape[1]
        self.target_recall = target_recall
        self.seed = seed
        self.nprobe = 0
        self.calibrated_recall = 1.0
        self._ivf = None
        if method in ("ivf", "hnsw") and not have_faiss():
            raise ParameterError(f"method {method!r} needs faiss: pip install 'audiovis[ann]' (faiss-cpu)")
        if method == "auto":
            method = "hnsw" if len(self.Xn) >= threshold and have_faiss() else "exact"
        self.method = method
        self._ids = None
        if method == "ivf":
            self._build_ivf(n_threads)
        elif method == "hnsw":
            self._build_hnsw(n_threads)
        self.build_s = time.perf_counter() - t0

    def __len__(self) -> int:
        return len(self.Xn)

    # ----------------------------------------------------------------- ivf
    def _build_ivf(self, n_threads):
        import faiss
        if n_threads:
            faiss.omp_set_num_threads(n_threads)
        ids = np.flatnonzero(self.valid)
        n = len(ids)
        if n < 64:
            raise ParameterError(f"an IVF index needs at least 64 valid vectors, got {n}")
        nlist = int(np.clip(2 * np.sqrt(n), 8, max(8, n // 39)))
        quant = faiss.IndexFlatIP(self.d)
        ivf = faiss.IndexIVFFlat(quant, self.d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(self.seed)
        train = ids if n <= 64 * nlist else rng.choice(ids, 64 * nlist, replace=False)
        ivf.cp.seed = self.seed
        ivf.train(self.Xn[np.sort(train)])
        ivf.add_with_ids(self.Xn[ids], ids.astype(np.int64))
        self._ivf = ivf
        self._quant = quant                                         # keep the quantizer alive
        self.calibrate()

    def _build_hnsw(self, n_threads, M: int = 32, ef_construction: int = 64):
        import faiss
        if n_threads:
            faiss.omp_set_num_threads(n_threads)
        ids = np.flatnonzero(self.valid)
        h = faiss.IndexHNSWFlat(self.d, M, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = ef_construction
        h.add(self.Xn[ids])
        self._ivf, self._ids = h, ids.astype(np.int64)     # HNSW positions -> catalogue rows
        self.calibrate()

    def _set_knob(self, v: int) -> None:
        if self.method == "hnsw":
            self._ivf.hnsw.efSearch = int(v)
        else:
            self._ivf.nprobe = int(v)

    def _raw_search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._set_knob(self.nprobe)
        sc, idx = self._ivf.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        if self._ids is not None:
            idx = np.where(idx >= 0, self._ids[np.maximum(idx, 0)], -1)
        return idx, sc

    def calibrate(self, n_queries: int = 200, k: int = 10) -> float:
        """Smallest power-of-two ``nprobe`` (IVF) or ``efSearch`` (HNSW, from 16) whose recall@k against exact
        search reaches ``target_recall``.

        Queries are catalogue vectors plus Gaussian noise (sigma 0.1 per unit vector), i.e. near-catalogue points.
        """
        rng = np.random.default_rng(self.seed + 1)
        ids = np.flatnonzero(self.valid)
        Q = self.Xn[rng.choice(ids, min(n_queries, len(ids)), replace=False)]
        Q = Q + rng.normal(0, 0.1 / np.sqrt(self.d), Q.shape).astype(np.float32)
        Q /= np.linalg.norm(Q, axis=1, keepdims=True)
        truth, _ = exact_search(self.Xn, self.valid, Q, k)
        top = self._ivf.nlist if self.method == "ivf" else 4096
        nprobe, rec = (1 if self.method == "ivf" else 16), 0.0
        while True:
            self.nprobe = nprobe
            I, _ = self._raw_search(Q, k)
            rec = recall_at_k(I, truth)
            if rec >= self.target_recall or nprobe >= top:
                break
            nprobe = min(nprobe * 2, top)
        self.nprobe, self.calibrated_recall = nprobe, rec
        return rec

    # ----------------------------------------------------------------- api
    def add(self, vectors: np.ndarray) -> None:
        """Append rows (ids continue from ``len(self)``); the IVF lists are kept (no re-training)."""
        Xn, valid = _unit_rows(vectors)
        if Xn.shape[1] != self.d:
            raise ParameterError(f"vectors have {Xn.shape[1]} dimensions, the index has {self.d}")
        start = len(self.Xn)
        self.Xn = np.concatenate([self.Xn, Xn])
        self.valid = np.concatenate([self.valid, valid])
        if self._ivf is not None and valid.any():
            ids = np.flatnonzero(valid)
            if self.method == "hnsw":
                self._ivf.add(Xn[ids])
                self._ids = np.concatenate([self._ids, (ids + start).astype(np.int64)])
            else:
                self._ivf.add_with_ids(Xn[ids], (ids + start).astype(np.int64))

    def search(self, queries: np.ndarray, k: int = 10, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k catalogue rows by cosine similarity.

        Parameters
        ----------
        queries : np.ndarray [shape=(d,) or (m, d)]
        k : int
        exclude : iterable of int, optional
            Catalogue rows never to return (e.g. the query song itself).

        Returns
        -------
        idx : np.ndarray [shape=(m, k'), int64]   best first (``k' <= k``; padded with -1 when fewer exist)
        scores : np.ndarray [shape=(m, k'), float32]   cosine similarities (NaN in padding)
        """
        if k < 1:
            raise ParameterError(f"k must be at least 1, got {k}")
        Q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if Q.shape[1] != self.d:
            raise ParameterError(f"queries have {Q.shape[1]} dimensions, the index has {self.d}")
        if not np.all(np.isfinite(Q)):
            raise ParameterError("queries contain NaN or infinity")
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        ex = np.unique(np.asarray(list(exclude) if exclude is not None else [], dtype=np.int64))
        kk = k + len(ex)
        if self._ivf is None:
            idx, sc = exact_search(self.Xn, self.valid, Q, kk)
        else:
            idx, sc = self._raw_search(Q, kk)
        out_i = np.full((len(Q), k), -1, np.int64)
        out_s = np.full((len(Q), k), np.nan, np.float32)
        for r in range(len(Q)):
            keep = (idx[r] >= 0) & ~np.isin(idx[r], ex)
            i, s = idx[r][keep][:k], sc[r][keep][:k]
            out_i[r, :len(i)], out_s[r, :len(i)] = i, s
        return out_i, out_s

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the faiss index atomically (nothing to save for exact search)."""
        if self._ivf is None:
            return
        import faiss
        with atomic_path(path, suffix=".faiss") as tmp:
            faiss.write_index(self._ivf, str(tmp))

    @classmethod
    def load(cls, path: str | os.PathLike, vectors: np.ndarray, nprobe: int,
             target_recall: float = TARGET_RECALL) -> VectorIndex:
        """Reopen a saved faiss index (HNSW or IVF) over ``vectors``; valid rows beyond the saved ones (songs
        added since) are appended. The saved index must hold the first valid rows, in order."""
        import faiss
        self = cls.__new__(cls)
        t0 = time.perf_counter()
        self._ivf = faiss.read_index(str(path))
        Xn, valid = _unit_rows(vectors)
        self.d, self.target_recall, self.seed = Xn.shape[1], target_recall, 0
        is_hnsw = isinstance(self._ivf, faiss.IndexHNSW)
        self.method, self.nprobe, self.calibrated_recall = ("hnsw" if is_hnsw else "ivf"), nprobe, float("nan")
        self._ids = np.flatnonzero(valid)[:self._ivf.ntotal].astype(np.int64) if is_hnsw else None
        n_saved = self._ivf.ntotal
        n_valid = int(valid.sum())
        if n_saved > n_valid:
            raise ParameterError(f"saved index '{path}' has {n_saved} vectors, more than the {n_valid} given")
        # rows valid in `vectors` but missing from the saved file are appended (ids are row numbers)
        self.Xn, self.valid = Xn, valid
        if n_saved < n_valid:
            ids = np.flatnonzero(valid)[n_saved:]
            if is_hnsw:
                self._ivf.add(Xn[ids])
                self._ids = np.concatenate([self._ids, ids.astype(np.int64)])
            else:
                self._ivf.add_with_ids(Xn[ids], ids.astype(np.int64))
        self.build_s = time.perf_counter() - t0
        return self


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (rows of ids; -1 ignored)."""
    r = []
    for f, t in zip(found, truth):
        t = {int(x) for x in t if x >= 0}
        if t:
            r.append(len(t & {int(x) for x in f if x >= 0}) / len(t))
    return float(np.mean(r)) if r else 1.0
