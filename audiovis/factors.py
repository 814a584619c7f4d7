"""Weighted matrix factorisation of play counts with implicit's ALS."""
from __future__ import annotations

import os
import warnings

import numpy as np
import scipy.sparse as sp

from .config import FactorConfig
from .errors import DataError
from .workspace import Workspace, save_npz

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit is ~4x faster with single-threaded BLAS


class WMF:
    """Implicit-feedback WMF, estimator-style (hyperparameters in ``__init__``, data in ``fit``).

    Parameters
    ----------
    cfg : FactorConfig

    Attributes
    ----------
    user_factors : np.ndarray [shape=(n_users, factors)]
    item_factors : np.ndarray [shape=(n_items, factors)]
    """

    def __init__(self, cfg: FactorConfig | None = None):
        self.cfg = cfg if cfg is not None else FactorConfig()

    def confidence(self, R: sp.csr_matrix) -> sp.csr_matrix:
        """c_ui = 1 + alpha * log(1 + r_ui / eps) on observed entries [shape=(n_users, n_items)]."""
        C = R.tocsr(copy=True).astype(np.float32)
        C.data = (1.0 + self.cfg.alpha * np.log1p(C.data / self.cfg.eps)).astype(np.float32)
        return C

    def fit(self, R: sp.csr_matrix, progress: bool = False) -> WMF:
        from implicit.cpu.als import AlternatingLeastSquares
        if R.nnz == 0:
            raise DataError("cannot factorise an empty play matrix")
        model = AlternatingLeastSquares(factors=self.cfg.factors, regularization=self.cfg.regularization,
                                        alpha=1.0, iterations=self.cfg.iterations,
                                        random_state=self.cfg.random_state, calculate_training_loss=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(self.confidence(R), show_progress=progress)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        if self.cfg.normalize:
            self.item_factors = normalize_rows(self.item_factors)
        return self


def normalize_rows(X: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.maximum(n, 1e-12)).astype(np.float32)


def assign_splits(n_plays: np.ndarray, cfg: FactorConfig) -> np.ndarray:
    """Split songs by song: 'test' (cold start: plays kept out of the fit), 'valid', 'train'; 'none' without plays."""
    rng = np.random.default_rng(cfg.random_state)
    split = np.full(len(n_plays), "none", dtype=object)
    played = np.flatnonzero(n_plays > 0)
    perm = rng.permutation(played)
    n_test = int(round(cfg.test_fraction * len(played)))
    n_valid = int(round(cfg.valid_fraction * len(played)))
    split[perm[:n_test]] = "test"
    split[perm[n_test:n_test + n_valid]] = "valid"
    split[perm[n_test + n_valid:]] = "train"
    return split


OUTPUTS = ("factors.npz",)              # what the stage writes, in the workspace (its done-marker records them)


def factorize(workspace: str | os.PathLike | Workspace, cfg: FactorConfig | None = None, force: bool = False,
              progress: bool = True) -> dict:
    """Fit WMF twice: on train and validation songs only (the content model's targets and the users' factors for
    the cold-start evaluation), and on all plays (the evaluation's upper bound). Writes ``factors.npz``."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("ingest")
    cfg = cfg or FactorConfig()
    done = None if force else ws.finished("factorize", OUTPUTS, say=progress, config=cfg.to_dict())
    if done:
        return done["summary"]
    R = ws.play_matrix()
    n_plays = np.asarray((R > 0).sum(axis=0)).ravel()
    split = assign_splits(n_plays, cfg)
    if (split == "train").sum() < 2:
        raise DataError(f"only {(split == 'train').sum()} songs with plays are left for training; "
                        f"add plays or lower test_fraction ({cfg.test_fraction})")
    keep = np.isin(split, ["train", "valid"]).astype(np.float32)
    R_train = sp.csr_matrix(R.multiply(keep[None, :]))
    R_train.eliminate_zeros()
    if progress:
        print(f"factorize: {R.shape[0]} users x {R.shape[1]} songs, {R.nnz} pairs; "
              f"{int(keep.sum())} songs in the fit, {(split == 'test').sum()} held out")
    fit = WMF(cfg).fit(R_train, progress=progress)
    full = WMF(cfg).fit(R, progress=progress)
    with ws.db:
        ws.db.executemany("UPDATE songs SET split=? WHERE idx=?", [(s, i) for i, s in enumerate(split)])
    save_npz(ws.factors_path, user_factors=fit.user_factors, song_factors=fit.item_factors,
             user_factors_full=full.user_factors, song_factors_full=full.item_factors,
             split=split.astype(str))
    summary = {"users": R.shape[0], "songs": R.shape[1], "pairs": int(R.nnz),
               "train": int((split == "train").sum()), "valid": int((split == "valid").sum()),
               "test": int((split == "test").sum()), "unplayed": int((split == "none").sum()),
               "factors": cfg.factors}
    ws.clear_done("train", "evaluate", "index")
    ws.mark_done("factorize", {"config": cfg.to_dict(), "summary": summary}, outputs=OUTPUTS)
    return summary


def load_factors(ws: Workspace) -> dict[str, np.ndarray]:
    ws.require("factorize")
    with np.load(ws.factors_path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
