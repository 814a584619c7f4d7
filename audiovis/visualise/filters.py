"""The first convolution layer's filters: small time-by-mel images and their frequency responses.

conv1's weight has shape (C, n_mels, kernel): each filter is a (n_mels x kernel) pattern over mel bins and a few
frames. The model standardises its input per mel bin, so the filter as applied to the dB log-mel is
``W[c, m, k] / in_std[m]`` scaled by the batch norm's ``gamma / sqrt(var + eps)``; ``effective=True`` returns that.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..features import mel_frequencies
from ..pictures import new_figure


def conv1_filters(model, effective: bool = False) -> np.ndarray:
    """conv1 weights [shape=(C, n_mels, kernel)]; ``effective``: as applied to dB input (standardisation and
    batch-norm scale folded in). A model on musicnn's front end has no conv1: :func:`timbral_filters`."""
    if not hasattr(model, "conv1"):
        raise ParameterError("this model's first layer is musicnn's pretrained front end, not a conv1 over all mel "
                             "bins: its timbral filters slide along frequency (audiovis.visualise.filters."
                             "timbral_filters; the page's Visualise view draws them)")
    block = model.conv1
    W = block.conv.weight.detach().float().clone()                          # (C, n_mels, kernel)
    if effective:
        W = W / model.in_std.detach().float()[None]                         # (1, n_mels, 1)
        bn = block.bn
        scale = bn.weight.detach() / torch_sqrt(bn.running_var.detach() + bn.eps)
        W = W * scale[:, None, None]
    return W.numpy()


def timbral_filters(model) -> list[tuple[np.ndarray, list[str]]]:
    """musicnn's timbral filters as (mel x frame) images: [(W [shape=(204, 38, 7)], units), (W [shape=(204, 67,
    7)], units)], units ``timbral:0``... (each is slid along frequency and max-pooled over it: it has a shape, not a
    fixed frequency)."""
    out, o = [], 0
    for conv in (model.timbral.conv74, model.timbral.conv77):
        W = conv.weight.detach().float()[:, 0].transpose(1, 2).numpy()          # (C, mel, frames)
        out.append((W, [f"timbral:{o + i}" for i in range(len(W))]))
        o += len(W)
    return out


def torch_sqrt(x):
    import torch
    return torch.sqrt(x)


def frequency_response(W: np.ndarray, sr: int = 22050, fmin: float = 0.0, fmax: float | None = None) -> dict:
    """Per filter and mel bin: weight energy (sum of squares over taps) and DC gain (sum over taps: the response
    to a steady spectrum), with the mel bins' centre frequencies in Hz.

    Returns
    -------
    dict with ``hz`` [shape=(n_mels,)], ``energy`` and ``gain`` [shape=(C, n_mels)], ``peak_hz`` [shape=(C,)]
    (the frequency of the largest positive gain: what the filter likes most).
    """
    W = np.asarray(W, dtype=np.float32)
    if W.ndim != 3:
        raise ParameterError(f"filters must have shape (C, n_mels, kernel), got {W.shape}")
    hz = mel_frequencies(W.shape[1], sr, fmin, fmax)
    energy = (W ** 2).sum(-1)
    gain = W.sum(-1)
    return {"hz": hz, "energy": energy, "gain": gain, "peak_hz": hz[np.argmax(gain, axis=1)]}


def plot_filters(W: np.ndarray, units: list[str] | None = None, cols: int = 16, sr: int = 22050,
                 title: str = "conv1 filters (mel bin up, kernel taps across)"):
    """All filters at a glance: one small (mel x time) image per filter, red positive, blue negative; a
    :class:`~matplotlib.figure.Figure` (:func:`audiovis.pictures.figure_png` / ``save_figure`` write it)."""
    C = W.shape[0]
    rows = int(np.ceil(C / cols))
    fig = new_figure(cols * 0.7, rows * 1.6, dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= C:
            continue
        w = W[i]
        m = float(np.quantile(np.abs(w), 0.99)) or 1.0
        ax.imshow(w, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
        ax.set_title(units[i] if units else str(i), fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_response(resp: dict, idx: int, ax=None):
    """One filter's frequency response: weight energy and DC gain against frequency (Hz, log axis)."""
    if ax is None:
        fig = new_figure(5, 2.4, dpi=100)
        ax = fig.subplots()
    else:
        fig = ax.figure
    hz = np.maximum(resp["hz"], 1.0)
    ax.semilogx(hz, resp["gain"][idx], label="gain (sum over taps)")
    ax.semilogx(hz, resp["energy"][idx], label="energy (sum of squares)", alpha=0.7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("Hz")
    ax.legend(fontsize=7)
    ax.set_title(f"conv1:{idx} peaks at {resp['peak_hz'][idx]:.0f} Hz", fontsize=9)
    fig.tight_layout()
    return fig
