import os
from pathlib import Path

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


def _cut(src, dst, keep):
    data = src.read_bytes()
    dst.write_bytes(data[:keep(data)])


@pytest.mark.parametrize("name,fmt,subtype,sr", [("half.ogg", "OGG", "VORBIS", 22050),
                                                 ("half.opus", "OGG", "OPUS", 48000)])
def test_truncated_ogg_keeps_what_decodes_with_a_warning(tmp_path, name, fmt, subtype, sr):
    """Ogg Vorbis and Opus: the header says no length and libsndfile's frame count is what remains, but the
    stream stops without its end-of-stream page: kept with a warning (it was kept as 8 s of 16 with no note)."""
    rng = np.random.default_rng(2)
    full = tmp_path / f"full{os.path.splitext(name)[1]}"
    sf.write(full, (rng.standard_normal(sr * 16) * 0.1).astype(np.float32), sr, format=fmt, subtype=subtype)
    notes = []
    audio.load(full, on_warning=notes.append)
    assert notes == []                                            # a whole file: nothing to say
    p = tmp_path / name
    _cut(full, p, lambda d: len(d) // 2)                          # in the middle of a page
    out = audio.load(p, on_warning=notes.append)
    got = len(out) / 22050
    assert 5 < got < 9
    assert notes == [f"'{p}': decoded {got:.1f} s, but the Ogg stream stops without its end-of-stream page "
                     f"(file truncated?); kept the decoded part"]
    # cut exactly between two pages: no partial page, still no end of stream
    q = tmp_path / f"pages{os.path.splitext(name)[1]}"
    _cut(full, q, lambda d: [i for i in range(len(d)) if d.startswith(b"OggS", i)][-3])
    notes.clear()
    audio.load(q, on_warning=notes.append)
    assert len(notes) == 1 and "the Ogg stream stops without its end-of-stream page (file truncated?)" in notes[0]
    # a span that ends before the cut is whole
    notes.clear()
    assert len(audio.load(p, offset=1.0, duration=2.0, on_warning=notes.append)) == 2 * 22050 and notes == []


def _patch(path, tag: bytes, offset: int, value: bytes) -> None:
    d = bytearray(path.read_bytes())
    i = d.index(tag) + offset
    d[i:i + len(value)] = value
    path.write_bytes(bytes(d))


@pytest.mark.parametrize("kind", ["wav 8 bit", "aiff COMM", "aiff SSND"])
def test_header_claiming_2_31_frames_is_a_truncation(tmp_path, kind):
    """A header that claims 2^31 frames (8 s present) was taken for a streaming writer's placeholder size:
    the file decoded as 8 s with no note. Only the known placeholders (0xFFFFFFFF, 0x7FFFFFFF, SoX's
    0x7FFFF000) say nothing about the length."""
    import struct
    y = (np.random.default_rng(3).standard_normal(22050 * 8) * 0.1).astype(np.float32)
    if kind == "wav 8 bit":
        p = tmp_path / "big.wav"
        sf.write(p, y, 22050, subtype="PCM_U8")
        _patch(p, b"data", 4, struct.pack("<I", 2 ** 31))         # 2^31 bytes = 2^31 frames
    else:
        p = tmp_path / "big.aiff"
        sf.write(p, y, 22050, subtype="PCM_16")
        if kind == "aiff COMM":
            _patch(p, b"COMM", 10, struct.pack(">I", 2 ** 31))    # numSampleFrames
        else:
            _patch(p, b"SSND", 4, struct.pack(">I", 2 ** 31 + 8))  # 2^30 frames of 16 bits
    assert audio.info(p).duration == 8.0                          # what is there (uploads pass validation)
    notes = []
    assert len(audio.load(p, on_warning=notes.append)) == 8 * 22050
    claimed = 2 ** 31 / 22050 if kind != "aiff SSND" else 2 ** 30 / 22050
    assert notes == [f"'{p}': decoded 8.0 s of {claimed:.1f} s (file truncated?); kept the decoded part"]
    # the cold-start upload path featurizes through song_logmel, which hands the note on the same way
    from audiovis.features import song_logmel
    notes.clear()
    song_logmel(p, on_warning=notes.append)
    assert len(notes) == 1 and "decoded 8.0 s of" in notes[0]
    with pytest.warns(audio.AudioWarning, match=r"decoded 8\.0 s of \d+\.\d s \(file truncated\?\)") as rec:
        audio.load(p)
    w = rec[0].message
    assert (w.path, w.decoded_s, round(w.claimed_s, 1)) == (str(p), 8.0, round(claimed, 1))


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000])
def test_streaming_placeholder_sizes_are_no_truncation(tmp_path, size):
    import struct
    p = tmp_path / "stream.wav"
    sf.write(p, np.full(22050 * 3, 0.1, np.float32), 22050, subtype="PCM_U8")
    _patch(p, b"data", 4, struct.pack("<I", size))
    notes = []
    assert len(audio.load(p, on_warning=notes.append)) == 3 * 22050 and notes == []


