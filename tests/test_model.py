import torch

from audiovis.model import PRESETS, AudioCNN, ModelConfig, load_checkpoint, save_checkpoint
from audiovis.units import layer_sizes


def test_shapes_and_layers():
    m = AudioCNN(ModelConfig(n_factors=7))
    x = torch.randn(3, 128, 129)
    assert m(x).shape == (3, 7)
    assert layer_sizes(m) == {"conv1": 64, "conv2": 96, "conv3": 128, "dense1": 256, "output": 7}
    assert m.frame_stride("conv1") == 1 and m.frame_stride("conv3") == 8


def test_paper_preset_builds():
    m = AudioCNN(ModelConfig(n_factors=40, **PRESETS["paper"]))
    assert m(torch.randn(1, 128, 599)).shape == (1, 40)
    assert list(layer_sizes(m)) == ["conv1", "conv2", "conv3", "conv4", "dense1", "dense2", "output"]


def test_wide_preset_doubles_the_small_one():
    m = AudioCNN(ModelConfig(n_factors=32, **PRESETS["wide"]))
    assert layer_sizes(m) == {"conv1": 128, "conv2": 128, "conv3": 256, "dense1": 512, "output": 32}
    assert m(torch.randn(2, 128, 129)).shape == (2, 32)


def test_checkpoint_roundtrip_rebuilds_from_file(tmp_path):
    torch.manual_seed(0)
    m = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3)).eval()
    m.out_std.fill_(2.0)
    save_checkpoint(tmp_path / "m.pt", m, {"note": "x"})
    m2, extra = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 128, 129)
    torch.testing.assert_close(m(x), m2(x))
    assert extra == {"note": "x"} and m2.cfg.channels == (8, 8)


def test_level_norm_makes_the_model_deaf_to_gain():
    torch.manual_seed(0)
    x = torch.randn(2, 128, 129) * 10 - 40                       # log-mel in dB
    plain = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3)).eval()
    torch.manual_seed(0)
    norm = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3, level_norm=True)).eval()
    with torch.no_grad():
        torch.testing.assert_close(norm(x + 12.0), norm(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(plain(x + 12.0), plain(x), atol=1e-3)


def test_tempo_lags_append_the_onset_periodicity():
    """With tempo_lags, the dense layer also sees the spectral flux's autocorrelation: clicks every 20 frames
    peak at lag 20."""
    m = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3, tempo_lags=64)).eval()
    x = torch.full((1, 128, 129), -40.0)
    x[:, :, ::20] += 20
    with torch.no_grad():
        ac = m.features(x)[0, -64:]
        assert m(x).shape == (1, 3) and int(ac.argmax()) + 1 == 20
