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

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from . import clips as _clips
from .activations import Recorder
from .adapters import WindowSource, adapter_curves, read_unit_notes, workspace_adapter
from .dictionary import feature_curves
from .errors import ParameterError, WorkspaceError
from .explain import load_explanations
from .features import mel_frequencies
from .flags import unit_flags
from .index import UnitIndex
from .labels import clip_labels, concept_at, load_dissection, text_matches, unit_match
from .pictures import render_clip, render_song, render_taggram
from .units import Unit, parse_unit
from .workspace import Workspace

SORT_KEYS = ("strength", "selectivity", "sparsity", "label", "score", "unit")


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
        self.store = self.index.store
        self.adapter = workspace_adapter(ws, indexed=True) if model is None else None   # one of your own
        self.model_name = self.adapter.name if self.adapter is not None else "audiovis CNN"   # set below for musicnn
        self.unit_notes = read_unit_notes(ws.index_dir)       # e.g. CREPE's pitch bins: "440.0 Hz (A4)"
        if self.adapter is not None:
            self.model, self.source = None, WindowSource(ws, self.store, self.adapter)
        else:
            if model is None:
                from .train import load_model
                model, _ = load_model(ws)
            self.model = model.eval()
            if getattr(model.cfg, "arch", "") == "musicnn":
                self.model_name = f"audiovis content model on musicnn {model.dataset.upper()}"
        self.cfg = self.store.cfg
        self.hop_s = self.cfg.hop_length / self.cfg.sr
        self.mel_hz = mel_frequencies(self.cfg.n_mels, self.cfg.sr, self.cfg.fmin, self.cfg.fmax)   # picture axes
        self.songs = ws.songs()
        self.song_ids = [s["song_id"] for s in self.songs]
        self.labels = ws.labels()
        self._segments: dict[str, list[dict]] = {}
        for s in ws.segments():
            self._segments.setdefault(s["song_id"], []).append(s)
        self.dissection = load_dissection(ws)
        self.explanations = load_explanations(ws)               # audiovis explain: {unit: {text, score}}
        self._window_concepts: dict[str, np.ndarray] | None = None
        self._flags: np.ndarray | None = None

    # ------------------------------------------------------------- units
    @property
    def layers(self) -> dict[str, int]:
        return self.index.layers

    def parse(self, unit: str | Unit) -> Unit:
        return unit if isinstance(unit, Unit) else parse_unit(unit, self.index.layers)

    def unit_labels(self, unit: str | Unit) -> list[dict]:
        """Dissection labels of a unit, best first (empty without ``dissection.json``)."""
        return self.dissection.get(str(self.parse(unit)), [])

    def unit_explanation(self, unit: str | Unit) -> dict | None:
        """The unit's explanation and simulation score (:mod:`audiovis.explain`), None without one."""
        return self.explanations.get(str(self.parse(unit)))

    def unit_flag(self, unit: str | Unit) -> str:
        """'' for a live unit, 'dead' or 'edge' for one that misleads (:mod:`audiovis.flags`)."""
        if self._flags is None:
            self._flags = unit_flags(self.index, np.array([self.song_duration(i) for i in range(len(self.songs))]))
        return str(self._flags[self.index.column(self.parse(unit))])

    def unit_table(self, layer: str | None = None, sort: str = "strength", query: str = "",
                   descending: bool = True, flagged: bool = False) -> list[dict]:
        """Units of a layer (or all) with their statistics, best label and flag, filtered and sorted.

        Parameters
        ----------
        sort : str   'strength' (mean of the top activations), 'selectivity' ((strength - mean) / std),
            'sparsity' (share of windows <= 0), 'label' (the best dissection label's score), 'score' (the
            explanation's simulation score, :mod:`audiovis.explain`) or 'unit'.
        query : str   keep the units whose id, name, labels or explanation match every word of it (or, when no
            unit does, some word), best match first (:func:`audiovis.labels.unit_match`: match quality, then
            the matching label's score), ``sort`` breaking ties: 'distorted guitar' finds the
            ``lead=distortion_guitar`` detectors first, 'rock' the tagger's ``tags:rock``.
        flagged : bool   keep dead and edge-artifact units (:mod:`audiovis.flags`); left out by default.
        """
        if sort not in SORT_KEYS:
            raise ParameterError(f"sort key {sort!r} is not one of {', '.join(SORT_KEYS)}")
        if layer is not None and layer not in self.index.layers:
            raise ParameterError(f"no layer {layer!r}; layers are {', '.join(self.index.layers)}")
        rows = []
        for r in self.index.table(layer):
            r["flag"] = self.unit_flag(r["unit"])
            if r["flag"] and not flagged:
                continue
            labs = self.dissection.get(r["unit"], [])
            r["label"] = labs[0]["concept"] if labs else ""
            r["label_score"] = float(labs[0].get("score", np.nan)) if labs else float("nan")
            r["labels"] = ", ".join(f"{x['concept']} ({x.get('score', float('nan')):.2f})" for x in labs[:3])
            r["note"] = self.unit_notes.get(r["unit"], "")
            e = self.explanations.get(r["unit"], {})
            r["explanation"], r["score"] = e.get("text", ""), float(e.get("score") or np.nan)
            if query:
                name = self.unit_label(r["unit"])
                tag = name[len(r["unit"]):].strip(" ()")             # a named unit's name: tags:0 is "rock"
                texts = [r["unit"], tag, f"{r['unit'].split(':')[0]}:{tag}" if tag else "", r["note"]]
                r["match"] = unit_match(query, texts, labs, r["explanation"], r["score"])
                if r["match"][0] <= 0:
                    continue
                r["full"] = text_matches(query, texts + [r["explanation"]] + [x["concept"] for x in labs])
            rows.append(r)
        if query and any(r["full"] for r in rows):      # every word matched somewhere: only those
            rows = [r for r in rows if r["full"]]
        if sort == "unit" and not query:
            return rows                                   # the network's order (layer, then index)
        key = "label_score" if sort == "label" else sort

        def k(r):
            v = r[key] if key != "unit" else 0.0
            v = -np.inf if not np.isfinite(v) else v
            return (*r["match"], v) if query else v
        rows.sort(key=k, reverse=descending)
        return rows

    def default_unit(self) -> str:
        """The unit a visitor meets first: live, and musically meaningful where the workspace can tell.

        The best ground-truth detector of the dissection (highest AUROC for a ``concept=value`` label), else the
        most selective named unit (a tagger's tag), else the most selective unit; never a dead or edge unit
        (unless every unit is flagged).
        """
        live = [u for u in self.index.units() if not self.unit_flag(u)] or self.index.units()
        best = max(((float(labs[0].get("score", 0.0)), u) for u in live
                    for labs in [[x for x in self.dissection.get(u, []) if "=" in x["concept"]]] if labs),
                   default=None)
        if best is not None and best[0] == best[0]:
            return best[1]
        sel = self.index.data["selectivity"]
        named = [u for u in live if u.split(":")[0] in self.index.unit_names]
        return max(named or live, key=lambda u: float(np.nan_to_num(sel[self.index.column(u)], nan=-np.inf)))

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
        if self.index.is_dictionary(u.layer):       # a dictionary feature: its layer's windows, encoded
            return feature_curves(self, u, spans, dense_hop_frames)
        if self.adapter is not None:                # a model of your own: from the audio, at its rate
            return [(r[0], r[1][0]) if r is not None else (np.zeros(0), np.zeros(0)) for r in
                    adapter_curves(self.adapter, self.source, u.layer, [u.index], spans, context_s)]
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
        """JPEG: the clip's log-mel with the unit's activation over time and the peak
        (:func:`audiovis.pictures.render_clip`)."""
        u = self.parse(unit)
        if scale is None:
            scale = max(self.index.stats(u)["max"], 1e-6)
        S, t0 = self.logmel_span(row.song_idx, row.start_s, row.end_s)
        times, values = curve if curve is not None else self.activation_curve(u, row.song_idx, row.start_s,
                                                                                row.end_s)
        row.curve_max = float(values.max()) if len(values) else 0.0
        return render_clip(S, t0, self.hop_s, times, values, row.peak_s, scale, freqs=self.mel_hz)

    def unit_view(self, unit: str | Unit, n: int = 10, bottom: bool = False, fmt: str = "ogg",
                  audio: bool = True, pictures: bool = True) -> list[ClipView]:
        """Everything a unit view shows for its top (or least) ``n`` clips: encoded audio, picture, labels."""
        u = self.parse(unit)
        rows = self.clip_rows(u, n, bottom)
        scale = max(self.index.stats(u)["max"], 1e-6)
        curves = self.activation_curves(u, [(r.song_idx, r.start_s, r.end_s) for r in rows],   # dense: ~8 a clip
                                        dense_hop_frames=max(8, self.cfg.window_frames // 8)) if pictures else []
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
            feature = self.index.is_dictionary(layer)
            if self.adapter is not None and not feature:   # one pass of the model of your own over the song
                r = adapter_curves(self.adapter, self.source, layer, list(top), [(song_idx, 0.0, dur)], 0.0)[0]
                for j, i in enumerate(top):
                    t, v = (r[0], r[1][j]) if r is not None else (np.zeros(0), np.zeros(0))
                    curves.append((self.unit_label(f"{layer}:{i}"), t, v, float(d["vmax"][lo + i])))
            elif not feature and layer in self.model.conv_names and S.shape[1] >= 8:
                acts, _ = Recorder(self.model, [layer]).record(torch.from_numpy(S[None]))
                a = acts[layer][0].float().numpy()
                stride = self.model.frame_stride(layer)
                for i in top:
                    v = np.repeat(a[i], stride)[:S.shape[1]]
                    curves.append((self.unit_label(f"{layer}:{i}"), np.arange(len(v)) * self.hop_s, v,
                                   float(d["vmax"][lo + i])))
            else:
                for i in top:
                    t, v = self.activation_curve(f"{layer}:{i}", song_idx, 0.0, dur, dense_hop_frames=dense_hop_frames)
                    curves.append((self.unit_label(f"{layer}:{i}"), t, v, float(d["vmax"][lo + i])))
        return {"song_idx": song_idx, "song_id": sid, "S": S, "duration": dur, "units": units, "curves": curves,
                "labels": self.labels.get(sid, {}), "segments": self._segments.get(sid, []), "problem": None}

    def taggram(self, song_idx: int, layer: str = "tags") -> dict | None:
        """A tagger's tags over a song (the index's per-window activations of its named ``layer``), or None when
        the model has no such layer.

        Returns
        -------
        dict with T [shape=(n_windows, n_tags)], starts (s) [shape=(n_windows,)], names, window_s
        """
        names = self.index.unit_names.get(layer)
        if names is None or layer not in self.index.layers or self.song_problem(song_idx) is not None:
            return None
        lo = self.index.column(f"{layer}:0")
        T = self.index.song_activations(int(song_idx))[:, lo:lo + len(names)]
        starts = self.store.windows[self.store.song_windows(int(song_idx)), 1] * self.hop_s
        return {"T": T, "starts": starts, "names": names, "window_s": self.cfg.window_frames * self.hop_s}

    def taggram_picture(self, tg: dict) -> bytes:
        """PNG of a :meth:`taggram` (:func:`audiovis.pictures.render_taggram`)."""
        return render_taggram(tg["T"], tg["starts"], tg["window_s"], tg["names"])

    def unit_label(self, unit: str) -> str:
        """``"tags:40 (funk)"`` for a named unit, the unit itself otherwise (legends and buttons)."""
        layer, _, i = unit.partition(":")
        names = self.index.unit_names.get(layer)
        return f"{unit} ({names[int(i)]})" if names and i.isdigit() and int(i) < len(names) else unit

    def song_problem(self, song_idx: int) -> str | None:
        """Why a song has no activations (it failed featurize, or is shorter than a window), else None."""
        s = self.songs[int(song_idx)]
        if s.get("status") not in (None, "ok"):
            return f"song '{s['song_id']}' was not featurized: {s.get('reason') or s.get('status')}"
        if len(self.store.song_windows(int(song_idx))) == 0:
            return f"song '{s['song_id']}' has no {self.cfg.window_s:g} s window in the features"
        return None

    def song_picture(self, view: dict) -> bytes:
        """PNG of a :meth:`song_view` (:func:`audiovis.pictures.render_song`)."""
        return render_song(view["S"], self.hop_s, view["curves"], view["segments"], freqs=self.mel_hz)

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
