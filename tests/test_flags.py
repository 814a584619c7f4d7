"""audiovis.flags: dead units and edge artifacts, on a hand-made index."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from audiovis.flags import EDGE_S, unit_flags


def _index(vmax, std, top_w, top_p):
    """A minimal stand-in for UnitIndex: 2 songs of 10 windows each, window i of a song starts at i s."""
    windows = np.array([(s, i * 10) for s in range(2) for i in range(10)])        # (song, first frame)
    store = SimpleNamespace(windows=windows, cfg=SimpleNamespace(hop_length=100, sr=1000))  # 10 frames = 1 s
    data = {"vmax": np.array(vmax, float), "std": np.array(std, float), "top_w": np.array(top_w),
            "top_p": np.array(top_p, float)}
    return SimpleNamespace(data=data, store=store, layers={"a": len(vmax)}, offset={"a": 0})


def test_dead_edge_and_live_units():
    durations = np.array([12.0, 12.0])
    ix = _index(vmax=[0.0, 2.0, 2.0, 2.0, 3.0, 0.01],
                std=[0.0, 0.5, 0.5, 0.5, 0.0, 0.001],
                top_w=[[0, 1], [0, 19], [0, 5], [0, -1], [3, 4], [2, 3]],
                # unit 1: peaks at 0.1 s (song 0) and 19 + 2.8 = 21.8 s... of song 1 its window 9 starts at 9 s
                top_p=[[0.0, 0.0], [0.1, 2.8], [0.1, 1.0], [0.2, 0.0], [1.0, 1.0], [1.0, 1.0]])
    f = unit_flags(ix, durations)
    # unit 1: 0.1 s and 9 + 2.8 = 11.8 s of a 12 s song: both within 0.5 s of an edge
    # unit 2: its second peak is at 6 s: live; unit 3: its only clip peaks at 0.2 s: edge
    # unit 4 is constant, unit 5 varies 500 times less than the layer's others: both dead
    assert list(f) == ["dead", "edge", "", "edge", "dead", "dead"]
    assert list(unit_flags(ix, durations, edge_s=0.05)) == ["dead", "", "", "", "dead", "dead"]
    assert EDGE_S == 0.5
