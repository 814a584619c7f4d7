"""Ground truth and search for the page: unit labels written by dissection, loose word matching, and the
concepts of a clip (song-level labels with time-varying segments over the clip's span).

Examples
--------
>>> text_matches("distorted guitar", ["lead=distortion_guitar"])
True
>>> clip_labels({"groove": "rock"}, [], 1.0, 4.0)
{'groove': 'rock'}
"""
from __future__ import annotations

import re

from .workspace import Workspace, read_json

DISSECTION_FILE = "dissection.json"


def load_dissection(ws: Workspace) -> dict[str, list[dict]]:
    """Unit labels from ``WS/index/dissection.json``: {unit: [{concept, score, detector}, ... best first]}.

    Returns an empty dict when the file is missing or unreadable (labels are optional).
    """
    d = read_json(ws.index_dir / DISSECTION_FILE, {})
    units = d.get("units", {}) if isinstance(d, dict) else {}
    return {str(u): [x for x in v if isinstance(x, dict) and "concept" in x]
            for u, v in (units.items() if isinstance(units, dict) else ()) if isinstance(v, list)}


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


