"""Deletion curves against random deletion on the known answer."""
from __future__ import annotations

import numpy as np
import pytest
from test_attribution import band_net, burst_clip

from audiovis.config import FeatureConfig
from audiovis.errors import ParameterError
from audiovis.interpret.attribution import attribute
from audiovis.interpret.faithfulness import deletion
from audiovis.interpret.network import window_from_audio
from audiovis.interpret.targets import unit_target


def test_ig_deletes_the_burst_first_and_beats_random():
    net = band_net()
    w = window_from_audio(burst_clip(seed=2), FeatureConfig(), 0.0, "burst")
    att = attribute(net, unit_target(net, "summary:1", w), w, "ig", steps=16)
    d = deletion(att, steps=10, n_random=2, net=net)
    assert d.curve[0] == pytest.approx(1.0, abs=1e-5) and d.curve[-1] == pytest.approx(0.0, abs=1e-5)
    assert d.curve[1] < 0.05                         # the top 10 % of cells hold the whole burst
    assert d.random[1] > 0.5                         # 10 % random cells do not
    assert d.better_than_random and d.area < 0.5 * d.random_area
    assert d.to_dict()["better_than_random"] is True and len(d.random_areas) == 2
    # an order that removes the burst last is worse than random
    bad = type(att)(-att.A, att.value, att.floor_value, "reversed", 1, att.target, w)
    assert not deletion(bad, steps=10, n_random=1, net=net).better_than_random
    with pytest.raises(ParameterError, match="deletion steps 0"):
        deletion(att, steps=0, net=net)
    assert np.all(np.diff(d.fractions) > 0)
