"""Attribution on a known answer: a band detector (as in test_adapters) on a seeded clip with a tone burst."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn as nn
import torch.nn.functional as F

from audiovis.adapters import TorchAdapter
from audiovis.config import FeatureConfig
from audiovis.errors import ParameterError
from audiovis.features import mel_frequencies
from audiovis.interpret.attribution import METHODS, attribute
from audiovis.interpret.network import Network, window_from_audio
from audiovis.interpret.targets import unit_target

MODEL_SR = 8000
BURST_T = (1.0, 1.6)          # seconds
BURST_HZ = 2200.0


class Bands(nn.Module):
    """Unit 0 hears 80-200 Hz, unit 1 1.7-2.7 kHz; ``summary`` is each band's mean energy over the window,
    above a small threshold (a ReLU: a band the clip leaves empty does not fire)."""

    def __init__(self):
        super().__init__()
        taps = [scipy.signal.firwin(255, b, pass_zero=False, fs=MODEL_SR) for b in ((80, 200), (1700, 2700))]
        self.filt = nn.Conv1d(1, 2, 255, padding=127, bias=False)
        self.filt.weight.data[:] = torch.tensor(np.array(taps), dtype=torch.float32)[:, None, :]
        self.energy = nn.AvgPool1d(400, 400)
        self.summary = nn.Identity()

    def forward(self, x):
        e = self.energy(self.filt(x[:, None, :]) ** 2)
        return self.summary(F.relu(e.mean(-1) - 1e-4))


def band_net() -> Network:
    return Network(adapter=TorchAdapter(Bands(), layers=["energy", "summary"], sr=MODEL_SR, name="bands"))


def burst_clip(seed: int = 0, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(3 * sr) / sr
    y = 0.01 * rng.standard_normal(len(t))
    on = (t >= BURST_T[0]) & (t < BURST_T[1])
    y[on] += 0.3 * np.sin(2 * np.pi * BURST_HZ * t[on]) * np.hanning(on.sum())
    return y.astype(np.float32)


def burst_cells(w, pad_s: float = 0.1, lo: float = 1600, hi: float = 2900) -> np.ndarray:
    f = mel_frequencies(w.fcfg.n_mels, w.fcfg.sr, w.fcfg.fmin, w.fcfg.fmax)
    t = (np.arange(w.S_db.shape[1]) + 0.5) * w.hop_s
    return ((f >= lo) & (f <= hi))[:, None] & ((t >= BURST_T[0] - pad_s) & (t <= BURST_T[1] + pad_s))[None]


@pytest.fixture(scope="module")
def clip():
    return window_from_audio(burst_clip(), FeatureConfig(), 0.0, "burst")


@pytest.mark.parametrize("method", list(METHODS))
def test_attribution_mass_falls_in_the_burst(clip, method):
    net = band_net()
    att = attribute(net, unit_target(net, "summary:1", clip), clip, method, steps=16)
    inside = burst_cells(clip)
    share = att.positive()[inside].sum()
    assert share >= 0.8, f"{method}: {share:.2f} of the mass in the burst ({inside.mean():.3f} of the cells)"
    assert att.value > att.floor_value


def test_ig_is_complete(clip):
    net = band_net()
    att = attribute(net, unit_target(net, "summary:1", clip), clip, "ig", steps=32)
    assert abs(att.A.sum() - att.change) < 0.05 * abs(att.change)
    assert abs(att.delta) < 0.05 * abs(att.change)


def test_a_unit_that_does_not_fire_says_so(clip):
    net = band_net()
    with pytest.raises(ParameterError, match=r"unit summary:0 does not fire in the window of burst at 0.0 s"):
        attribute(net, unit_target(net, "summary:0", clip), clip)


def test_a_silent_clip_says_so():
    net = band_net()
    w = window_from_audio(np.zeros(48000, np.float32), FeatureConfig(), 0.0, "quiet.wav")
    with pytest.raises(ParameterError, match=r"the window of quiet.wav at 0.0 s is silent"):
        attribute(net, unit_target(net, "summary:1", w), w)


def test_bad_method_steps_and_unit_are_named(clip):
    net = band_net()
    t = unit_target(net, "summary:1", clip)
    with pytest.raises(ParameterError, match="attribution method 'lime' is not one of ig, gradshap, occlusion"):
        attribute(net, t, clip, "lime")
    with pytest.raises(ParameterError, match="steps 0 must be between 1 and 1024"):
        attribute(net, t, clip, steps=0)
    with pytest.raises(ParameterError, match="no layer 'conv9'"):
        unit_target(net, "conv9:1", clip)


def test_an_adapter_without_gradients_is_refused():
    from audiovis.adapters import ModelAdapter
    with pytest.raises(ParameterError, match="cannot be differentiated"):
        Network(adapter=ModelAdapter())


@pytest.mark.slow
def test_workspace_cnn_attributes_a_listener_and_a_unit(built_ws):
    from audiovis.interpret.why import why
    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    w = why(ws, ws.song_ids()[0], listener=ws.user_ids()[0], steps=8, deletion_steps=4, n_random=1)
    a = w.attribution
    assert a.A.shape == a.window.S_db.shape and a.target.kind == "listener"
    assert abs(a.A.sum() - a.change) < 0.25 * abs(a.change) + 1e-3
    assert np.isfinite(w.deletion.area) and np.isfinite(w.deletion.random_area)


def test_window_values_batch_as_one_window_at_a_time(built_ws):
    """The window search runs the windows and their floors in batches: the same values as one window at a time."""
    from audiovis.interpret.attribution import target_function
    from audiovis.interpret.network import load_network
    from audiovis.interpret.targets import make_target
    from audiovis.interpret.why import song_windows, window_values
    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    net = load_network(ws)
    windows = song_windows(ws, ws.song_ids()[0])
    assert len(windows) > 1
    for kw in ({"unit": "conv2:1"}, {"listener": ws.user_ids()[0]}):
        t = make_target(net, ws, window=windows[0], **kw)
        with torch.no_grad():
            one = [float(target_function(net, t, w)(torch.from_numpy(w.S_db[None]))[0]) for w in windows]
        np.testing.assert_allclose(window_values(net, t, windows, batch=3), one, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_listener_or_song_not_in_the_workspace_is_named(built_ws):
    from audiovis.interpret.why import why
    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    with pytest.raises(ParameterError, match=r"listener 'U99999' is not in the workspace \(60 listeners"):
        why(ws, ws.song_ids()[0], listener="U99999")
    with pytest.raises(ParameterError, match=r"song 'nosuch' is not in the workspace"):
        why(ws, ws.song_ids()[0], similar="nosuch")
    with pytest.raises(ParameterError, match=r"'nosuch.wav' is neither a song id of the workspace nor an audio"):
        why(ws, "nosuch.wav", unit="conv1:0")


@pytest.mark.slow
def test_cli_writes_the_picture_the_sounds_and_the_areas(built_ws, tmp_path, capsys):
    import json

    from audiovis.cli import main
    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    song, user = ws.song_ids()[1], ws.user_ids()[2]
    out = tmp_path / "why"
    assert main(["attribute", "-w", str(built_ws[0]), song, "--listener", user, "--at", "1.0", "--steps", "8",
                 "--deletion-steps", "4", "--random", "1", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    d = json.loads((out / "attribution.json").read_text())
    assert d["target"] == f"listener {user}'s score" and d["clip"] == song and d["start_s"] == 1.0
    assert d["deletion"]["area"] == printed["deletion_area"]
    for f in ("attribution.png", "deletion.png", "original.wav", "kept.wav", "removed.wav"):
        assert (out / f).stat().st_size > 1000, f
    assert main(["attribute", "-w", str(built_ws[0]), song, "--listener", "nobody", "--out", str(out)]) == 2
    assert "audiovis: error: listener 'nobody' is not in the workspace" in capsys.readouterr().err


def test_a_unit_with_a_time_axis_is_attributed_above_its_resting_level(clip):
    from audiovis.interpret.targets import unit_target as target
    net = band_net()
    for reduce in ("above", "mean", "max"):
        att = attribute(net, target(net, "energy:1", clip, reduce), clip, "ig", steps=16)
        assert att.positive()[burst_cells(clip)].sum() >= 0.8, reduce
    assert attribute(net, target(net, "energy:1", clip), clip, steps=4).floor_value == 0.0   # 'above': 0 at rest
    with pytest.raises(ParameterError, match="reduce 'sum' is not one of above, mean, max"):
        target(net, "energy:1", clip, "sum")
