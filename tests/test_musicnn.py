"""The PyTorch port of musicnn against the original TensorFlow graph's outputs, and its input in float32."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiovis.errors import DependencyError, ParameterError
from audiovis.models import musicnn
from audiovis.models.musicnn import TAGS, from_db, load_musicnn, logmel

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.mark.parametrize("dataset", ["MSD", "MTT"])
def test_port_matches_tensorflow(reference, dataset):
    """Every layer the reference holds, to 1e-4 (the pooled maxima, up to 150, to 1e-4 of their size)."""
    net = load_musicnn(dataset.lower())
    x = torch.from_numpy(reference["input_logmel"]).transpose(1, 2)          # (8, 96, 187)
    with torch.no_grad():
        f = net.features(x)
    np.testing.assert_allclose(f["tags"].numpy(), reference[f"{dataset}_musicnn_taggram"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(f["penultimate"].numpy(), reference[f"{dataset}_musicnn_penultimate"], atol=1e-4,
                               rtol=0)
    cnn1 = reference[f"{dataset}_musicnn_cnn1"][..., 0].transpose(0, 2, 1)   # (8, 187, 64, 1) -> (8, 64, 187)
    np.testing.assert_allclose(f["cnn1"].numpy(), cnn1, atol=1e-4, rtol=0)
    mx = reference[f"{dataset}_musicnn_max_pool"]
    assert np.abs(f["pool"][:, :753].numpy() - mx).max() <= 1e-4 * max(1.0, np.abs(mx).max())
    assert f["tags"].shape == (8, len(TAGS[dataset.lower()]))


def test_forward_is_the_tags_and_any_length_works():
    net = load_musicnn("msd")
    x = torch.rand(2, 96, 300) * 3
    with torch.no_grad():
        assert torch.allclose(net(x), net.features(x)["tags"])
        assert net(x[:, :, :100]).shape == (2, 50)


def test_input_in_float32_stays_finite_on_loud_bins():
    """The wheel's extractor casts mel power to float16 first (largest value 65504, i.e. 48.2 dB), so a loud
    bin becomes inf and every patch's tags the same; audiovis maps dB to musicnn's log in float32."""
    db = torch.tensor([[50.0, 60.0, 75.0]])
    assert np.isinf((10 ** (db.numpy() / 10)).astype(np.float16)).all()     # what float16 makes of them
    out = from_db(db)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.log10(1 + 1e4 * 10 ** (db.double() / 10)).float())
    sr = musicnn.SR
    t = np.arange(3 * sr) / sr
    chord = (sum(np.sin(2 * np.pi * f * t) for f in (55, 110, 220)) * 12).astype(np.float32)   # 57 dB bins
    quiet = 0.01 * np.random.default_rng(0).standard_normal(len(t)).astype(np.float32)
    L = np.stack([logmel(chord)[:, :187], logmel(quiet)[:, :187]])
    assert np.isfinite(L).all()
    with torch.no_grad():
        tags = load_musicnn("msd")(torch.from_numpy(L))
    assert torch.isfinite(tags).all() and (tags[0] - tags[1]).abs().max() > 0.05


def test_from_db_is_musicnns_log():
    p = torch.tensor([1e-8, 1e-3, 1.0, 123.0])
    db = 10 * torch.log10(p)
    torch.testing.assert_close(from_db(db), torch.log10(1 + 10000 * p))


def test_unknown_tagger_is_refused():
    with pytest.raises(ParameterError, match="'gtzan' does not exist; choose one of msd, mtt"):
        load_musicnn("gtzan")


def _fake_wheel(tmp_path, monkeypatch):
    src = musicnn.wheel_dir()
    dst = tmp_path / "site" / "musicnn"
    shutil.copytree(src / "MSD_musicnn", dst / "MSD_musicnn")
    rec = next(src.parent.glob("musicnn-*.dist-info"))
    shutil.copytree(rec, tmp_path / "site" / rec.name)
    monkeypatch.setattr(musicnn, "wheel_dir", lambda: dst)
    monkeypatch.setattr(musicnn, "_CACHE", {})
    return dst / "MSD_musicnn"


def test_damaged_wheel_says_what_to_install(tmp_path, monkeypatch):
    folder = _fake_wheel(tmp_path, monkeypatch)
    data = folder / ".data-00000-of-00001"
    b = bytearray(data.read_bytes())
    b[1000] ^= 0xFF
    data.write_bytes(bytes(b))
    with pytest.raises(DependencyError, match=r"is damaged .*pip install --no-deps --force-reinstall musicnn==0.1.0"):
        load_musicnn("msd")


def test_missing_checkpoint_file_says_what_to_install(tmp_path, monkeypatch):
    folder = _fake_wheel(tmp_path, monkeypatch)
    (folder / ".index").unlink()
    with pytest.raises(DependencyError, match=r"incomplete: .*\.index' is missing; pip install --no-deps"):
        load_musicnn("msd")


def test_wheel_not_installed(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DependencyError, match="the musicnn wheel is not installed"):
        musicnn.wheel_dir()


def test_cli_says_what_to_install_without_a_traceback(monkeypatch, capsys, tmp_path, corpus):
    """`audiovis check` (run at install) and the stages that need the weights exit 2 with one line naming the
    missing or damaged wheel file and the install command."""
    import importlib.util

    from audiovis.cli import main
    monkeypatch.setattr(musicnn, "_CACHE", {})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "the musicnn wheel is not installed" in err and "pip install --no-deps" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    folder = _fake_wheel(tmp_path, monkeypatch)
    (folder / ".data-00000-of-00001").write_bytes(b"\0" * 100)
    assert main(["run", "-w", str(tmp_path / "ws"), "--audio", str(corpus["audio_dir"]), "--model", "musicnn",
                 "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "MSD_musicnn/.data-00000-of-00001' is damaged" in err and "pip install --no-deps" in err
    assert "Traceback" not in err
