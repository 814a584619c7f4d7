import pytest
import torch

from audiovis.activations import Recorder
from audiovis.errors import ParameterError
from audiovis.model import AudioCNN, ModelConfig


def test_records_and_always_removes_hooks():
    m = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3)).eval()
    acts, out = Recorder(m, ["conv1", "conv2", "dense1", "output"]).record(torch.randn(2, 128, 129))
    assert acts["conv1"].shape == (2, 8, 129) and acts["conv2"].shape == (2, 8, 65)
    assert acts["dense1"].shape == (2, 16) and out.shape == (2, 3)
    assert all(not mod._forward_hooks for mod in m.modules())
    with pytest.raises(RuntimeError):
        with Recorder(m, "conv1"):
            raise RuntimeError("boom")
    assert all(not mod._forward_hooks for mod in m.modules())


def test_unknown_layer():
    m = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3))
    with pytest.raises(ParameterError, match="no layer named 'conv7'"):
        Recorder(m, "conv7")
