"""audiovis.playlist: a unit's clips as one track."""
from __future__ import annotations

import io

import pytest
import soundfile as sf

from audiovis.explore import Explorer
from audiovis.playlist import GAP_S, playlist


def test_playlist_joins_the_clips_in_rank_order(built_ws):
    ex = Explorer(built_ws[0])
    p = playlist(ex, "conv2:1", n=3)
    y, sr = sf.read(io.BytesIO(p.data))
    lengths = [r.end_s - r.start_s for r in p.rows]
    assert p.mime == "audio/ogg" and [r.rank for r in p.rows] == [1, 2, 3]
    assert len(y) / sr == pytest.approx(sum(lengths) + 2 * GAP_S, abs=0.01)
    assert p.starts[0] == 0.0 and p.starts[1] == pytest.approx(lengths[0] + GAP_S, abs=1e-3)
    gap = y[int((lengths[0] + 0.05) * sr):int((lengths[0] + GAP_S - 0.05) * sr)]
    assert abs(gap).max() < 1e-3                                        # silence between clips
