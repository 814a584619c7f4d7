"""audiovis.pictures: every clip picture has a frequency axis, a time axis and a colour bar."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from audiovis.errors import ParameterError
from audiovis.features import mel_frequencies
from audiovis.pictures import CLIP_BOTTOM, CLIP_LEFT, CLIP_RIGHT, new_figure, plot_logmel, render_clip, render_song


def _clip(freqs=None, fmt="png"):
    rng = np.random.default_rng(0)
    S = rng.uniform(-60, 0, (96, 188)).astype(np.float32)
    t = 10.0 + np.arange(188) * 0.016
    return render_clip(S, 10.0, 0.016, t, np.abs(np.sin(t)), 11.0, 1.0, fmt=fmt, freqs=freqs)


def test_render_clip_has_axes_and_a_colour_bar():
    im = np.asarray(Image.open(io.BytesIO(_clip(mel_frequencies(96, 16000)))).convert("RGB")).astype(int)
    H, W = 96, 3 * 188
    assert im.shape == (H + CLIP_BOTTOM, CLIP_LEFT + W + CLIP_RIGHT, 3)
    left, below = im[:H, :CLIP_LEFT - 2], im[H + 2:, CLIP_LEFT:CLIP_LEFT + W]
    assert (left.sum(2) < 200).sum() > 40                  # tick labels (Hz) in the left margin
    assert (below.sum(2) < 200).sum() > 40                 # tick labels (s) below
    bar = im[:H, CLIP_LEFT + W + 6]                        # the colour bar: magma, bright on top, dark below
    assert bar[2].sum() > 500 and bar[-3].sum() < 100
    assert (im[:H, CLIP_LEFT + W + 14:].sum(2) < 200).sum() > 20     # its dB labels


def test_render_clip_axis_text_differs_with_and_without_frequencies():
    a, b = _clip(mel_frequencies(96, 16000)), _clip(None)
    ia = np.asarray(Image.open(io.BytesIO(a)))[:, :CLIP_LEFT]
    ib = np.asarray(Image.open(io.BytesIO(b)))[:, :CLIP_LEFT]
    assert not np.array_equal(ia, ib)                      # Hz labels, or mel band numbers
    assert _clip(fmt="jpeg")[:2] == b"\xff\xd8"
    with pytest.raises(ParameterError, match="image format 'gif'"):
        render_clip(np.zeros((4, 4)), 0.0, 0.1, np.zeros(0), np.zeros(0), None, 1.0, fmt="gif")


def test_relevance_maps_are_not_labelled_db():
    fig = new_figure(4, 3)
    plot_logmel(np.random.default_rng(0).uniform(0, 1, (96, 50)), 16000, 256, ax=fig.subplots(), vmin=0, vmax=1,
                cbar_label="relevance (0-1)")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "relevance (0-1)" in labels and "dB" not in labels


def test_render_song_has_a_frequency_axis_and_a_colour_bar():
    S = np.random.default_rng(1).uniform(-60, 0, (96, 300)).astype(np.float32)
    curves = [("u:0", np.arange(300) * 0.016, np.ones(300), 1.0)]
    png = render_song(S, 0.016, curves, freqs=mel_frequencies(96, 16000))
    assert png[:4] == b"\x89PNG"
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(render_song(S, 0.016, curves))).convert("RGB")).astype(int)
    H, W = a.shape[:2]
    top = slice(0, int(0.53 * H))                               # the spectrogram's rows (its axes: 0.47-0.97)
    ink = [(im[top, :int(0.06 * W)].sum(2) < 300).sum() for im in (a, b)]
    assert ink[0] > 2 * ink[1]                                  # Hz tick labels in the left margin, not only 'mel'
    x = int(0.96 * W)                                           # the colour bar: magma, bright on top, dark below
    assert a[int(0.05 * H), x].sum() > 500 and a[int(0.51 * H), x].sum() < 100
