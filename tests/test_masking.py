"""The kept and removed sounds, measured on the audio."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attribution import BURST_HZ, BURST_T, band_net, burst_clip

from audiovis.config import FeatureConfig
from audiovis.errors import ParameterError
from audiovis.interpret.attribution import attribute
from audiovis.interpret.masking import apply_mel_gain, keep_mask, rms, split_sounds
from audiovis.interpret.network import window_from_audio
from audiovis.interpret.targets import unit_target


@pytest.fixture(scope="module")
def clip():
    return window_from_audio(burst_clip(seed=1), FeatureConfig(), 0.0, "burst")


def burst_energy(y: np.ndarray, sr: int) -> tuple[float, float]:
    """(energy near the burst's frequency during the burst, all energy) of ``y``."""
    f, t, Z = __import__("scipy.signal", fromlist=["stft"]).stft(y, sr, nperseg=512)
    P = np.abs(Z) ** 2
    band = (np.abs(f - BURST_HZ) < 150)[:, None] & ((t >= BURST_T[0]) & (t < BURST_T[1]))[None]
    return float(P[band].sum()), float(P.sum())


def test_unit_gain_is_the_clip_itself(clip):
    y = apply_mel_gain(clip, torch.ones(1, *clip.S_db.shape))[0].numpy()
    assert np.max(np.abs(y - clip.y)) < 1e-4


def test_kept_part_holds_the_burst_and_removed_part_does_not(clip):
    net = band_net()
    att = attribute(net, unit_target(net, "summary:1", clip), clip, "ig", steps=16)
    s = split_sounds(clip, att.A)
    b0, _ = burst_energy(s.original, s.sr)
    bk, ek = burst_energy(s.kept * 10 ** (-s.kept_gain_db / 20), s.sr)     # at the level it was cut at
    br, er = burst_energy(s.removed * 10 ** (-s.removed_gain_db / 20), s.sr)
    assert bk / b0 > 0.9, f"kept holds {bk / b0:.2f} of the burst"
    assert br / b0 < 0.05, f"removed holds {br / b0:.3f} of the burst"
    assert bk / ek > 0.99                              # and the burst is what the kept part is made of
    assert (s.mask > 0).mean() < 0.1                   # from a few cells
    assert abs(rms(s.removed) - rms(s.original)) < 0.01 * rms(s.original)   # loudness matched
    assert abs(rms(s.kept) - rms(s.original)) < 0.01 * rms(s.original)


def test_keep_mask_holds_the_asked_mass():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((16, 20))
    K = keep_mask(A, 0.5, soften=0)
    P = np.clip(A, 0, None)
    assert P[K == 1].sum() >= 0.5 * P.sum() and P[K == 1].sum() - P[K == 1].min() < 0.5 * P.sum()
    assert not keep_mask(-np.abs(A)).any()
    with pytest.raises(ParameterError, match="kept mass 1.5 must be in"):
        keep_mask(A, 1.5)
