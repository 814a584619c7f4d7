import numpy as np
import pytest
import torch

from audiovis.errors import ParameterError
from audiovis.features import FeatureStore
from audiovis.train import load_model, model_config, predict_songs
from audiovis.workspace import Workspace


def test_checkpoint_stores_config_and_history(built_ws):
    ws = Workspace(built_ws[0])
    model, extra = load_model(ws)
    assert extra["train"]["preset"] == "auto" and extra["summary"]["preset"] == "small"   # a few minutes of audio
    assert extra["feature"]["n_mels"] == 96
    assert len(extra["history"]) >= 1 and not model.training
    obj = torch.load(ws.model_path, weights_only=True)
    assert obj["config"]["n_factors"] == 8


def test_song_prediction_is_mean_of_windows(built_ws):
    ws = Workspace(built_ws[0])
    model, _ = load_model(ws)
    store = FeatureStore(ws)
    p = predict_songs(model, store, np.array([0, 1]))
    with torch.no_grad():
        w = model(torch.from_numpy(store.batch(store.song_windows(1)))).numpy()
    np.testing.assert_allclose(p[1], w.mean(0), rtol=1e-4, atol=1e-6)


def test_unknown_preset():
    with pytest.raises(ParameterError, match="preset 'huge' is not one of small, wide, paper"):
        model_config("huge", 8, 128, 129)


def test_auto_preset_follows_the_hours_of_training_audio():
    from audiovis.model import AUTO_WIDE_HOURS, auto_preset
    assert auto_preset(0) == "small" and auto_preset(AUTO_WIDE_HOURS * 3600 - 1) == "small"
    assert auto_preset(AUTO_WIDE_HOURS * 3600) == "wide" and auto_preset(20 * 3600) == "wide"


def test_second_run_reuses_model(built_ws, tiny_configs):
    from audiovis.train import train
    ws = Workspace(built_ws[0])
    before = ws.model_path.stat().st_mtime_ns
    train(ws, tiny_configs["training"], progress=False)
    assert ws.model_path.stat().st_mtime_ns == before


class _Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("kind,why", [
    ("empty", "the file is empty, 0 bytes"),
    ("garbage", "not a whole torch file: "),
    ("truncated", "not a whole torch file: RuntimeError: PytorchStreamReader failed reading zip archive"),
    ("pickle", "it holds pickled objects other than tensors and plain data, which are never loaded: "
               "Trying to load unsupported GLOBAL posix.system"),
    ("not a state", "not a training state: it holds a list, not a dict"),
])
def test_unreadable_train_state_restarts_from_scratch(built_ws, tmp_path, capsys, kind, why):
    """A train_state.pt that cannot be read (empty, cut short, not a torch file, holding a pickled object, or
    not a training state) is never fatal and never loaded with weights_only=False: training says so on stderr
    and in the report, and starts from scratch."""
    import shutil

    from audiovis.train import TrainConfig, train
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    ws.clear_done("train")
    state = ws.path / "train_state.pt"
    good = {"epoch": 0, "model": {"w": torch.zeros(3)}}
    if kind == "empty":
        state.write_bytes(b"")
    elif kind == "garbage":
        state.write_bytes(b"this is not a torch file\n" * 40)
    elif kind == "truncated":
        torch.save(good, state)
        state.write_bytes(state.read_bytes()[:200])
    elif kind == "pickle":
        torch.save({**good, "history": _Payload(tmp_path / "pwned")}, state)
    else:
        torch.save([1, 2, 3], state)
    cfg = TrainConfig(preset="auto", epochs=1, steps_per_epoch=2, batch_size=8, num_threads=1)
    threads = torch.get_num_threads()
    try:
        s = train(ws, cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert f"train: {state} is unreadable ({why}" in err and "): starting training from scratch\n" in err, err
    assert "weights_only=False" not in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()
    assert s["epochs_run"] == 1 and ws.model_path.exists() and not state.exists()
    (row,) = ws.report("train")
    assert row[1] == "train_state.pt" and "starting training from scratch" in row[2]
    # the next run is clean: no report row left from the unreadable state
    train(ws, cfg, force=True, progress=False)
    torch.set_num_threads(threads)
    assert ws.report("train") == []


def test_contrastive_pretraining_and_frozen_conv_layers(built_ws, tmp_path, monkeypatch):
    """pretrain_epochs runs the contrastive stage first (its loss falls from ln(2n - 1), chance); with freeze_conv
    the supervised stage leaves the pretrained conv layers as they are; the song readout is on by default."""
    import shutil
    from dataclasses import replace

    import audiovis.train as T
    from audiovis.config import TrainConfig
    from audiovis.train import pretrain, train
    seen = {}

    def recording(model, *a, **kw):                 # the conv weights as pretraining leaves them
        out = pretrain(model, *a, **kw)
        seen.update({k: v.clone() for k, v in model.state_dict().items() if k.startswith("conv")})
        return out
    monkeypatch.setattr(T, "pretrain", recording)
    ws_dir = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws_dir)
    ws = Workspace(ws_dir)
    cfg = TrainConfig(preset="auto", epochs=2, steps_per_epoch=4, batch_size=16, pretrain_epochs=3, freeze_conv=True,
                      num_threads=1)
    assert TrainConfig().song_readout
    out = train(ws, cfg, force=True, progress=False)
    losses = out["pretrain_losses"]
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < np.log(2 * 8 - 1)
    assert out["readout_lambda"] is not None
    model, _ = load_model(ws)
    assert seen and all(torch.equal(seen[k], v) for k, v in model.state_dict().items() if k in seen)
    store = FeatureStore(ws)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("conv")}
    pretrain(model, store, np.arange(store.n_songs), replace(cfg, pretrain_epochs=1), "cpu", progress=False)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)


