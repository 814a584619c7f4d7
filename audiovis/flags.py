"""Units that would mislead a listener: dead units and edge artifacts.

* **dead**: the unit is constant over the catalogue (a ReLU that never fires), or nearly: its standard
  deviation over all windows is under :data:`DEAD_REL` of its layer's median; its "top clips" are arbitrary
  windows at one value.
* **edge**: every one of its top clips peaks within :data:`EDGE_S` seconds of its song's start or end; such a
  unit answers the padding or the song's edge, not the music, and "centred on the peak" cannot hold there.

The page hides flagged units from its default rankings, its default unit and a layer's "top concept" column,
and shows them, marked, when asked to.

Examples
--------
>>> flags = unit_flags(index, durations)          # [shape=(n_units,)] '', 'dead' or 'edge' per index column
"""
from __future__ import annotations

import numpy as np

DEAD_EPS = 1e-6       # a standard deviation at or below this: constant
DEAD_REL = 0.01       # ... or below this share of the median standard deviation of its layer's live units
EDGE_S = 0.5          # seconds from a song's start or end
FLAG_TEXT = {
    "dead": "dead: it (almost) never changes over the catalogue, so its clips are arbitrary",
    "edge": f"edge artifact: all its top clips peak within {EDGE_S:g} s of a song's start or end",
}


def unit_flags(index, durations: np.ndarray, edge_s: float = EDGE_S) -> np.ndarray:
    """The flag of every unit of a :class:`~audiovis.index.UnitIndex`, in column order.

    Parameters
    ----------
    index : UnitIndex
    durations : np.ndarray [shape=(n_songs,)]   each song's length in seconds
    edge_s : float   a peak this close to a song's start or end counts as at the edge

    Returns
    -------
    flags : np.ndarray [shape=(n_units,), dtype=object]   '' (fine), 'dead' or 'edge'
    """
    d = index.data
    std = np.asarray(d["std"], np.float64)
    dead = ~(std > DEAD_EPS)
    for name, n in index.layers.items():
        o = index.offset[name]
        live = std[o:o + n][~dead[o:o + n]]
        if len(live):
            dead[o:o + n] |= std[o:o + n] < DEAD_REL * np.median(live)
    w = np.asarray(d["top_w"])
    ok = w >= 0
    win = np.asarray(index.store.windows)[np.where(ok, w, 0)]          # (n_units, k, 2): song, first frame
    cfg = index.store.cfg
    peak = win[..., 1] * (cfg.hop_length / cfg.sr) + np.asarray(d["top_p"], np.float64)
    dur = np.asarray(durations, np.float64)[win[..., 0]]
    at_edge = (peak < edge_s) | (peak > dur - edge_s)
    edge = ok.any(1) & np.all(at_edge | ~ok, 1)
    out = np.full(len(std), "", dtype=object)
    out[edge] = "edge"
    out[dead] = "dead"
    return out
