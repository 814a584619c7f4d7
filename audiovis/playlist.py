"""A unit's clips in sequence: one track to listen to everything a unit responds to without clicking each clip.

Each clip is cut from its original file (:func:`audiovis.clips.cut`, faded at both ends), the clips are joined
with :data:`GAP_S` seconds of silence between them and encoded once; nothing is normalised, so the clips keep the
levels they have one by one.

Examples
--------
>>> track = playlist(ex, "dense1:129", n=10)      # Playlist: data (OGG bytes), mime, starts (s), rows
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clips import SR, encode, fade, mime_type
from .clips import cut as cut_clip

GAP_S = 0.4


@dataclass
class Playlist:
    """The encoded track, and where each clip starts in it (s), with the clip rows it was made of."""

    data: bytes
    mime: str
    starts: list[float]
    rows: list


def playlist(ex, unit: str, n: int = 10, bottom: bool = False, gap_s: float = GAP_S, fmt: str = "ogg",
             sr: int = SR) -> Playlist:
    """The unit's top (or least) ``n`` clips of an :class:`~audiovis.explore.Explorer`, in rank order, as one
    track with ``gap_s`` seconds of silence between clips."""
    rows = ex.clip_rows(unit, n, bottom)
    parts, starts, t = [], [], 0.0
    gap = np.zeros(int(round(gap_s * sr)), np.float32)
    for i, r in enumerate(rows):
        y = fade(cut_clip(ex.song_path(r.song_idx), r.start_s, r.end_s - r.start_s, sr), sr)
        starts.append(t)
        parts.append(y)
        t += len(y) / sr
        if i < len(rows) - 1:
            parts.append(gap)
            t += len(gap) / sr
    y = np.concatenate(parts) if parts else np.zeros(int(sr * 0.1), np.float32)
    return Playlist(encode(y, sr, fmt), mime_type(fmt), starts, rows)
