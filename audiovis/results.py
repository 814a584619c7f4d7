"""Cold-start results written out, for programs and for people: embeddings as ``.json`` / ``.csv`` / ``.npy``
(``audiovis embed``), a recommendation as JSON or as a plain-text table (``audiovis recommend``)."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from .errors import ParameterError
from .workspace import atomic_path, save_npy


def write_embeddings(embs: list, path: str | os.PathLike | None, per_window: bool = False) -> str | None:
    """Write embeddings (:class:`audiovis.coldstart.Embedding`) by extension: ``.json``, ``.csv`` or ``.npy``;
    ``None`` returns JSON text.

    ``.npy`` holds [shape=(n_songs, n_factors)], or with ``per_window`` [shape=(total_windows, 2 + n_factors)]
    whose columns are (song number in the input order, window start in s, factors...).
    CSV: one row per song (``file, song_id, duration_s, n_windows, f0..``), or per window
    (``file, song_id, window, start_s, f0..``).
    """
    if path is None:
        return json.dumps([e.to_dict(per_window) for e in embs], indent=2)
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".json":
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps([e.to_dict(per_window) for e in embs], indent=2))
    elif ext == ".npy":
        if per_window:
            rows = [np.column_stack([np.full(len(e.window_starts), i), e.window_starts, e.window_factors])
                    for i, e in enumerate(embs)]
            arr = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 2), np.float32)
        else:
            arr = np.stack([e.factors for e in embs]).astype(np.float32) if embs else np.zeros((0, 0), np.float32)
        save_npy(path, arr)
    elif ext == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        f = len(embs[0].factors) if embs else 0
        fcols = [f"f{i}" for i in range(f)]
        if per_window:
            w.writerow(["file", "song_id", "window", "start_s", *fcols])
            for e in embs:
                for n, (s, y) in enumerate(zip(e.window_starts, e.window_factors)):
                    w.writerow([e.file, e.song_id, n, f"{s:.3f}", *[f"{v:.6g}" for v in y]])
        else:
            w.writerow(["file", "song_id", "duration_s", "n_windows", *fcols])
            for e in embs:
                w.writerow([e.file, e.song_id, f"{e.duration:.3f}", len(e.window_starts),
                            *[f"{v:.6g}" for v in e.factors]])
        with atomic_path(path, suffix=".csv") as tmp:
            tmp.write_text(buf.getvalue())
    else:
        raise ParameterError(f"output '{path}': unknown extension {ext!r}; use .json, .csv or .npy")
    return None


def format_recommendation(rec: dict) -> str:
    """A plain-text table of a recommendation, for people."""
    s = rec["song"]
    lines = [f"{s['file']}: {s['duration_s']:.1f} s, {s['n_windows']} windows", ""]
    srch = rec["search"]
    lines.append(f"Similar songs ({srch['metric']} on predicted factors, {srch['method']} search over "
                 f"{srch['catalogue']} songs)")
    has_labels = any("labels" in r for r in rec["similar"])
    concepts = sorted({c for r in rec["similar"] for c in r.get("labels", {})},
                      key=lambda c: (c not in ("groove", "lead", "tempo_class", "kind"), c))[:4] if has_labels else []
    lines.append(f"  {'rank':>4}  {'song_id':<16} {'score':>7}" + "".join(f"  {c:<14}" for c in concepts))
    for r in rec["similar"]:
        lines.append(f"  {r['rank']:>4}  {r['song_id']:<16} {r['score']:>7.3f}"
                     + "".join(f"  {r.get('labels', {}).get(c, '')!s:<14}" for c in concepts))
    lines += ["", "Likely listeners (x_u . y')", f"  {'rank':>4}  {'user_id':<16} {'score':>7}"]
    for r in rec["listeners"]:
        lines.append(f"  {r['rank']:>4}  {r['user_id']:<16} {r['score']:>7.3f}")
    lines += ["", "Most active units (peak activation as a z-score against the catalogue's windows)",
              f"  {'rank':>4}  {'unit':<12} {'z':>7} {'peak':>8} {'at (s)':>7}"]
    for r in rec["units"]:
        lines.append(f"  {r['rank']:>4}  {r['unit']:<12} {r['score']:>7.2f} {r['peak_activation']:>8.3f} "
                     f"{r['peak_s']:>7.2f}")
    if any("drivers" in r for r in rec["listeners"]):
        lines += ["", "Units that drove it towards each listener (score drop when ablated)"]
        lines += [f"  {r['user_id']:<16} " + ", ".join(f"{d['unit']} +{d['effect']:.3f}" for d in r["drivers"])
                  for r in rec["listeners"]]
    if rec.get("counterfactual"):
        from .counterfactual import format_counterfactual
        lines += ["", format_counterfactual(rec["counterfactual"])]
    return "\n".join(lines)


def recommendation_json(rec: dict) -> dict:
    """The JSON-serialisable part of a recommendation (no arrays)."""
    return {k: v for k, v in rec.items() if k != "embedding"}