def test_early_stopping_on_the_validation_songs_auc(built_ws, tmp_path):
    import shutil

    from audiovis.config import TrainConfig
    from audiovis.metrics import cold_start_metrics
    from audiovis.train import train
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    out = train(ws, TrainConfig(preset="auto", epochs=3, steps_per_epoch=3, batch_size=16, early_stop="valid_auc",
                                num_threads=1, song_readout=False), force=True, progress=False)
    hist = torch.load(ws.model_path, weights_only=True)["history"]
    aucs = [h["valid_auc"] for h in hist]
    assert out["best_valid_auc"] == max(aucs) and out["best_epoch"] == int(np.argmax(aucs)) + 1
    # the kept model is the epoch the validation AUC picked: recomputed from the saved model, the same AUC
    from audiovis.factors import load_factors
    fac = load_factors(ws)
    va = np.flatnonzero(fac["split"] == "valid")
    model, _ = load_model(ws)
    P = (ws.play_matrix().tocsc()[:, va] > 0).toarray()
    got = cold_start_metrics(fac["user_factors"], predict_songs(model, FeatureStore(ws), va), P)["auc"]
    assert got == pytest.approx(out["best_valid_auc"], abs=1e-4)


def test_song_level_loss_and_song_mse_early_stopping(built_ws, tmp_path):
    """crops_per_song groups the batch by song (mixup swaps whole groups); valid_song_mse picks the epoch by the
    error of the validation songs' mean-of-windows predictions, recomputed here from the kept model."""
    import shutil

    from audiovis.config import TrainConfig
    from audiovis.factors import load_factors
    from audiovis.train import _Crops, augment, train
    store = FeatureStore(Workspace(built_ws[0]))
    songs = np.arange(store.n_songs)
    crops = _Crops(store, songs, songs[:, None].astype(np.float32), np.random.default_rng(0))
    x, y = crops.sample(12, 4)
    assert x.shape[0] == 12 and (y[::4] == y[3::4]).all() and len(np.unique(y.reshape(3, 4), axis=1)) == 3
    _, ym = augment(x, y, TrainConfig(mixup=0.4, gain_db=0, spec_masks=0), np.random.default_rng(1), group=4)
    assert np.allclose(ym.reshape(3, 4, 1), ym.reshape(3, 4, 1)[:, :1])    # one mix per song group
    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    out = train(ws, TrainConfig(preset="auto", epochs=3, steps_per_epoch=3, batch_size=16, crops_per_song=4,
                                num_threads=1, early_stop="valid_song_mse", song_readout=False), force=True,
                progress=False)
    hist = torch.load(ws.model_path, weights_only=True)["history"]
    errs = [h["valid_song_mse"] for h in hist]
    assert out["best_epoch"] == int(np.argmin(errs)) + 1
    fac = load_factors(ws)
    va = np.flatnonzero(fac["split"] == "valid")
    model, _ = load_model(ws)
    pred = predict_songs(model, FeatureStore(ws), va)
    sd = model.out_std.numpy()
    assert float((((pred - fac["song_factors"][va]) / sd) ** 2).mean()) == pytest.approx(min(errs), rel=1e-4)


def test_weight_average_is_validated_kept_and_resumed(built_ws, tmp_path, monkeypatch):
    """With ema, the kept model is the moving average (not the last weights), and a run stopped after epoch 2
    resumes to the same average as an uninterrupted run."""
    import shutil

    import audiovis.train as T
    from audiovis.config import TrainConfig
    cfg = TrainConfig(preset="auto", epochs=3, steps_per_epoch=3, batch_size=16, num_threads=1, patience=100, ema=0.9,
                      song_readout=False)
    ref = Workspace(shutil.copytree(built_ws[0], tmp_path / "ref"))
    T.train(ref, cfg, force=True, progress=False)
    plain = Workspace(shutil.copytree(built_ws[0], tmp_path / "plain"))
    T.train(plain, TrainConfig(**{**cfg.to_dict(), "ema": 0.0}), force=True, progress=False)
    a, b = load_model(ref)[0].state_dict(), load_model(plain)[0].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)

    ws = Workspace(shutil.copytree(built_ws[0], tmp_path / "ws"))
    calls, real = [], T.predict_windows

    def stop_in_epoch_3(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(T, "predict_windows", stop_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        T.train(ws, cfg, force=True, progress=False)
    assert torch.load(ws.path / "train_state.pt", weights_only=True)["ema"] is not None
    monkeypatch.setattr(T, "predict_windows", real)
    T.train(ws, cfg, progress=False)
    got, ref_model = load_model(ws)[0].state_dict(), load_model(ref)[0].state_dict()
    assert all(torch.equal(got[k], ref_model[k]) for k in got)
