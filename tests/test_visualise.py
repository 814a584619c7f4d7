"""Feature visualisation on a tiny hand-built model where the answer is known, plus dissection and bad input."""
from __future__ import annotations

import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import torch

from audiovis.errors import ParameterError
from audiovis.features import mel_basis, mel_frequencies
from audiovis.model import AudioCNN, ModelConfig
from audiovis.visualise.objectives import parse_objective
from audiovis.visualise.render import RenderConfig, mel_to_audio, mel_to_power, optimise

torch.set_num_threads(1)      # tiny tensors: one thread is much faster on the shared 2-core machine
BAND = slice(40, 51)          # mel bins 40..50
SR = 22050


@pytest.fixture(scope="module")
def band_model():
    """conv1 unit 0 responds only to energy in mel bins 40-50; batch norm is the identity in eval mode."""
    torch.manual_seed(0)
    m = AudioCNN(ModelConfig(channels=(4, 4), pools=(2,), dense=(4,), n_factors=2))
    with torch.no_grad():
        m.in_mean.fill_(-100.0)         # silence -> 0, loud -> positive
        m.in_std.fill_(20.0)
        w = torch.zeros_like(m.conv1.conv.weight[0])   # (n_mels, kernel)
        w[BAND] = 1.0 / (11 * 4)
        m.conv1.conv.weight[0] = w
        m.conv1.conv.bias[0] = 0.0
        bn = m.conv1.bn
        bn.running_mean.zero_(), bn.running_var.fill_(1.0), bn.weight.fill_(1.0), bn.bias.zero_()
        bn.eps = 1e-12
    m.eval()
    return m


def two_tones(seconds=1.5, noise=1e-3, seed=0):
    """A tone at the centre of mel bin 45 (in the band) plus an equally loud one at mel bin 100 (outside)."""
    hz = mel_frequencies(128, SR)
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    y = 0.3 * np.sin(2 * np.pi * hz[45] * t) + 0.3 * np.sin(2 * np.pi * hz[100] * t)
    return (y + noise * rng.standard_normal(len(t))).astype(np.float32)


def band_energy_ratio(y, density=False):
    """Energy in the band's frequency range (mel bins 40-50) over the energy outside it (or per Hz)."""
    hz = mel_frequencies(128, SR)
    S = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    inside = (f >= hz[38]) & (f <= hz[52])
    if density:
        return S[inside].mean() / S[~inside].mean()
    return S[inside].sum() / S[~inside].sum()


# ------------------------------------------------------------------------------------------- one mel scale
@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax",
                         [(22050, 1024, 128, 0.0, None), (16000, 512, 40, 50.0, 7000.0)])
def test_dream_inversion_and_auralisation_use_the_front_ends_filterbank(sr, n_fft, n_mels, fmin, fmax):
    """The log-mel -> audio inversion undoes exactly the front end's filterbank (features.mel_basis), and the
    auralisation mask spreads a mel band over exactly the FFT bins of that filter."""
    from audiovis.visualise.auralise import mel_to_linear_mask
    fb = mel_basis(sr, n_fft, n_mels, fmin, fmax).astype(np.float64)         # (n_mels, n_freq)
    rng = np.random.default_rng(0)
    # a linear power spectrum in the row space of fb and >= 0: the pseudo-inverse gets it back exactly, and the
    # clipping at 0 does nothing, so any other filterbank (or scale) would not reproduce it
    P = fb.T @ rng.random((n_mels, 5))                                      # (n_freq, 5)
    S_db = (10 * np.log10(fb @ P)).astype(np.float32)
    lin = mel_to_power(S_db, sr, n_fft, fmin, fmax)
    np.testing.assert_allclose(lin, P, rtol=2e-3, atol=1e-6 * P.max())
    np.testing.assert_allclose(fb @ lin, 10 ** (S_db / 10), rtol=2e-3)
    # the pseudo-inverse used is the front end's filterbank's
    from audiovis.features import mel_pinv
    np.testing.assert_allclose(mel_pinv(sr, n_fft, n_mels, fmin, fmax), np.linalg.pinv(fb), rtol=1e-4, atol=1e-4)
    R = np.eye(n_mels, dtype=np.float32)                                    # one mel band at a time
    M = mel_to_linear_mask(R, sr, n_fft, fmin, fmax)
    np.testing.assert_array_equal(M > 0, (fb > 0).T)


