"""One clip through every layer."""
from __future__ import annotations

from test_attribution import band_net, burst_clip

from audiovis.config import FeatureConfig
from audiovis.interpret.layerwalk import layer_walk
from audiovis.interpret.network import window_from_audio
from audiovis.interpret.render import layer_png


def test_layer_walk_shows_every_layer_and_its_top_units():
    net = band_net()
    w = window_from_audio(burst_clip(), FeatureConfig(), 0.0, "burst")
    steps = layer_walk(net, w, top=2)
    assert [s.layer for s in steps] == ["energy", "summary"]
    energy, summary = steps
    assert energy.A.shape[0] == 2 and energy.A.shape[1] > 10 and summary.A.shape == (2, 1)
    assert [u for u, _ in summary.top] == ["summary:1", "summary:0"]       # the high band holds the burst
    assert summary.top[0][1] > 0 and summary.top[1][1] == 0
    t = (energy.A[1].argmax() + 0.5) * w.fcfg.window_s / energy.A.shape[1]
    assert 1.0 <= t <= 1.6                                                  # and it peaks inside the burst
    assert layer_png(energy)[:8] == b"\x89PNG\r\n\x1a\n"
