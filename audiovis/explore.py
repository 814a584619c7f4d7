"""What the listening page shows, computed without Streamlit: unit tables, clips, curves, heat maps, songs.

Everything here works on a finished workspace through :class:`Explorer`, which holds the model, the
:class:`~audiovis.index.UnitIndex`, the catalogue, the ground truth and (when present) the unit labels written
by dissection (``WS/index/dissection.json``).

Examples
--------
>>> ex = Explorer("workspaces/demo")
>>> rows = ex.unit_table("conv2", sort="selectivity", query="flute")
>>> view = ex.unit_view("conv2:17", n=10)          # clips with audio bytes, PNG and labels
"""
from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from . import clips as _clips
from .activations import Recorder
from .errors import ParameterError, WorkspaceError
from .index import UnitIndex
from .units import Unit, parse_unit
from .workspace import Workspace

SORT_KEYS = ("strength", "selectivity", "sparsity", "label", "unit")
DISSECTION_FILE = "dissection.json"


# ----------------------------------------------------------------------------- labels and search
def load_dissection(ws: Workspace) -> dict[str, list[dict]]:
    """Unit labels from ``WS/index/dissection.json``: {unit: [{concept, score, detector}, ... best first]}.

    Returns an empty dict when the file is missing or unreadable (labels are optional).
    """
    p = ws.index_dir / DISSECTION_FILE
    if not p.exists():
        return {}
    try:
        d = json.loads(p.read_text())
        units = d.get("units", {}) if isinstance(d, dict) else {}
        return {str(u): [x for x in v if isinstance(x, dict) and "concept" in x]
                for u, v in units.items() if isinstance(v, list)}
    except (OSError, ValueError):
        return {}


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", str(text).lower()) if t]


def _token_match(q: str, t: str) -> bool:
    """Loose word match: equal, one a prefix of the other, or a shared stem ('distorted' ~ 'distortion')."""
    if q.isdigit() or t.isdigit():
        return q == t
    if t.startswith(q) or (len(q) >= 3 and q in t) or (q.startswith(t) and len(t) >= 3):
        return True
    n = 0
    for a, b in zip(q, t):
        if a != b:
            break
        n += 1
    return n >= 5 or (n >= 4 and n >= min(len(q), len(t)) - 2)


def text_matches(query: str, texts: list[str]) -> bool:
    """True when every word of ``query`` loosely matches a word of one of ``texts`` (case, '_', '=' ignored).

    >>> text_matches("distorted guitar", ["lead=distortion_guitar"])
    True
    """
    q = _tokens(query)
    if not q:
        return True
    words = [w for t in texts for w in _tokens(t)]
    return all(any(_token_match(qt, w) for w in words) for qt in q)


def concept_at(segments: list[dict], start_s: float, end_s: float) -> str | None:
    """The value of a time-varying concept over ``[start_s, end_s]``: the segment with the largest overlap
    (segments of one concept of one song: dicts with start_s, end_s, value)."""
    best, best_ov = None, 0.0
    for s in segments:
        ov = min(end_s, s["end_s"]) - max(start_s, s["start_s"])
        if ov > best_ov:
            best, best_ov = s["value"], ov
    return best


def clip_labels(song_labels: dict[str, str], song_segments: list[dict], start_s: float,
                end_s: float) -> dict[str, str]:
    """Ground truth of a clip: song-level labels, with time-varying concepts taken from the segments over the
    clip's span. A clip that straddles a change (the lead entering) gets ``'none→flute'``."""
    out = dict(song_labels)
    by_concept: dict[str, list[dict]] = {}
    for s in song_segments:
        by_concept.setdefault(s["concept"], []).append(s)
    for c, segs in by_concept.items():
        vals = []
        for s in sorted(segs, key=lambda s: s["start_s"]):
            ov = min(end_s, s["end_s"]) - max(start_s, s["start_s"])
            if ov > 0.25 * min(end_s - start_s, 1.0) and (not vals or vals[-1] != s["value"]):
                vals.append(s["value"])
        if not vals:
            v = concept_at(segs, start_s, end_s)
            vals = [v] if v is not None else []
        if vals:
            out[c] = "→".join(vals)
    return out


# ----------------------------------------------------------------------------- rendering
@lru_cache(maxsize=1)
def _cmap():
    import matplotlib
    return matplotlib.colormaps["magma"]


