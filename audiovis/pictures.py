"""Every picture audiovis makes, for the page and the CLI, without pyplot's global state.

The page is one Streamlit process serving many sessions from threads; pyplot keeps one process-wide registry of
open figures and a "current figure", so two visitors drawing at once can draw into each other's figure, and a
figure nobody closes stays in memory. So nothing here imports :mod:`matplotlib.pyplot`: pictures are either drawn
with numpy and Pillow (clips, histograms: a few ms, while matplotlib took 0.1-1.5 s a picture holding the GIL) or
are a :class:`matplotlib.figure.Figure` with its own Agg canvas (:func:`new_figure`): an object local to the call,
freed with it.

Examples
--------
>>> fig = new_figure(6, 3, dpi=100)
>>> ax = fig.subplots()
>>> png = figure_png(fig)                          # bytes, b"\\x89PNG..."
>>> jpeg = render_clip(S, t0, hop_s, times, curve, peak_s, scale)
"""
from __future__ import annotations

import io
import os
from functools import lru_cache

import numpy as np

from .errors import ParameterError

# ----------------------------------------------------------------------------- matplotlib, the thread-safe way
CLIP_LEFT, CLIP_RIGHT, CLIP_BOTTOM = 34, 46, 26     # render_clip's axes: frequency, colour bar, time


