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


def test_song_means_match_windowwise_mean(built_ws):
    import numpy as np

    from audiovis.activations import song_means
    from audiovis.features import FeatureStore
    from audiovis.train import load_model
    from audiovis.workspace import Workspace
    ws = Workspace(built_ws[0])
    model, _ = load_model(ws)
    store = FeatureStore(ws)
    E = song_means(model, store, "dense1", batch_size=7)       # batches that split songs
    assert E.shape == (store.n_songs, model.cfg.dense[0])
    for s in (0, store.n_songs - 1):
        w = np.flatnonzero(store.windows[:, 0] == s)
        acts, _ = Recorder(model, "dense1").record(torch.from_numpy(store.batch(w)))
        np.testing.assert_allclose(E[s], acts["dense1"].numpy().mean(0), rtol=1e-4, atol=1e-5)


def test_concurrent_recorders_on_one_model_keep_their_own_pass():
    """The page serves every visitor from one cached model in several threads: a recorder's hooks fire on
    other threads' forward passes too, and once took their activations (an IndexError in one visitor's view,
    wrong curves in another's). Each recorder must see only its own thread's input."""
    import threading

    torch.manual_seed(0)
    m = AudioCNN(ModelConfig(channels=(8, 8), pools=(2,), dense=(16,), n_factors=3)).eval()
    xs = [torch.randn(1 + i, 128, 40 + 9 * i) for i in range(6)]             # other batch sizes and lengths
    with torch.no_grad():
        want = [Recorder(m, ["conv2"]).record(x)[0]["conv2"] for x in xs]
    errors, start = [], threading.Barrier(len(xs))

    def worker(i):
        start.wait()
        try:
            for _ in range(30):
                with torch.no_grad():
                    got = Recorder(m, ["conv2"]).record(xs[i])[0]["conv2"]
                assert got.shape == want[i].shape, (i, tuple(got.shape), tuple(want[i].shape))
                assert torch.allclose(got, want[i], atol=1e-5), i
        except Exception as e:  # noqa: BLE001  collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert all(not mod._forward_hooks for mod in m.modules())