def _new_fig(w_in: float, h_in: float, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w_in, h_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    import matplotlib
    return (matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def render_clip(S: np.ndarray, t0: float, hop_s: float, times: np.ndarray, curve: np.ndarray,
                peak_s: float | None, scale: float, px_per_frame: int = 3, px_per_mel: int = 1,
                fmt: str = "jpeg", quality: int = 85) -> bytes:
    """Log-mel spectrogram with a unit's activation over time drawn on it; the peak is marked.

    Drawn directly with numpy and Pillow (a few ms; matplotlib takes ~60 ms a picture).

    Parameters
    ----------
    S : np.ndarray [shape=(n_mels, t)]   log-mel dB of the span, first frame at ``t0`` seconds
    times, curve : np.ndarray [shape=(m,)]   activation over time (song seconds)
    peak_s : float or None   time of the peak to mark (white dashed line and triangle)
    scale : float   activation drawn at 92 % of the height (the unit's maximum over the whole catalogue, so
        clips of one unit are comparable)
    fmt : str   'jpeg' (compact) or 'png'

    Returns
    -------
    image : bytes   ``px_per_frame * t`` x ``px_per_mel * n_mels + 13`` pixels (a time axis below)
    """
    from PIL import Image, ImageDraw
    if fmt not in ("jpeg", "png"):
        raise ParameterError(f"image format {fmt!r} is not 'jpeg' or 'png'")
    _n_mels, t = S.shape
    vmax = float(np.max(S)) if S.size else 0.0
    idx = np.clip((S - (vmax - 80.0)) * (255.0 / 80.0), 0, 255).astype(np.uint8)
    rgb = _lut()[idx[::-1]]                                   # (n_mels, t, 3), low bins at the bottom
    rgb = np.repeat(np.repeat(rgb, px_per_mel, 0), px_per_frame, 1)
    H, W = rgb.shape[:2]
    axis_h = 13
    canvas = np.full((H + axis_h, W, 3), 255, np.uint8)
    canvas[:H] = rgb
    im = Image.fromarray(canvas)
    dr = ImageDraw.Draw(im)

    def xs(tt):
        return (np.asarray(tt, dtype=np.float64) - t0) / hop_s * px_per_frame

    if len(curve):
        y = H - 1 - np.clip(np.asarray(curve, np.float32) / max(scale, 1e-6), 0, 1.05) * (0.92 * H)
        x = xs(times)
        mid = (x[1:] + x[:-1]) / 2                            # a step per value, as the layer sees time
        xl = np.concatenate([[x[0]], mid])
        xr = np.concatenate([mid, [x[-1]]])
        pts = np.stack([np.stack([xl, y], 1), np.stack([xr, y], 1)], 1).reshape(-1, 2)
        pts = [tuple(p) for p in pts.tolist()]
        dr.line(pts, fill=(0, 0, 0), width=4)
        dr.line(pts, fill=(62, 240, 255), width=2)
    if peak_s is not None:
        px = float(xs(peak_s))
        for y0 in range(0, H, 8):
            dr.line([(px, y0), (px, min(y0 + 4, H - 1))], fill=(255, 255, 255), width=1)
        dr.polygon([(px - 5, 0), (px + 5, 0), (px, 8)], fill=(255, 255, 255), outline=(0, 0, 0))
    t1 = t0 + t * hop_s
    span = t1 - t0
    step = 0.5 if span <= 4 else 1.0 if span <= 10 else 2.0 if span <= 30 else 10.0
    tick = np.ceil(t0 / step) * step
    while tick <= t1 + 1e-9:
        px = float(xs(tick))
        dr.line([(px, H), (px, H + 3)], fill=(0, 0, 0))
        dr.text((min(max(px - 6, 0), W - 24), H + 2), f"{tick:g}", fill=(0, 0, 0))
        tick += step
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


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
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def render_heatmap(hm: HeatMap, width: float = 11.0, dpi: int = 80, max_units: int = 256) -> bytes:
    """Concept values (rows) x units (columns); colour = z-score of the unit's mean activation."""
    Z = hm.z[:max_units].T                                   # (n_columns, n_units)
    rows = len(hm.columns)
    fig = _new_fig(width, 0.9 + 0.16 * rows, dpi)
    ax = fig.add_axes((0.16, 0.7 / (0.9 + 0.16 * rows), 0.78, (0.16 * rows) / (0.9 + 0.16 * rows)))
    lim = max(float(np.nanmax(np.abs(Z))) if Z.size else 1.0, 1e-6)
    im = ax.imshow(Z, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(rows))
    ax.set_yticklabels(hm.columns, fontsize=7)
    n = Z.shape[1]
    step = max(1, n // 32)
    ax.set_xticks(range(0, n, step))
    ax.set_xticklabels([str(i) for i in range(0, n, step)], fontsize=7)
    ax.set_xlabel(f"{hm.layer} unit", fontsize=8, labelpad=1)
    cax = fig.add_axes((0.955, 0.7 / (0.9 + 0.16 * rows), 0.012, (0.16 * rows) / (0.9 + 0.16 * rows)))
    fig.colorbar(im, cax=cax).ax.tick_params(labelsize=6)
    return _png(fig)


def render_song(S: np.ndarray, hop_s: float, curves: list[tuple[str, np.ndarray, np.ndarray, float]],
                segments: list[dict] | None = None, width: float = 11.0, dpi: int = 80) -> bytes:
    """A song's spectrogram above the activation curves of its most active units (each scaled by its
    catalogue-wide maximum)."""
    import matplotlib
    n_mels, t = S.shape
    dur = t * hop_s
    fig = _new_fig(width, 3.6, dpi)
    ax = fig.add_axes((0.05, 0.47, 0.93, 0.5))
    vmax = float(np.max(S)) if S.size else 0.0
    ax.imshow(S, origin="lower", aspect="auto", cmap=_cmap(), vmin=vmax - 80, vmax=vmax, interpolation="nearest",
              extent=(0, dur, 0, n_mels))
    ax.set_yticks([])
    ax.set_ylabel("mel", fontsize=8)
    ax.tick_params(labelsize=7, labelbottom=False)
    for s in segments or []:
        if s["start_s"] > 0:
            ax.axvline(s["start_s"], color="white", lw=1, ls=":")
        ax.text(s["start_s"] + 0.1, n_mels * 0.9, f"{s['concept']}={s['value']}", color="white", fontsize=7)
    ax2 = fig.add_axes((0.05, 0.1, 0.93, 0.35), sharex=ax)
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
    return _png(fig)


# ----------------------------------------------------------------------------- data classes
@dataclass
class ClipView:
    """One row of a unit view: a clip, its audio, its picture and its ground truth."""

    rank: int
    song_idx: int
    song_id: str
    start_s: float            # the clip (what the player plays and the picture shows), song seconds
    end_s: float
    peak_s: float
    activation: float         # the index value (max over the 3 s window)
    window_start_s: float
    audio: bytes = b""
    mime: str = "audio/ogg"
    image: bytes = b""       # JPEG: log-mel + activation over time + peak
    labels: dict = field(default_factory=dict)
    curve_max: float = 0.0


@dataclass
class HeatMap:
    """Mean activation of each unit over windows grouped by ground-truth concept value.

    Attributes
    ----------
    layer : str
    units : list[str]
    columns : list[str]          'concept=value'
    mean : np.ndarray [shape=(n_units, n_columns)]   mean activation over the windows with that value
    z : np.ndarray [shape=(n_units, n_columns)]      (mean - unit mean) / unit std
    counts : np.ndarray [shape=(n_columns,)]          windows per column
    """

    layer: str
    units: list[str]
    columns: list[str]
    mean: np.ndarray
    z: np.ndarray
    counts: np.ndarray


# ----------------------------------------------------------------------------- the explorer
class Explorer:
    """Read-only access to everything the page shows for one finished workspace.

    Parameters
    ----------
    workspace : str, Path or Workspace
        Needs the ``index`` stage (and so a trained model and features).
    model : AudioCNN, optional
        Use this model instead of loading ``model.pt``.
    """

    def __init__(self, workspace, model=None):
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        ws.require("index")
        self.ws = ws
        self.index = UnitIndex(ws)
        if model is None:
            from .train import load_model
            model, _ = load_model(ws)
        self.model = model.eval()
        self.store = self.index.store
        self.cfg = self.store.cfg
        self.hop_s = self.cfg.hop_length / self.cfg.sr
        self.songs = ws.songs()
        self.song_ids = [s["song_id"] for s in self.songs]
        self.labels = ws.labels()
        self._segments: dict[str, list[dict]] = {}
        for s in ws.segments():
            self._segments.setdefault(s["song_id"], []).append(s)
        self.dissection = load_dissection(ws)
        self._window_concepts: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------- units
    @property
    def layers(self) -> dict[str, int]:
        return self.index.layers

    def parse(self, unit: str | Unit) -> Unit:
        return unit if isinstance(unit, Unit) else parse_unit(unit, self.index.layers)

    def unit_labels(self, unit: str | Unit) -> list[dict]:
        """Dissection labels of a unit, best first (empty without ``dissection.json``)."""
        return self.dissection.get(str(self.parse(unit)), [])

    def unit_table(self, layer: str | None = None, sort: str = "strength", query: str = "",
                   descending: bool = True) -> list[dict]:
        """Units of a layer (or all) with their statistics and best label, filtered and sorted.

        Parameters
        ----------
        sort : str
            'strength' (mean of the top activations), 'selectivity' ((strength - mean) / std), 'sparsity'
            (fraction of windows with activation <= 0), 'label' (score of the best dissection label) or 'unit'.
        query : str
            Keep units whose name or labels match loosely (see :func:`text_matches`), e.g. 'distorted guitar'.
        """
        if sort not in SORT_KEYS:
            raise ParameterError(f"sort key {sort!r} is not one of {', '.join(SORT_KEYS)}")
        if layer is not None and layer not in self.index.layers:
            raise ParameterError(f"no layer {layer!r}; layers are {', '.join(self.index.layers)}")
        rows = []
        for r in self.index.table(layer):
            labs = self.dissection.get(r["unit"], [])
            r["label"] = labs[0]["concept"] if labs else ""
            r["label_score"] = float(labs[0].get("score", np.nan)) if labs else float("nan")
            r["labels"] = ", ".join(f"{x['concept']} ({x.get('score', float('nan')):.2f})" for x in labs[:3])
            if query and not text_matches(query, [r["unit"]] + [x["concept"] for x in labs]):
                continue
            rows.append(r)
        if sort == "unit":
            return rows                                   # the network's order (layer, then index)
        key = "label_score" if sort == "label" else sort

        def k(r):
            v = r[key]
            return -np.inf if not np.isfinite(v) else v
        rows.sort(key=k, reverse=descending)
        return rows

    # ------------------------------------------------------------- clips
    def song_duration(self, song_idx: int) -> float:
        d = self.songs[song_idx].get("duration")
        return float(d) if d else self.store.n_frames(song_idx) * self.hop_s

    def song_path(self, song_idx: int):
        return self.ws.resolve_audio(self.songs[song_idx]["path"])

    def clip_audio(self, song_idx: int, start_s: float, end_s: float, fmt: str = "ogg") -> _clips.Clip:
        """Encoded audio of a span of a song, read from the original file."""
        return _clips.cut_and_encode(self.song_path(song_idx), start_s, end_s - start_s, fmt=fmt)

    def logmel_span(self, song_idx: int, start_s: float, end_s: float) -> tuple[np.ndarray, float]:
        """Stored log-mel frames of a span [shape=(n_mels, t)] and the time of the first frame."""
        n = self.store.n_frames(song_idx)
        f0 = int(np.clip(np.floor(start_s / self.hop_s + 1e-6), 0, max(n - 1, 0)))
        f1 = int(np.clip(np.ceil(end_s / self.hop_s - 1e-6), f0 + 1, n))
        S = np.asarray(self.store.song(song_idx)[f0:f1], dtype=np.float32).T
        return S, f0 * self.hop_s

    def activation_curve(self, unit: str | Unit, song_idx: int, start_s: float, end_s: float,
                         context_s: float = 1.0, dense_hop_frames: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """A unit's activation over time inside ``[start_s, end_s]`` of a song.

        Conv units: the span's log-mel (plus ``context_s`` on each side, so the edges see real input) goes
        through the model; the layer's time axis is upsampled to frames with ``model.frame_stride``.
        Dense and output units have no time axis: their value for 3 s windows centred every
        ``dense_hop_frames`` frames.

        Returns
        -------
        times : np.ndarray [shape=(m,)]   song seconds
        values : np.ndarray [shape=(m,)]
        """
        return self.activation_curves(unit, [(song_idx, start_s, end_s)], context_s, dense_hop_frames)[0]

    @torch.no_grad()
    def activation_curves(self, unit: str | Unit, spans: list[tuple[int, float, float]], context_s: float = 1.0,
                          dense_hop_frames: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`activation_curve` for several (song_idx, start_s, end_s) spans, batched through the model."""
        u = self.parse(unit)
        W = self.cfg.window_frames
        conv = u.layer in self.model.conv_names
        inputs, metas = [], []
        for song_idx, start_s, end_s in spans:
            n = self.store.n_frames(song_idx)
            song = self.store.song(song_idx)
            if conv:
                f0 = int(max(0, np.floor((start_s - context_s) / self.hop_s)))
                f1 = int(min(n, np.ceil((end_s + context_s) / self.hop_s)))
                if f1 - f0 < 8:
                    inputs.append(None), metas.append(None)
                    continue
                inputs.append(np.asarray(song[f0:f1], dtype=np.float32).T)
                metas.append((f0, start_s, end_s))
            else:
                if n < W:
                    inputs.append(None), metas.append(None)
                    continue
                centres = np.arange(start_s / self.hop_s, end_s / self.hop_s + 1e-6, dense_hop_frames)
                starts = np.clip(np.round(centres - W / 2).astype(np.int64), 0, n - W)
                inputs.append(np.stack([np.asarray(song[s:s + W], dtype=np.float32).T for s in starts]))
                metas.append((centres, start_s, end_s))
        values: list = [None] * len(spans)
        if conv:
            by_len: dict[int, list[int]] = {}
            for i, x in enumerate(inputs):
                if x is not None:
                    by_len.setdefault(x.shape[1], []).append(i)
            stride = self.model.frame_stride(u.layer)
            for L, ids in by_len.items():
                acts, _ = Recorder(self.model, [u.layer]).record(torch.from_numpy(np.stack([inputs[i] for i in ids])))
                a = acts[u.layer][:, u.index].float().numpy()          # (b, T_l)
                for j, i in enumerate(ids):
                    values[i] = np.repeat(a[j], stride)[:L]
        else:
            ids = [i for i, x in enumerate(inputs) if x is not None]
            if ids:
                x = np.concatenate([inputs[i] for i in ids])
                acts, _ = Recorder(self.model, [u.layer]).record(torch.from_numpy(x))
                a = acts[u.layer][:, u.index].float().numpy()
                o = 0
                for i in ids:
                    values[i] = a[o:o + len(inputs[i])]
                    o += len(inputs[i])
        out = []
        for v, m in zip(values, metas):
            if m is None:
                out.append((np.zeros(0), np.zeros(0)))
                continue
            times = (m[0] + np.arange(len(v))) * self.hop_s if conv else m[0] * self.hop_s
            keep = (times >= m[1] - self.hop_s) & (times <= m[2] + self.hop_s)
            out.append((times[keep], v[keep]))
        return out

    def clip_rows(self, unit: str | Unit, n: int = 10, bottom: bool = False,
                  clip_s: float | None = None) -> list[ClipView]:
        """The unit's top (or least) clips, one per song, each centred on the unit's peak (no audio yet)."""
        u = self.parse(unit)
        if not 1 <= int(n) <= self.index.k:
            raise ParameterError(f"n must be between 1 and {self.index.k} (clips kept per unit), got {n!r}")
        clip_s = clip_s or self.cfg.window_s
        out = []
        for r, t in enumerate(self.index.top(u, n=int(n), bottom=bottom), start=1):
            start, end = _clips.clip_span(t["peak_s"], self.song_duration(t["song_idx"]), clip_s)
            sid = t["song_id"]
            out.append(ClipView(rank=r, song_idx=t["song_idx"], song_id=sid, start_s=start, end_s=end,
                                peak_s=t["peak_s"], activation=t["activation"], window_start_s=t["start_s"],
                                labels=clip_labels(self.labels.get(sid, {}), self._segments.get(sid, []),
                                                   start, end)))
        return out

    def clip_picture(self, unit: str | Unit, row: ClipView, scale: float | None = None,
                     curve: tuple[np.ndarray, np.ndarray] | None = None) -> bytes:
        """JPEG: the clip's log-mel with the unit's activation over time and the peak (see :func:`render_clip`)."""
        u = self.parse(unit)
        if scale is None:
            scale = max(self.index.stats(u)["max"], 1e-6)
        S, t0 = self.logmel_span(row.song_idx, row.start_s, row.end_s)
        times, values = curve if curve is not None else self.activation_curve(u, row.song_idx, row.start_s,
                                                                                row.end_s)
        row.curve_max = float(values.max()) if len(values) else 0.0
        return render_clip(S, t0, self.hop_s, times, values, row.peak_s, scale)

    def unit_view(self, unit: str | Unit, n: int = 10, bottom: bool = False, fmt: str = "ogg",
                  audio: bool = True, pictures: bool = True) -> list[ClipView]:
        """Everything a unit view shows for its top (or least) ``n`` clips: encoded audio, picture, labels."""
        u = self.parse(unit)
        rows = self.clip_rows(u, n, bottom)
        scale = max(self.index.stats(u)["max"], 1e-6)
        curves = self.activation_curves(u, [(r.song_idx, r.start_s, r.end_s) for r in rows]) if pictures else []
        for i, row in enumerate(rows):
            if audio:
                c = self.clip_audio(row.song_idx, row.start_s, row.end_s, fmt)
                row.audio, row.mime = c.data, c.mime
            if pictures:
                row.image = self.clip_picture(u, row, scale, curves[i])
        return rows

    def unit_stats(self, unit: str | Unit) -> dict:
        """Statistics of a unit over all windows (mean, std, sparsity, min, max, strength, selectivity, hist)."""
        return self.index.stats(self.parse(unit))

    # ------------------------------------------------------------- concepts
    def window_concepts(self) -> dict[str, np.ndarray]:
        """Ground-truth value of every concept for every window [shape=(n_windows,), object, None = unknown];
        time-varying concepts (segments) take the value covering most of the window."""
        if self._window_concepts is not None:
            return self._window_concepts
        W = self.store.windows
        concepts = sorted({c for d in self.labels.values() for c in d}
                          | {s["concept"] for v in self._segments.values() for s in v})
        out = {c: np.full(len(W), None, dtype=object) for c in concepts}
        win_s = self.cfg.window_frames * self.hop_s
        for w, (s, f) in enumerate(W):
            sid = self.song_ids[s]
            lab = self.labels.get(sid, {})
            for c, v in lab.items():
                out[c][w] = v
            segs = self._segments.get(sid)
            if segs:
                t0 = f * self.hop_s
                by_c: dict[str, list[dict]] = {}
                for seg in segs:
                    by_c.setdefault(seg["concept"], []).append(seg)
                for c, ss in by_c.items():
                    v = concept_at(ss, t0, t0 + win_s)
                    if v is not None:
                        out[c][w] = v
        self._window_concepts = out
        return out

    def heatmap(self, layer: str, min_windows: int = 5) -> HeatMap:
        """Unit-by-concept heat map of a layer from ``UnitIndex.acts`` and the ground truth.

        Raises
        ------
        WorkspaceError
            The workspace has no ground-truth labels.
        """
        if layer not in self.index.layers:
            raise ParameterError(f"no layer {layer!r}; layers are {', '.join(self.index.layers)}")
        wc = self.window_concepts()
        if not wc:
            raise WorkspaceError(f"workspace '{self.ws.path}' has no ground-truth labels "
                                 f"(ingest with --labels/--segments to get a concept heat map)")
        lo = self.index.column(f"{layer}:0")
        A = np.asarray(self.index.acts[:, lo:lo + self.index.layers[layer]], dtype=np.float32)  # (nW, U)
        mu, sd = A.mean(0), A.std(0)
        cols, means, counts = [], [], []
        for c, vals in wc.items():
            for v in sorted({x for x in vals if x is not None}, key=str):
                m = vals == v
                if m.sum() < min_windows:
                    continue
                cols.append(f"{c}={v}")
                means.append(A[m].mean(0))
                counts.append(int(m.sum()))
        M = np.stack(means, 1) if means else np.zeros((A.shape[1], 0), np.float32)
        Z = (M - mu[:, None]) / np.maximum(sd[:, None], 1e-6)
        return HeatMap(layer, self.index.units(layer), cols, M, Z, np.array(counts))

    # ------------------------------------------------------------- songs
    def song_view(self, song_idx: int, layer: str, n_units: int = 5, dense_hop_frames: int = 16) -> dict:
        """A song's log-mel, its most active units of ``layer`` and their activation over time.

        Units are ranked by their highest per-window activation in this song, in standard deviations above the
        unit's catalogue mean.

        Returns
        -------
        dict with S [shape=(n_mels, t)], units (list of (unit, z)), curves (list of (unit, times, values,
        scale)), labels, segments, problem (None, or why the song has no activations: then no units)
        """
        if not 0 <= int(song_idx) < len(self.songs):
            raise ParameterError(f"song index {song_idx!r} out of range 0..{len(self.songs) - 1}")
        if layer not in self.index.layers:
            raise ParameterError(f"no layer {layer!r}; layers are {', '.join(self.index.layers)}")
        song_idx = int(song_idx)
        sid = self.song_ids[song_idx]
        problem = self.song_problem(song_idx)
        if problem is not None:                     # no windows: no unit is "most active" in it
            return {"song_idx": song_idx, "song_id": sid, "S": np.zeros((self.store.cfg.n_mels, 0), np.float32),
                    "duration": 0.0, "units": [], "curves": [], "labels": self.labels.get(sid, {}),
                    "segments": self._segments.get(sid, []), "problem": problem}
        S = np.asarray(self.store.song(song_idx), dtype=np.float32).T
        lo = self.index.column(f"{layer}:0")
        nU = self.index.layers[layer]
        A = self.index.song_activations(song_idx)[:, lo:lo + nU]
        d = self.index.data
        z = (A.max(0) - d["mean"][lo:lo + nU]) / np.maximum(d["std"][lo:lo + nU], 1e-6) if len(A) else np.zeros(nU)
        top = np.argsort(-z, kind="stable")[:n_units]
        units = [(f"{layer}:{i}", float(z[i])) for i in top]
        dur = S.shape[1] * self.hop_s
        curves = []
        with torch.no_grad():
            if layer in self.model.conv_names and S.shape[1] >= 8:
                acts, _ = Recorder(self.model, [layer]).record(torch.from_numpy(S[None]))
                a = acts[layer][0].float().numpy()
                stride = self.model.frame_stride(layer)
                for i in top:
                    v = np.repeat(a[i], stride)[:S.shape[1]]
                    curves.append((f"{layer}:{i}", np.arange(len(v)) * self.hop_s, v, float(d["vmax"][lo + i])))
            else:
                for i in top:
                    t, v = self.activation_curve(f"{layer}:{i}", song_idx, 0.0, dur, dense_hop_frames=dense_hop_frames)
                    curves.append((f"{layer}:{i}", t, v, float(d["vmax"][lo + i])))
        return {"song_idx": song_idx, "song_id": sid, "S": S, "duration": dur, "units": units, "curves": curves,
                "labels": self.labels.get(sid, {}), "segments": self._segments.get(sid, []), "problem": None}

    def song_problem(self, song_idx: int) -> str | None:
        """Why a song has no activations (it failed featurize, or is shorter than a window), else None."""
        s = self.songs[int(song_idx)]
        if s.get("status") not in (None, "ok"):
            return f"song '{s['song_id']}' was not featurized: {s.get('reason') or s.get('status')}"
        if len(self.store.song_windows(int(song_idx))) == 0:
            return f"song '{s['song_id']}' has no {self.cfg.window_s:g} s window in the features"
        return None

    def song_picture(self, view: dict) -> bytes:
        return render_song(view["S"], self.hop_s, view["curves"], view["segments"])

    def song_audio(self, song_idx: int, fmt: str = "ogg", max_s: float = 600.0) -> _clips.Clip:
        """The whole song (at most ``max_s`` seconds), encoded."""
        return _clips.cut_and_encode(self.song_path(song_idx), 0.0, min(self.song_duration(song_idx), max_s),
                                     fmt=fmt)

    def find_songs(self, query: str = "", limit: int = 50) -> list[int]:
        """Song indices whose id or labels match ``query`` loosely."""
        out = []
        for i, sid in enumerate(self.song_ids):
            texts = [sid] + [f"{c}={v}" for c, v in self.labels.get(sid, {}).items()]
            if text_matches(query, texts):
                out.append(i)
                if len(out) >= limit:
                    break
        return out


def workspace_state(path: str | os.PathLike) -> tuple[str, str]:
    """('ready' | 'missing' | 'incomplete', message) for the page's empty state."""
    ws = Workspace(path)
    if not ws.exists():
        return "missing", (f"No workspace at `{ws.path}`. Build the demo with `audiovis demo`, or your own with "
                           f"`audiovis run --workspace {ws.path} --audio AUDIO_DIR --plays PLAYS.tsv`.")
    try:
        ws.require("index")
    except WorkspaceError as e:
        return "incomplete", (f"The workspace `{ws.path}` is not finished ({e}). Finish it with "
                              f"`audiovis run --workspace {ws.path} --audio AUDIO_DIR --plays PLAYS.tsv` "
                              f"(finished stages are reused).")
    finally:
        ws.close()
    return "ready", ""
