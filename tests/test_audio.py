import numpy as np
import pytest
import soundfile as sf

from audiovis import audio
from audiovis.errors import AudioError


def test_load_resamples_and_mixes_to_mono(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((44100, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.flac", y, 44100)
    out = audio.load(tmp_path / "a.flac", sr=22050)
    assert out.ndim == 1 and out.dtype == np.float32
    assert abs(len(out) - 22050) <= 1


def test_load_span(tmp_path):
    y = np.sin(np.arange(22050 * 4) / 10).astype(np.float32) * 0.3
    sf.write(tmp_path / "a.wav", y, 22050)
    out = audio.load(tmp_path / "a.wav", offset=1.0, duration=2.0)
    assert len(out) == 44100
    np.testing.assert_allclose(out, y[22050:66150], atol=1e-4)


@pytest.mark.parametrize("content,msg", [(b"", "is empty"), (b"this is not audio" * 10, "not a readable audio file")])
def test_bad_files_name_the_file(tmp_path, content, msg):
    p = tmp_path / "bad.mp3"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=msg) as e:
        audio.load(p)
    assert "bad.mp3" in str(e.value)


def test_silence_and_length_limits(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(22050, np.float32), 22050)
    with pytest.raises(AudioError, match="silent"):
        audio.load(tmp_path / "silent.wav")
    sf.write(tmp_path / "long.wav", np.full(22050 * 5, 0.1, np.float32), 22050)
    with pytest.raises(AudioError, match="longer than the limit of 4 s"):
        audio.load(tmp_path / "long.wav", max_duration=4)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        audio.info(tmp_path / "nope.wav")


def test_find_audio_recurses_and_filters(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.wav", "sub/b.FLAC", "notes.txt", ".hidden.wav"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in audio.find_audio(tmp_path)] == ["a.wav", "b.FLAC"]