@pytest.mark.parametrize("content,what", [
    ("This is not an MP3, it is a text file.\n" * 20, "text/ASCII content"),
    ("Ceci n'est pas un MP3 : c'est un fichier texte, déjà.\n" * 20, "text (UTF-8) content"),
    (b"%PDF-1.4\n" + bytes(range(256)) * 4, "a PDF document"),
])
def test_text_renamed_mp3_is_named_as_not_audio(tmp_path, content, what):
    """It was reported as 'File does not exist or is not a regular file (possibly a pipe?)'."""
    p = tmp_path / "readme.mp3"
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    for f in (audio.info, audio.load):
        with pytest.raises(AudioError) as e:
            f(p)
        assert str(e.value) == (f"'{p}': not a readable audio file: not audio libsndfile can decode ({what}); "
                                f"use WAV, FLAC, OGG Vorbis, Opus or MP3")


def test_unrecognised_binary_says_so(tmp_path):
    p = tmp_path / "noise.mp3"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as e:
        audio.info(p)
    assert str(e.value) == (f"'{p}': not a readable audio file: not audio libsndfile can decode (unrecognised "
                            f"format: no WAV, AIFF, FLAC, Ogg or MP3 header); use WAV, FLAC, OGG Vorbis, Opus or MP3")
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(AudioError, match=r"folder\.wav': not a regular file"):
        audio.info(tmp_path / "folder.wav")


def test_mpg123_noise_does_not_reach_stderr(tmp_path, capfd):
    """libmpg123 writes "Note: Illegal Audio-MPEG-Header ..." to fd 2 on a damaged MP3; that noise is dropped,
    and whatever else is written to stderr meanwhile (another thread's real error) still comes out."""
    rng = np.random.default_rng(4)
    sf.write(tmp_path / "x.mp3", (rng.standard_normal(44100 * 6) * 0.3).astype(np.float32), 44100)
    c = bytearray((tmp_path / "x.mp3").read_bytes())
    c[len(c) // 3:len(c) // 3 + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    p = tmp_path / "damaged.mp3"
    p.write_bytes(bytes(c))
    capfd.readouterr()
    try:
        audio.load(p)
    except AudioError:
        pass
    assert "MPEG-Header" not in capfd.readouterr().err
    with audio._quiet_decoder(p):
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 776.\nNote: Trying to resync...\n"
                    b"[src/libmpg123/parse.c:1230] error: Giving up resync after 1024 bytes.\n"
                    b"a real problem elsewhere\n")
    assert capfd.readouterr().err == "a real problem elsewhere\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs or Unix sockets here")
def test_fifos_sockets_and_devices_are_named_never_opened(tmp_path):
    import socket
    fifo, sock = tmp_path / "pipe.mp3", tmp_path / "sock.wav"
    os.mkfifo(fifo)                              # open() would wait for a writer forever
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    try:
        for p, what in ((fifo, "a FIFO, a named pipe"), (sock, "a socket"), (Path("/dev/null"), "a character device")):
            assert audio.not_regular(p) == what
            with pytest.raises(AudioError) as e:
                audio.info(p)
            assert str(e.value) == f"'{p}': not a regular file ({what}); skipped without reading it"
    finally:
        s.close()
    assert audio.not_regular(tmp_path / "absent.wav") is None     # reported as missing by the caller