def new_figure(w_in: float, h_in: float, dpi: int = 100):
    """A matplotlib :class:`~matplotlib.figure.Figure` of ``w_in`` x ``h_in`` inches with its own Agg canvas
    (not registered with pyplot: safe in a multi-threaded server, garbage-collected like any object)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w_in, h_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig, dpi: float | None = None) -> bytes:
    """A figure as PNG bytes (at the figure's dpi unless ``dpi`` is given)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi if dpi is not None else "figure")
    return buf.getvalue()


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write a figure to ``path`` atomically (the format follows the extension, PNG without one)."""
    from pathlib import Path

    from .workspace import atomic_path
    with atomic_path(Path(path), suffix=Path(path).suffix or ".png") as tmp:
        fig.savefig(tmp)


@lru_cache(maxsize=1)
def _cmap():
    import matplotlib
    return matplotlib.colormaps["magma"]


@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """magma as 256 RGB bytes [shape=(256, 3), uint8]."""
    return (_cmap()(np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _encode(im, fmt: str = "png", quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# ----------------------------------------------------------------------------- numpy + Pillow
def render_clip(S: np.ndarray, t0: float, hop_s: float, times: np.ndarray, curve: np.ndarray,
                peak_s: float | None, scale: float, px_per_frame: int = 3, px_per_mel: int = 1,
                fmt: str = "jpeg", quality: int = 85, freqs: np.ndarray | None = None) -> bytes:
    """Log-mel spectrogram with a unit's activation over time drawn on it; the peak is marked; with a frequency
    axis (Hz) on the left, a time axis (s) below and a colour bar (dB below the clip's loudest cell) on the
    right.

    Drawn directly with numpy and Pillow (a few ms; matplotlib takes ~60 ms a picture).

    Parameters
    ----------
    S : np.ndarray [shape=(n_mels, t)]   log-mel dB of the span, first frame at ``t0`` seconds
    times, curve : np.ndarray [shape=(m,)]   activation over time (song seconds)
    peak_s : float or None   time of the peak to mark (white dashed line and triangle)
    scale : float   activation drawn at 92 % of the height (the unit's maximum over the whole catalogue, so
        clips of one unit are comparable); written in the corner ("act. max")
    fmt : str   'jpeg' (compact) or 'png'
    freqs : np.ndarray [shape=(n_mels,)], optional   centre frequency of each mel band in Hz
        (:func:`audiovis.features.mel_frequencies`); without it the axis counts mel bands

    Returns
    -------
    image : bytes   ``LEFT + px_per_frame * t + RIGHT`` x ``px_per_mel * n_mels + BOTTOM`` pixels
    """
    from PIL import Image, ImageDraw
    if fmt not in ("jpeg", "png"):
        raise ParameterError(f"image format {fmt!r} is not 'jpeg' or 'png'")
    n_mels, t = S.shape
    vmax = float(np.max(S)) if S.size else 0.0
    idx = np.clip((S - (vmax - 80.0)) * (255.0 / 80.0), 0, 255).astype(np.uint8)
    rgb = _lut()[idx[::-1]]                                   # (n_mels, t, 3), low bins at the bottom
    rgb = np.repeat(np.repeat(rgb, px_per_mel, 0), px_per_frame, 1)
    H, W = rgb.shape[:2]
    L, R, B = CLIP_LEFT, CLIP_RIGHT, CLIP_BOTTOM
    canvas = np.full((H + B, L + W + R, 3), 255, np.uint8)
    canvas[:H, L:L + W] = rgb
    bar = _lut()[np.linspace(255, 0, H).astype(np.uint8)]     # the colour bar: loudest on top
    canvas[:H, L + W + 4:L + W + 12] = bar[:, None, :]
    im = Image.fromarray(canvas)
    dr = ImageDraw.Draw(im)
    ink = (0, 0, 0)

    def xs(tt):
        return L + (np.asarray(tt, dtype=np.float64) - t0) / hop_s * px_per_frame

    if len(curve):
        y = H - 1 - np.clip(np.asarray(curve, np.float32) / max(scale, 1e-6), 0, 1.05) * (0.92 * H)
        x = xs(times)
        mid = (x[1:] + x[:-1]) / 2                            # a step per value, as the layer sees time
        xl = np.concatenate([[x[0]], mid])
        xr = np.concatenate([mid, [x[-1]]])
        pts = np.stack([np.stack([xl, y], 1), np.stack([xr, y], 1)], 1).reshape(-1, 2)
        pts = [(min(max(a, L), L + W - 1), b) for a, b in pts.tolist()]
        dr.line(pts, fill=(0, 0, 0), width=4)
        dr.line(pts, fill=(62, 240, 255), width=2)
    if peak_s is not None:
        px = float(xs(peak_s))
        for y0 in range(0, H, 8):
            dr.line([(px, y0), (px, min(y0 + 4, H - 1))], fill=(255, 255, 255), width=1)
        dr.polygon([(px - 5, 0), (px + 5, 0), (px, 8)], fill=(255, 255, 255), outline=(0, 0, 0))
    dr.text((L + 3, 2), f"act. max {scale:.3g}", fill=(62, 240, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    # time axis (s)
    t1 = t0 + t * hop_s
    span = t1 - t0
    step = 0.5 if span <= 4 else 1.0 if span <= 10 else 2.0 if span <= 30 else 10.0
    tick = np.ceil(t0 / step) * step
    while tick <= t1 + 1e-9:
        px = float(xs(tick))
        dr.line([(px, H), (px, H + 3)], fill=ink)
        dr.text((min(max(px - 8, L), L + W - 26), H + 3), f"{tick:g}", fill=ink)
        tick += step
    dr.text((L + W - 30, H + 14), "time (s)", fill=ink)
    # frequency axis (Hz, or mel bands)
    dr.line([(L - 1, 0), (L - 1, H)], fill=ink)
    for i in np.linspace(0, n_mels - 1, 5).round().astype(int):
        yy = H - 1 - (i + 0.5) * px_per_mel
        dr.line([(L - 4, yy), (L - 1, yy)], fill=ink)
        if freqs is not None:
            f = float(freqs[i])
            txt = f"{f:.0f}" if f < 1000 else f"{f / 1000:.1f}k"
        else:
            txt = str(int(i))
        dr.text((2, min(max(yy - 5, 0), H - 10)), txt, fill=ink)
    dr.text((2, H + 14), "Hz" if freqs is not None else "mel", fill=ink)
    # colour bar labels
    for frac, txt in ((0.0, "0 dB"), (0.5, "-40"), (1.0, "-80")):
        dr.text((L + W + 14, min(max(frac * H - 5, 0), H - 10)), txt, fill=ink)
    return _encode(im, fmt, quality)


def render_histogram(hist, edges, width: int = 288, height: int = 135) -> bytes:
    """Activation histogram over all windows, bars on a log count axis (``log(1 + count)``), as a PNG.

    Drawn with numpy and Pillow in a few ms: matplotlib took 0.1-1.5 s a picture and holds the GIL all along,
    so concurrent visitors' unit views queued behind each other's histograms (bench/bench_sessions.py).

    Parameters
    ----------
    hist : np.ndarray [shape=(n_bins,)]   window counts
    edges : np.ndarray [shape=(n_bins + 1,)]   bin edges (activation)
    width, height : int   pixels
    """
    from PIL import Image, ImageDraw
    hist = np.asarray(hist, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if hist.ndim != 1 or edges.shape != (len(hist) + 1,):
        raise ParameterError(f"histogram needs n counts and n + 1 edges, got {hist.shape} and {edges.shape}")
    im = Image.new("RGB", (int(width), int(height)), (255, 255, 255))
    dr = ImageDraw.Draw(im)
    left, right, top, bottom = 34, int(width) - 8, 6, int(height) - 30       # plot area
    dr.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0))
    lo, hi = float(edges[0]), float(edges[-1])
    span = hi - lo if hi > lo else 1.0
    hmax = float(np.log1p(hist.max())) if len(hist) and hist.max() > 0 else 1.0

    def x(v):
        return left + (float(v) - lo) / span * (right - left)

    for c, a, b in zip(hist, edges[:-1], edges[1:]):
        if c > 0:
            y = bottom - np.log1p(c) / hmax * (bottom - top)
            dr.rectangle([x(a), y, max(x(b) - 1, x(a)), bottom - 1], fill=(76, 120, 168))
    for v in (lo, 0.0, hi) if lo < 0 < hi else (lo, hi):                  # x ticks
        px = x(v)
        dr.line([(px, bottom), (px, bottom + 3)], fill=(0, 0, 0))
        label = f"{v:.2g}"
        dr.text((min(max(px - 3 * len(label), 0), width - 6 * len(label)), bottom + 4), label, fill=(0, 0, 0))
    n_max = int(hist.max()) if len(hist) else 0
    for c in sorted({0, 1, 10, 100, 1000, 10000, 100000, 1000000, n_max}):                 # y ticks (log)
        if c > n_max:
            continue
        py = bottom - np.log1p(c) / hmax * (bottom - top)
        dr.line([(left - 3, py), (left, py)], fill=(0, 0, 0))
        label = f"{c:,}" if c < 10000 else f"{c:.0e}".replace("+0", "")
        dr.text((max(left - 4 - 6 * len(label), 0), py - 5), label, fill=(0, 0, 0))
    dr.text((left, int(height) - 13), "activation (max over a 3 s window); windows, log", fill=(60, 60, 60))
    return _encode(im, "png")


def render_scores(scores, width: int = 288, height: int = 120, n_bins: int = 20) -> bytes:
    """Distribution of explanation scores (:mod:`audiovis.explain`) as a PNG: bars of units per score bin over
    [-1, 1] (or [0, 1] when no score is negative), the median dashed; units without a score are counted in the
    caption. Numpy and Pillow, like :func:`render_histogram`.

    Parameters
    ----------
    scores : sequence of float or None [shape=(n_units,)]
    """
    from PIL import Image, ImageDraw
    v = np.array([np.nan if x is None else float(x) for x in scores], dtype=np.float64)
    ok = v[np.isfinite(v)]
    lo = -1.0 if len(ok) and ok.min() < 0 else 0.0
    counts, edges = np.histogram(np.clip(ok, lo, 1.0), bins=n_bins, range=(lo, 1.0))
    im = Image.new("RGB", (int(width), int(height)), (255, 255, 255))
    dr = ImageDraw.Draw(im)
    left, right, top, bottom = 30, int(width) - 8, 6, int(height) - 30
    dr.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0))
    cmax = max(int(counts.max()) if len(counts) else 0, 1)

    def x(val):
        return left + (float(val) - lo) / (1.0 - lo) * (right - left)

    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c > 0:
            dr.rectangle([x(a), bottom - c / cmax * (bottom - top), max(x(b) - 1, x(a)), bottom - 1],
                         fill=(76, 120, 168))
    for t in (lo, 0.0, 0.5, 1.0) if lo < 0 else (0.0, 0.5, 1.0):
        dr.line([(x(t), bottom), (x(t), bottom + 3)], fill=(0, 0, 0))
        dr.text((x(t) - 6, bottom + 4), f"{t:g}", fill=(0, 0, 0))
    dr.text((2, top), str(cmax), fill=(0, 0, 0))
    dr.text((2, bottom - 10), "0", fill=(0, 0, 0))
    if len(ok):
        m = x(np.median(ok))
        for y in range(top, bottom, 6):
            dr.line([(m, y), (m, min(y + 3, bottom))], fill=(200, 40, 40))
    caption = (f"score; median {np.median(ok):.2f} of {len(ok)} units" if len(ok) else "no scores") + \
        (f", {len(v) - len(ok)} without" if len(v) > len(ok) else "")
    dr.text((left, int(height) - 13), caption, fill=(60, 60, 60))
    return _encode(im, "png")


# ----------------------------------------------------------------------------- matplotlib figures
def render_heatmap(hm, width: float = 11.0, dpi: int = 80, max_units: int = 256) -> bytes:
    """Concept values (rows) x units (columns) of a :class:`~audiovis.explore.HeatMap` (``z``, ``columns``,
    ``layer``) as a PNG; colour = z-score of the unit's mean activation."""
    Z = hm.z[:max_units].T                                   # (n_columns, n_units)
    rows = len(hm.columns)
    h = 0.9 + 0.16 * rows
    fig = new_figure(width, h, dpi)
    ax = fig.add_axes((0.16, 0.7 / h, 0.78, (0.16 * rows) / h))
    lim = max(float(np.nanmax(np.abs(Z))) if Z.size else 1.0, 1e-6)
    im = ax.imshow(Z, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(rows))
    ax.set_yticklabels(hm.columns, fontsize=7)
    n = Z.shape[1]
    step = max(1, n // 32)
    ax.set_xticks(range(0, n, step))
    ax.set_xticklabels([str(i) for i in range(0, n, step)], fontsize=7)
    ax.set_xlabel(f"{hm.layer} unit", fontsize=8, labelpad=1)
    cax = fig.add_axes((0.955, 0.7 / h, 0.012, (0.16 * rows) / h))
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=6)
    return figure_png(fig)


def render_song(S: np.ndarray, hop_s: float, curves: list[tuple[str, np.ndarray, np.ndarray, float]],
                segments: list[dict] | None = None, width: float = 11.0, dpi: int = 80,
                freqs: np.ndarray | None = None) -> bytes:
    """A song's spectrogram above the activation curves of its most active units (each scaled by its
    catalogue-wide maximum), as a PNG.

    Parameters
    ----------
    S : np.ndarray [shape=(n_mels, t)]   the song's log-mel (dB)
    curves : list of (name, times, values, scale)
    segments : list of dicts with concept, value, start_s (ground-truth changes, drawn as dotted lines)
    freqs : np.ndarray [shape=(n_mels,)], optional   each mel band's centre in Hz (the frequency axis)
    """
    import matplotlib
    n_mels, t = S.shape
    dur = t * hop_s
    fig = new_figure(width, 3.6, dpi)
    ax = fig.add_axes((0.06, 0.47, 0.88, 0.5))
    vmax = float(np.max(S)) if S.size else 0.0
    im = ax.imshow(S - vmax, origin="lower", aspect="auto", cmap=_cmap(), vmin=-80, vmax=0,
                   interpolation="nearest", extent=(0, dur, 0, n_mels))
    if freqs is not None and n_mels:
        ticks = np.linspace(0, n_mels - 1, 4).round().astype(int)
        ax.set_yticks(ticks + 0.5, [f"{freqs[i]:.0f}" if freqs[i] < 1000 else f"{freqs[i] / 1000:.1f}k"
                                    for i in ticks])
        ax.set_ylabel("Hz", fontsize=8)
    else:
        ax.set_yticks([])
        ax.set_ylabel("mel", fontsize=8)
    cax = fig.add_axes((0.955, 0.47, 0.01, 0.5))
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=6)
    cb.set_label("dB", fontsize=7)
    ax.tick_params(labelsize=7, labelbottom=False)
    for s in segments or []:
        if s["start_s"] > 0:
            ax.axvline(s["start_s"], color="white", lw=1, ls=":")
        ax.text(s["start_s"] + 0.1, n_mels * 0.9, f"{s['concept']}={s['value']}", color="white", fontsize=7)
    ax2 = fig.add_axes((0.06, 0.1, 0.88, 0.35), sharex=ax)
    colors = matplotlib.colormaps["tab10"].colors
    for i, (name, times, curve, scale) in enumerate(curves):
        ax2.plot(times, np.asarray(curve) / max(scale, 1e-6), color=colors[i % 10], lw=1.4, label=name,
                 drawstyle="steps-mid")
    ax2.set_xlim(0, dur)
    ax2.set_ylim(bottom=0)
    ax2.tick_params(labelsize=7)
    ax2.set_xlabel("time (s)", fontsize=8, labelpad=1)
    ax2.set_ylabel("act. / max", fontsize=8)
    if curves:
        ax2.legend(fontsize=7, loc="upper right", ncol=min(len(curves), 5), framealpha=0.7)
    return figure_png(fig)


def render_taggram(T: np.ndarray, starts: np.ndarray, window_s: float, names: list[str], width: float = 11.0,
                   dpi: int = 80, max_tags: int = 20) -> bytes:
    """A taggram (Pons & Serra's picture of a tagger over a song): tag probability per window, tags as rows
    (the ``max_tags`` with the highest mean, most likely on top), time along x, as a PNG with a colour bar from 0
    to the song's highest probability.

    Parameters
    ----------
    T : np.ndarray [shape=(n_windows, n_tags)]   probabilities in [0, 1]
    starts : np.ndarray [shape=(n_windows,)]     each window's start (s)
    """
    order = np.argsort(-T.mean(0), kind="stable")[:max_tags] if T.size else np.zeros(0, int)
    rows = len(order)
    h = 0.8 + 0.15 * max(rows, 1)
    fig = new_figure(width, h, dpi)
    ax = fig.add_axes((0.15, 0.55 / h, 0.78, (0.15 * max(rows, 1)) / h))
    end = float(starts[-1] + window_s) if len(starts) else window_s
    top = max(float(T.max()) if T.size else 1.0, 0.05)       # the song's own range: a tagger is rarely sure
    im = ax.imshow(T[:, order].T, aspect="auto", cmap="magma", vmin=0.0, vmax=top, interpolation="nearest",
                   extent=(float(starts[0]) if len(starts) else 0.0, end, rows - 0.5, -0.5))
    ax.set_yticks(range(rows))
    ax.set_yticklabels([names[i] for i in order], fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("time (s)", fontsize=8, labelpad=1)
    cax = fig.add_axes((0.945, 0.55 / h, 0.012, (0.15 * max(rows, 1)) / h))
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=6)
    cb.set_label("tag probability", fontsize=7)
    return figure_png(fig)


def render_timelines(tracks: list[tuple[str, np.ndarray, np.ndarray]], duration_s: float, width: float = 9.0,
                     dpi: int = 110, xlabel: str = "time (s)") -> bytes:
    """One filled activation-over-time strip per track (name, times, values), sharing the time axis, as a PNG
    (the cold-start view's "units over time")."""
    n = max(len(tracks), 1)
    fig = new_figure(width, 0.75 * n + 0.6, dpi)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)
    for ax, (name, t, a) in zip(axes[:, 0], tracks):
        ax.fill_between(np.asarray(t), 0, np.asarray(a), step="mid", color="#3b6ea8", alpha=0.8, linewidth=0)
        ax.set_xlim(0, duration_s)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
        for s in ("top", "right", "left"):
            ax.spines[s].set_visible(False)
    axes[-1, 0].set_xlabel(xlabel)
    fig.tight_layout(h_pad=0.2)
    return figure_png(fig)


