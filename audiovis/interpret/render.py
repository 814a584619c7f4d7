"""Pictures of :mod:`audiovis.interpret`, drawn with :mod:`audiovis.pictures`' thread-safe figures: the
attribution over the clip's log-mel, the deletion curves and a layer of the layer walk."""
from __future__ import annotations

import numpy as np

from ..pictures import figure_png, new_figure, plot_logmel


def _heat_cmap():
    from matplotlib.colors import LinearSegmentedColormap
    return LinearSegmentedColormap.from_list("attribution", [(1.0, 0.2, 0.0, 0.0), (1.0, 0.3, 0.0, 0.75),
                                                             (1.0, 0.9, 0.2, 0.95), (1.0, 1.0, 0.8, 1.0)])


def overlay_figure(att, width: float = 8.0):
    """The clip's log-mel in grey (time and frequency axes, dB colour bar) with its positive attribution over it
    (red to yellow, lightly smoothed for the eye; a second colour bar: share of the most attributed cells)."""
    from scipy.ndimage import gaussian_filter
    w = att.window
    fig = new_figure(width, 3.4, dpi=100)
    ax = fig.subplots()
    plot_logmel(w.S_db, w.fcfg.sr, w.fcfg.hop_length, ax=ax,
                title=f"{att.target.title} on {w.label} at {w.start_s:.1f} s: {att.method}")
    ax.images[0].set_cmap("gray")                      # the picture under the heat: grey, its dB bar follows
    P = gaussian_filter(att.positive(), 0.8)
    top = float(np.quantile(P, 0.999)) if P.max() > 0 else 1.0
    t = w.S_db.shape[1] * w.hop_s
    im = ax.imshow(P / max(top, 1e-12), origin="lower", aspect="auto", extent=(0, t, 0, w.S_db.shape[0]),
                   cmap=_heat_cmap(), vmin=0, vmax=1, interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, fraction=0.04)
    cb.ax.set_title("attribution", fontsize=7)         # above: a side label would run into the dB bar beside it
    fig.tight_layout()
    return fig


def overlay_png(att, width: float = 8.0) -> bytes:
    return figure_png(overlay_figure(att, width))


def deletion_figure(dele, method: str = "", width: float = 4.5):
    """The deletion curve against random deletion, areas in the legend."""
    fig = new_figure(width, 2.6, dpi=100)
    ax = fig.subplots()
    ax.plot(dele.fractions, dele.curve, color="C3", label=f"{method or 'attribution'} order (area {dele.area:.2f})")
    ax.plot(dele.fractions, dele.random, color="0.5", ls="--", label=f"random order (area {dele.random_area:.2f})")
    ax.set_xlabel("share of cells removed")
    ax.set_ylabel("target (1 = clip, 0 = floor)")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def deletion_png(dele, method: str = "") -> bytes:
    return figure_png(deletion_figure(dele, method))


def layer_png(step, width: float = 8.0, max_units: int = 256) -> bytes:
    """One layer of a layer walk: units (rows, at most ``max_units``: the most active) x time, its top units
    marked."""
    A = step.A
    rows = np.arange(A.shape[0])
    if A.shape[0] > max_units:
        rows = np.sort(np.argsort(-A.max(axis=1), kind="stable")[:max_units])
    fig = new_figure(width, 1.2 + min(2.2, 0.012 * len(rows) + 0.6), dpi=90)
    ax = fig.subplots()
    im = ax.imshow(A[rows], origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(0, step.duration_s, 0, len(rows)))
    ax.set_xlabel("time (s)" if A.shape[1] > 1 else "(no time axis)")
    ax.set_ylabel("unit" if len(rows) == A.shape[0] else f"unit (top {len(rows)})")
    ax.set_title(f"{step.layer}: {A.shape[0]} units; top " + ", ".join(u.split(":", 1)[1] for u, _ in step.top[:5]),
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="activation")
    fig.tight_layout()
    return figure_png(fig)
