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

    A unit's list holds its own best concepts and every concept it is among the best units of (the file keeps
    both: a flute detector whose own best concept is another one still carries ``lead=flute``). Returns an
    empty dict when the file is missing or unreadable (labels are optional).
    """
    d = read_json(ws.index_dir / DISSECTION_FILE, {})
    units = d.get("units", {}) if isinstance(d, dict) else {}
    out = {str(u): [x for x in v if isinstance(x, dict) and "concept" in x]
           for u, v in (units.items() if isinstance(units, dict) else ()) if isinstance(v, list)}
    concepts = d.get("concepts", {}) if isinstance(d, dict) else {}
    thr = d.get("threshold", 0.9) if isinstance(d, dict) else 0.9
    for c, lst in (concepts.items() if isinstance(concepts, dict) else ()):
        for e in lst if isinstance(lst, list) else ():
            if not isinstance(e, dict) or "unit" not in e:
                continue
            have = out.setdefault(str(e["unit"]), [])
            if all(x["concept"] != c for x in have):
                score = float(e.get("score", float("nan")))
                have.append({"concept": c, "score": score, "detector": bool(score >= thr), "iou": e.get("iou")})
    for v in out.values():
        v.sort(key=_by_score)
    return out


def _by_score(label: dict) -> float:
    s = float(label.get("score", float("nan")))
    return -s if s == s else 1.0


def build_labels(workspace, progress: bool = True) -> dict:
    """The labels every build gets (the pipeline's ``label`` stage): a network dissection and explanations
    against the workspace's ground truth only, without the librosa pass (seconds, where the full
    ``audiovis dissect`` / ``audiovis explain`` decode every song).

    Does nothing without ground truth (``--labels`` / ``--segments``), and keeps a dissection or explanations
    newer than the index (the full ones, once run, stay). Returns what it did:
    ``{"dissection": bool, "explanations": bool, "reason": str}``.
    """
    from .explain import FILE as EXPLANATIONS_FILE
    from .explain import explain
    from .visualise.dissect import dissect
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.require("index")
    if not ws.labels() and not ws.segments():
        return {"dissection": False, "explanations": False,
                "reason": "no ground truth (ingest with --labels/--segments); `audiovis dissect` labels units "
                          "with librosa descriptors instead"}
    built = (ws.index_dir / "units.npz").stat().st_mtime_ns
    out = {"reason": ""}
    for key, name, fn in (("dissection", DISSECTION_FILE, dissect), ("explanations", EXPLANATIONS_FILE, explain)):
        p = ws.index_dir / name
        out[key] = not (p.exists() and p.stat().st_mtime_ns >= built)
        if out[key]:
            fn(ws, descriptors=False, progress=progress)
    return out


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", str(text).lower()) if t]


def _token_match(q: str, t: str) -> bool:
    """Loose word match: equal, one a prefix of the other, or a shared stem ('distorted' ~ 'distortion')."""
    if any(c.isdigit() for c in q):                 # a number or an id ("conv1", "17"): exactly that
        return q == t
    if any(c.isdigit() for c in t):                 # "conv" finds conv1..conv3, "conv3" only itself
        return t.startswith(q)
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


def match_quality(query: str, text: str) -> float:
    """How well ``text`` answers ``query``, in [0, 1] (1.01 for the text itself): the share of the query's words
    it matches (an equal word counts 1, a loose match as in :func:`text_matches` 0.8), times 0.9 + 0.1 x the
    share of the text's words that were asked for (a concept's name before ``=`` is not counted there, so
    ``lead=flute`` answers "flute" as well as a tag named ``flute``).

    >>> match_quality("distorted guitar", "lead=distortion_guitar") > match_quality("distorted guitar", "guitar")
    True
    """
    q = _tokens(query)
    if not q:
        return 0.0
    if str(text).strip().lower() == str(query).strip().lower():
        return 1.01
    words = _tokens(text)
    if not words:
        return 0.0
    value = _tokens(str(text).split("=", 1)[1]) if "=" in str(text) else words
    recall, used = 0.0, set()
    for qt in q:
        best = 0.0
        for w in words:
            m = 1.0 if qt == w else 0.8 if _token_match(qt, w) else 0.0
            if m > best:
                best = m
            if m:
                used.add(w)
        recall += best
    precision = sum(w in used for w in value) / len(value) if value else 1.0
    return recall / len(q) * (0.9 + 0.1 * precision)


def unit_match(query: str, names: list[str], labels: list[dict], explanation: str = "",
               explanation_score: float | None = None) -> tuple[float, float]:
    """How well a unit answers a search: ``(quality, evidence)``, best over its texts, 0 quality when nothing
    matches. Sort units by this tuple, descending.

    Parameters
    ----------
    names : list of str   the unit's id, its name (``tags:rock``'s "rock") and notes: evidence 1
    labels : list of dict   its dissection labels (concept, score): evidence is the label's score (AUROC)
    explanation : str   its explanation ("groove=ska, not lead=flute, bright"): each positive term counts, at
        0.9 of its quality (a label names a concept, an explanation predicts from it), with the explanation's
        simulation score as evidence
    """
    best = (0.0, 0.0)
    for t in names:
        best = max(best, (match_quality(query, t), 1.0))
    for x in labels:
        sc = float(x.get("score", float("nan")))
        best = max(best, (match_quality(query, x["concept"]), sc if sc == sc else 0.0))
    for term in str(explanation).split(","):
        term = term.strip()
        if term and not term.startswith("not "):
            es = explanation_score if explanation_score is not None and explanation_score == explanation_score else 0.0
            best = max(best, (0.9 * match_quality(query, term), float(es)))
    return (round(best[0], 4), best[1]) if best[0] > 0 else (0.0, 0.0)


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