def plot_logmel(S_db: np.ndarray, sr: int = 22050, hop_length: int = 512, title: str = "", ax=None,
                vmin=None, vmax=None, cbar_label: str = "dB"):
    """A log-mel spectrogram with time in seconds and mel bins labelled in Hz (the front end's mel scale,
    :func:`audiovis.features.mel_frequencies`) and a colour bar labelled ``cbar_label`` (a relevance map is not in
    dB); draws on ``ax`` if given, returns the Figure."""
    from .features import mel_frequencies
    S_db = np.asarray(S_db, dtype=np.float32)
    if ax is None:
        fig = new_figure(6, 3, dpi=100)
        ax = fig.subplots()
    else:
        fig = ax.figure
    t = S_db.shape[1] * hop_length / sr
    im = ax.imshow(S_db, origin="lower", aspect="auto", extent=(0, t, 0, S_db.shape[0]), cmap="magma",
                   vmin=vmin, vmax=vmax)
    f = mel_frequencies(S_db.shape[0], sr)
    ticks = [i for i in (0, 16, 32, 48, 64, 80, 96, 112, 127) if i < len(f)]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{f[i]:.0f}" if f[i] < 1000 else f"{f[i] / 1000:.1f}k" for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Hz (mel)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=cbar_label, fraction=0.04)
    fig.tight_layout()
    return fig