def test_mel_centres_come_from_the_front_ends_scale():
    """One mel scale: every bin's centre frequency is where the front end's filter peaks, it is librosa's slaney
    scale, and the filters, the spectrogram axes and the dissection's descriptors all use it."""
    import librosa

    from audiovis.visualise import dissect, filters
    hz = mel_frequencies(128, SR)
    fb = mel_basis(SR, 1024, 128)
    fft_hz = np.linspace(0, SR / 2, 513)
    assert np.all(np.abs(fft_hz[fb.argmax(1)] - hz) <= SR / 1024)          # within one FFT bin of the apex
    np.testing.assert_allclose(hz, librosa.mel_frequencies(130, fmin=0.0, fmax=SR / 2, htk=False)[1:-1], rtol=1e-6)
    np.testing.assert_allclose(fb, librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128), atol=1e-6)
    assert filters.mel_frequencies is mel_frequencies and dissect.mel_frequencies is mel_frequencies
    np.testing.assert_allclose(filters.frequency_response(np.ones((1, 128, 3), np.float32))["hz"], hz)


def test_dream_puts_energy_in_the_band(band_model):
    r = optimise(band_model, parse_objective("conv1:0", band_model), RenderConfig(steps=80, frames=64, tv=2.0, seed=1))
    assert r.logmel.shape == (128, 64)
    inside = r.logmel[BAND].mean()
    outside = np.concatenate([r.logmel[:35], r.logmel[56:]]).mean()
    assert inside > outside + 15, (inside, outside)
    assert r.measure > 1.5 * r.start_measure > 0     # the band saturates at the top of its dB range
    lo, hi = -100.0, -100.0 + 2.5 * 20.0              # the bounded dB range holds
    assert r.logmel.min() >= lo - 1e-3 and r.logmel.max() <= hi + 1e-3


def test_dream_renders_to_audio(band_model):
    r = optimise(band_model, parse_objective("conv1:0", band_model), RenderConfig(steps=30, frames=64))
    y = mel_to_audio(r.logmel + 60.0)                   # louder, so the band is audible
    assert y.shape == (512 * 63,) and np.isfinite(y).all() and np.abs(y).max() <= 0.99 + 1e-6
    assert band_energy_ratio(y, density=True) > 10      # far more energy per Hz in the band


def test_auralisation_keeps_the_band(band_model):
    from audiovis.visualise.auralise import auralise_audio
    y = two_tones()
    a = auralise_audio(band_model, y, "conv1:0")
    assert a.activation > 0
    assert a.relevance[BAND].sum() > 0 and a.relevance[:35].sum() == 0 and a.relevance[56:].sum() == 0
    before, after = band_energy_ratio(a.original), band_energy_ratio(a.auralised)
    assert 0.3 < before < 3                              # two equally loud tones
    assert after > 50 * before, (before, after)
    assert a.auralised.shape == y.shape and a.mask.shape == (513, a.logmel.shape[1])


def test_filters_shape_and_response(band_model):
    from audiovis.visualise.filters import conv1_filters, frequency_response, plot_filters
    W = conv1_filters(band_model)
    assert W.shape == (4, 128, 4)
    resp = frequency_response(W)
    hz = mel_frequencies(128, SR)
    assert hz[40] <= resp["peak_hz"][0] <= hz[50]
    assert resp["energy"][0][:40].sum() == 0 and resp["energy"][0][BAND].min() > 0
    fig = plot_filters(W)
    assert len(fig.axes) >= 4
    with pytest.raises(ParameterError, match=r"shape \(C, n_mels, kernel\)"):
        frequency_response(W[0])


def test_backward_query_reduces_distance(band_model):
    from audiovis.visualise.backward import backward_model
    torch.manual_seed(0)
    m = AudioCNN(ModelConfig(channels=(4, 4), pools=(2,), dense=(4,), n_factors=2)).eval()
    target = np.array([1.0, -0.5], np.float32)
    r = backward_model(m, target, "mse", RenderConfig(steps=80, frames=64, lr=0.1))
    assert r["distance"] < 0.8 * r["start_distance"], r
    r = backward_model(m, target, "cosine", RenderConfig(steps=40, frames=64))
    assert r["cosine"] > r["start_cosine"]


def test_bad_objective_names(band_model):
    with pytest.raises(ParameterError, match="no layer 'conv9'"):
        parse_objective("conv9:1", band_model)
    with pytest.raises(ParameterError, match="index 7 out of range"):
        parse_objective("conv1:7", band_model)
    with pytest.raises(ParameterError, match="'conv1:x' is not of the form"):
        parse_objective("conv1:x", band_model)
    with pytest.raises(ParameterError, match="no layer 'nope'"):
        parse_objective("nope", band_model)
    assert parse_objective("conv2", band_model).index is None
    assert parse_objective("output:1", band_model).layer == "output"


# ------------------------------------------------------------------------------------------- dissection
def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    from audiovis.visualise.dissect import auroc_matrix
    rng = np.random.default_rng(0)
    A = np.round(rng.random((200, 3)), 1)               # with ties
    Y = rng.random((200, 2)) < 0.3
    auc = auroc_matrix(A, Y)
    for i in range(3):
        for j in range(2):
            assert auc[i, j] == pytest.approx(roc_auc_score(Y[:, j], A[:, i]))


