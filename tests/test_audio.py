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


def _truncated_wav(path, seconds=8.0, keep_s=4.0, sr=22050):
    """A 16-bit WAV whose header says ``seconds`` but whose bytes stop after ``keep_s`` (a cut-off copy)."""
    y = (np.random.default_rng(0).standard_normal(int(seconds * sr)) * 0.1).astype(np.float32)
    sf.write(path, y, sr, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:44 + int(keep_s * sr) * 2])
    return y


def test_truncated_wav_keeps_what_decodes_with_a_warning(tmp_path):
    p = tmp_path / "cut off.wav"
    y = _truncated_wav(p)
    notes = []
    out = audio.load(p, on_warning=notes.append)
    assert len(out) == 4 * 22050
    np.testing.assert_allclose(out, y[:4 * 22050], atol=1e-4)
    assert notes == [f"'{p}': decoded 4.0 s of 8.0 s (file truncated?); kept the decoded part"]
    # without a callback: a Python warning of its own class
    with pytest.warns(audio.AudioWarning, match=r"cut off\.wav': decoded 4\.0 s of 8\.0 s \(file truncated\?\)"):
        audio.load(p)
    # a span inside what decodes is whole: nothing to say
    notes.clear()
    assert len(audio.load(p, offset=1.0, duration=2.0, on_warning=notes.append)) == 2 * 22050 and notes == []


def test_truncated_mp3_keeps_what_decodes_with_a_warning(tmp_path):
    """Compressed formats: the header's frame count (MP3) is more than what decodes."""
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "full.mp3", (rng.standard_normal(22050 * 8) * 0.1).astype(np.float32), 22050)
    data = (tmp_path / "full.mp3").read_bytes()
    p = tmp_path / "half.mp3"
    p.write_bytes(data[:len(data) // 2])
    notes = []
    out = audio.load(p, on_warning=notes.append)
    assert 3 * 22050 < len(out) < 5 * 22050
    assert len(notes) == 1 and notes[0].startswith(f"'{p}': decoded ") and " s of 8.0 s (file truncated?); " \
        "kept the decoded part" in notes[0]


def test_whole_files_and_small_shortfalls_give_no_warning(tmp_path):
    notes = []
    _truncated_wav(tmp_path / "a.wav", seconds=8.0, keep_s=7.6)     # 0.4 s short: below the 0.5 s threshold
    _truncated_wav(tmp_path / "b.wav", seconds=100.0, keep_s=99.2)  # 0.8 s but 0.8% short: below 1%
    sf.write(tmp_path / "c.flac", np.full(22050 * 3, 0.1, np.float32), 22050)
    for name in ("a.wav", "b.wav", "c.flac"):
        audio.load(tmp_path / name, on_warning=notes.append)
    assert notes == []


def test_placeholder_sizes_of_streaming_writers_are_no_truncation(tmp_path):
    """A WAV written as a stream may leave 0xFFFFFFFF as its data size: that says nothing about its length."""
    import struct
    p = tmp_path / "stream.wav"
    sf.write(p, np.full(22050 * 3, 0.1, np.float32), 22050, subtype="PCM_16")
    d = bytearray(p.read_bytes())
    i = d.index(b"data")
    d[i + 4:i + 8] = struct.pack("<I", 0xFFFFFFFF)
    p.write_bytes(bytes(d))
    notes = []
    assert len(audio.load(p, on_warning=notes.append)) == 3 * 22050 and notes == []
