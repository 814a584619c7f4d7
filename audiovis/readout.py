"""Ridge readouts: linear maps from one row of features per song to its latent factors, the L2 penalty chosen on
the validation songs. One path for the evaluation's baselines and oracle (:mod:`audiovis.evaluate`) and for the
song-level readout of the trained CNN (:func:`refit_output`, ``TrainConfig.song_readout``)."""
from __future__ import annotations

import numpy as np
import torch

LAMBDAS = (1e-3, 1e-2, 1e-1, 1, 10, 100, 1000)


def ridge_fit(Xtr: np.ndarray, Ytr: np.ndarray, Xva: np.ndarray, Yva: np.ndarray,
              lambdas=LAMBDAS) -> tuple[np.ndarray, np.ndarray, float]:
    """Linear regression with an L2 penalty (not on the intercept) chosen on the validation rows; inputs
    standardised on the training rows.

    Returns
    -------
    W : np.ndarray [shape=(d, f)];  b : np.ndarray [shape=(f,)]   ``X @ W + b`` in the inputs' own units
    lam : float   the penalty chosen
    """
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-8
    A, V = (Xtr - mu) / sd, (Xva - mu) / sd
    A1, V1 = (np.hstack([M, np.ones((len(M), 1))]) for M in (A, V))
    best = None
    for lam in lambdas:
        reg = lam * np.eye(A1.shape[1])
        reg[-1, -1] = 0
        W = np.linalg.solve(A1.T @ A1 + reg, A1.T @ Ytr)
        err = float(((V1 @ W - Yva) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, lam, W)
    W = best[2][:-1] / sd[:, None]
    return W, best[2][-1] - mu @ W, best[1]


def ridge_fit_predict(Xtr: np.ndarray, Ytr: np.ndarray, Xva: np.ndarray, Yva: np.ndarray, Xte: np.ndarray,
                      lambdas=LAMBDAS) -> tuple[np.ndarray, float]:
    """:func:`ridge_fit`, then its predictions for ``Xte`` -> (predictions [shape=(n_te, f)], lambda)."""
    W, b, lam = ridge_fit(Xtr, Ytr, Xva, Yva, lambdas)
    return Xte @ W + b, lam


@torch.no_grad()
def refit_output(model, store, tr: np.ndarray, va: np.ndarray, Y: np.ndarray, E: np.ndarray | None = None) -> float:
    """Refit the CNN's output layer on whole songs, in place: a ridge from each training song's mean last-hidden
    activation to its factors (penalty chosen on the validation songs).

    A song's prediction is the mean of its windows' outputs, and the output layer is linear, so this fits the
    very map the song predictions go through, on the song-level target, instead of the per-crop loss training
    minimised. ``E``: the songs' mean last-hidden activations when already computed [shape=(n_songs, dense)] (a
    frozen front end's head, :mod:`audiovis.models.headfit`). Returns the penalty chosen.
    """
    if E is None:
        from .activations import song_means
        E = song_means(model, store, model.dense_names[-1])  # [shape=(n_songs, dense)]
    W, b, lam = ridge_fit(E[tr], Y[tr], E[va], Y[va])        # raw factors = E @ W + b
    out_std, out_mean = model.out_std.cpu().numpy(), model.out_mean.cpu().numpy()
    model.output.weight.copy_(torch.from_numpy((W / out_std).T.astype(np.float32)))
    model.output.bias.copy_(torch.from_numpy(((b - out_mean) / out_std).astype(np.float32)))
    return float(lam)