def test_dissection_finds_a_planted_detector():
    from audiovis.visualise.dissect import dissect_arrays, search_units
    rng = np.random.default_rng(0)
    n = 400
    Y = np.stack([rng.random(n) < 0.2, rng.random(n) < 0.3], 1)
    A = np.maximum(rng.standard_normal((n, 6)), 0)      # ReLU-like, many zeros
    A[:, 4] = Y[:, 0] * 3.0 + 0.1 * rng.random(n)       # unit 4 detects concept 0
    names = [f"conv2:{i}" for i in range(6)]
    res = dissect_arrays(A, names, Y, ["lead=distortion_guitar", "groove=rock"])
    best = res["concepts"]["lead=distortion_guitar"][0]
    assert best["unit"] == "conv2:4" and best["score"] > 0.99
    assert res["units"]["conv2:4"][0] == {"concept": "lead=distortion_guitar", "score": best["score"],
                                          "detector": True, "iou": best["iou"]}
    assert all(e["score"] < 0.9 for e in res["concepts"]["groove=rock"])
    assert not any(e["detector"] for u, lst in res["units"].items() if u != "conv2:4" for e in lst)
    rows = search_units("units for distorted guitar", res)
    assert rows[0]["concept"] == "lead=distortion_guitar" and rows[0]["unit"] == "conv2:4"
    assert search_units("units for bagpipes", res) == []


# ------------------------------------------------------------------------------------------- on a workspace
def test_dissect_and_dream_on_a_workspace(built_ws, tmp_path, capsys):
    from audiovis.cli import main
    from audiovis.visualise.dream import dream
    from audiovis.workspace import Workspace
    path, _ = built_ws
    ws = Workspace(path)
    assert main(["dissect", "-w", str(path), "--no-descriptors"]) == 0
    res = json.loads((ws.index_dir / "dissection.json").read_text())
    assert res["metric"] == "auroc" and res["threshold"] == 0.9
    assert {"kind=low", "kind=high", "kind=noise"} <= set(res["concepts"])
    u, lst = next(iter(res["units"].items()))
    assert set(lst[0]) >= {"concept", "score", "detector"} and len(lst) <= 5
    assert "| concept |" in (ws.index_dir / "dissection.md").read_text()
    cfg = RenderConfig(steps=6)
    d1 = dream(ws, "conv1:0", cfg=cfg)
    d2 = dream(ws, "conv1:0", cfg=cfg)
    assert not d1.cached and d2.cached and d1.npz_path == d2.npz_path
    assert d1.npz_path.parent == ws.path / "visualise" / "dreams" and d1.audio_path.suffix == ".ogg"
    assert d1.npz_path.name.startswith("conv1_0-") and d1.audio_path.exists()
    np.testing.assert_allclose(d1.logmel, d2.logmel)
    sid = ws.song_ids()[0]
    d3 = dream(ws, "conv1:0", from_clip=f"{sid}:1.0", cfg=cfg)
    assert d3.npz_path != d1.npz_path
    out = tmp_path / "a.wav"
    assert main(["auralise", "conv1:0", sid, "1.0", "-w", str(path), "--out", str(out)]) == 0
    assert out.exists() and (tmp_path / "a_original.wav").exists() and (tmp_path / "a.png").exists()


def test_bad_input_messages(built_ws, capsys):
    from audiovis.cli import main
    from audiovis.visualise.backward import resolve_target
    from audiovis.visualise.dream import parse_clip
    from audiovis.workspace import Workspace
    path, _ = built_ws
    ws = Workspace(path)
    with pytest.raises(ParameterError, match="unknown listener 'U00042': this workspace has 60 listeners"):
        resolve_target(ws, user="U00042")
    with pytest.raises(ParameterError, match="factor 99 is out of range"):
        resolve_target(ws, factor=99)
    with pytest.raises(ParameterError, match="exactly one target"):
        resolve_target(ws)
    with pytest.raises(ParameterError, match="'S1' is not of the form SONG_ID:START_S"):
        parse_clip("S1")
    assert main(["dream", "conv9:1", "-w", str(path)]) == 2
    assert "no layer 'conv9'" in capsys.readouterr().err
    assert main(["backward", "--user", "U00042", "-w", str(path), "--out", "x.wav"]) == 2
    assert "unknown listener 'U00042'" in capsys.readouterr().err


def test_descriptor_minutes_follow_the_audio_not_the_song_count():
    from types import SimpleNamespace

    from audiovis.visualise.dissect import DESCRIPTOR_S_PER_AUDIO_S, descriptor_minutes
    demo = SimpleNamespace(songs=lambda: [{"duration": 20.85}] * 480)      # the demo: 73 s measured
    assert descriptor_minutes(demo) == 1
    world = SimpleNamespace(songs=lambda: [{"duration": 145.0}] * 383 + [{"duration": None}])   # 15.5 h
    assert descriptor_minutes(world) == round(383 * 145.0 * DESCRIPTOR_S_PER_AUDIO_S / 60) == 6
