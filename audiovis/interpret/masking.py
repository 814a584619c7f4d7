"""Hear the attribution: the clip with only its most attributed cells kept, and with them removed.

Made from the original audio, not from an inversion of the log-mel: a soft mask on the mel grid is mapped to the
STFT bins through the front end's own filterbank (:func:`audiovis.features.mel_basis`; each bin takes the
filter-weighted mean of the mask of the mel bands that cover it), multiplies the clip's complex STFT (same
``n_fft``, hop and centred frames as the log-mel) and is inverted with the clip's own phase. Each part is then
scaled to the original clip's RMS level (at most :data:`MAX_GAIN_DB` louder; :func:`audiovis.clips.match_level`),
so the two are compared at the same loudness.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..clips import match_level
from ..errors import ParameterError
from ..features import mel_basis

KEEP_MASS = 0.95         # kept cells: the fewest that hold this share of the positive attribution
MAX_GAIN_DB = 24.0       # loudness matching never raises a part by more than this


def _stft_args(window):
    c = window.fcfg
    return c.n_fft, c.hop_length, torch.hann_window(c.n_fft)


def apply_mel_gain(window, G: torch.Tensor, outside: float = 1.0) -> torch.Tensor:
    """The clip with a gain per mel cell applied to its STFT (original phase), differentiable in ``G``.

    Parameters
    ----------
    window : Window
    G : torch.Tensor [shape=(b, n_mels, frames)]   amplitude gain per mel cell (1: unchanged)
    outside : float
        Gain of the STFT bins no mel filter covers (below ``fmin``, above ``fmax``).

    Returns
    -------
    y : torch.Tensor [shape=(b, n)]
    """
    c = window.fcfg
    n_fft, hop, win = _stft_args(window)
    y = torch.from_numpy(np.asarray(window.y, np.float32))
    X = torch.stft(y, n_fft, hop, window=win, center=True, pad_mode="constant", return_complex=True)
    fb = torch.from_numpy(np.array(mel_basis(c.sr, n_fft, G.shape[1], c.fmin, c.fmax)))     # (n_mels, n_freq)
    cover = fb.sum(0)                                                                        # (n_freq,)
    if G.shape[-1] < X.shape[-1]:                      # the STFT's last centred frame: the grid's last column
        G = torch.cat([G, G[..., -1:].expand(*G.shape[:-1], X.shape[-1] - G.shape[-1])], dim=-1)
    G = G[..., :X.shape[-1]].to(fb.dtype)
    M = torch.einsum("mf,bmt->bft", fb, G) / torch.where(cover > 0, cover, 1.0)[:, None]
    M = torch.where((cover > 0)[:, None], M, torch.full_like(M, outside))
    return torch.istft(X[None] * M, n_fft, hop, window=win, center=True, length=len(y))


def keep_mask(A: np.ndarray, mass: float = KEEP_MASS, soften: int = 1) -> np.ndarray:
    """The cells to keep [shape=(n_mels, frames)] in [0, 1]: the fewest most attributed cells that hold ``mass``
    of the positive attribution ``A``, softened by a ``soften``-cell box blur (no hard edges to hear)."""
    from scipy.ndimage import uniform_filter
    if not 0.0 < mass <= 1.0:
        raise ParameterError(f"kept mass {mass!r} must be in (0, 1]")
    P = np.clip(np.asarray(A, np.float64), 0, None)
    total = P.sum()
    if total <= 0:
        return np.zeros(P.shape, np.float32)
    order = np.argsort(P, axis=None)[::-1]
    k = int(np.searchsorted(np.cumsum(P.ravel()[order]), mass * total)) + 1
    K = np.zeros(P.size, np.float64)
    K[order[:k]] = 1.0
    K = K.reshape(P.shape)
    if soften > 0:
        K = np.maximum(K, uniform_filter(K, size=2 * soften + 1, mode="nearest"))
    return np.clip(K, 0.0, 1.0).astype(np.float32)


@dataclass
class Sounds:
    """The clip's two parts at the original's loudness.

    Attributes
    ----------
    sr : int
    original, kept, removed : np.ndarray [shape=(n,)]
    kept_gain_db, removed_gain_db : float   how much each part was raised to match the original's RMS
    mask : np.ndarray [shape=(n_mels, frames)]   the kept cells' soft mask
    """

    sr: int
    original: np.ndarray
    kept: np.ndarray
    removed: np.ndarray
    kept_gain_db: float
    removed_gain_db: float
    mask: np.ndarray


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(y, np.float64))))) if len(y) else 0.0


def split_sounds(window, A: np.ndarray, mass: float = KEEP_MASS) -> Sounds:
    """The clip of ``window`` with its most attributed cells (``A`` [shape=(n_mels, frames)]) kept, and removed."""
    K = keep_mask(A, mass)
    with torch.no_grad():
        kept = apply_mel_gain(window, torch.from_numpy(K[None]), outside=0.0)[0].numpy()
    removed = np.asarray(window.y, np.float32) - kept   # the STFT is linear: the rest, uncovered bins included
    kept, gk = match_level(kept, window.y, peak=None, max_gain_db=MAX_GAIN_DB)
    removed, gr = match_level(removed, window.y, peak=None, max_gain_db=MAX_GAIN_DB)
    return Sounds(window.fcfg.sr, np.asarray(window.y, np.float32), kept, removed, gk, gr, K)
