"""Audio clips for listening: cut a span around a unit's peak from the original file and encode it compactly.

The clip is read from the song's original audio file (not reconstructed from features), resampled to
22,050 Hz mono and encoded as OGG Vorbis (or MP3). Samples are never peak-normalised or rescaled, so a quiet
passage sounds quiet; only a few milliseconds of fade at the edges remove clicks.

Browsers receive the encoded bytes with their MIME type; ``st.audio`` is given bytes plus ``format`` (it would
peak-normalise a numpy array and round start/end times to whole seconds).

Examples
--------
>>> start, end = clip_span(peak_s=10.2, song_duration=21.4, clip_s=3.0)
>>> data = cut_and_encode("song.ogg", start, end - start)        # bytes, OGG Vorbis
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from . import audio
from .errors import ParameterError

SR = 22050
BLOCK_S = 20.0   # seconds per write in encode(): one Vorbis write of > ~60 s crashes libsndfile 1.2.2
FORMATS = {
    # name: (soundfile format, subtype, MIME type)
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
}
FADE_S = 0.01


@dataclass
class Clip:
    """An encoded clip of a song.

    Attributes
    ----------
    data : bytes         the encoded audio
    mime : str           e.g. ``'audio/ogg'``
    start_s, end_s : float  span of the song, seconds
    sr : int
    n_samples : int      decoded length
    """

    data: bytes
    mime: str
    start_s: float
    end_s: float
    sr: int
    n_samples: int

    @property
    def duration(self) -> float:
        return self.n_samples / self.sr


def clip_span(peak_s: float, song_duration: float, clip_s: float = 3.0) -> tuple[float, float]:
    """A span of ``clip_s`` seconds centred on ``peak_s``, shifted to lie inside ``[0, song_duration]``.

    Returns
    -------
    (start_s, end_s) : tuple of float
        ``end_s - start_s == min(clip_s, song_duration)``.
    """
    if not clip_s > 0:
        raise ParameterError(f"clip_s must be positive, got {clip_s!r}")
    if not song_duration > 0:
        raise ParameterError(f"song_duration must be positive, got {song_duration!r}")
    clip_s = min(float(clip_s), float(song_duration))
    start = float(peak_s) - clip_s / 2
    start = min(max(start, 0.0), float(song_duration) - clip_s)
    return start, start + clip_s


def fade(y: np.ndarray, sr: int = SR, fade_s: float = FADE_S) -> np.ndarray:
    """Short linear fade in and out (removes clicks at cut points; the rest is untouched)."""
    n = min(int(fade_s * sr), len(y) // 2)
    if n < 1:
        return y
    y = y.copy()
    ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    y[:n] *= ramp
    y[len(y) - n:] *= ramp[::-1]
    return y


def encode(y: np.ndarray, sr: int = SR, fmt: str = "ogg", quality: float | None = None,
           out: str | os.PathLike | io.IOBase | None = None) -> bytes | None:
    """Encode mono float audio, without any normalisation: the one encoder of every sound audiovis serves or
    writes (clips, whole songs, dreams, auralisation, backward queries, uploads).

    The samples go to libsndfile in blocks of :data:`BLOCK_S` seconds through one :class:`soundfile.SoundFile`:
    libsndfile 1.2.2 (bundled with soundfile) crashes the whole process on a single Vorbis write of more than
    about 60 s at 22,050 Hz; block writes of the same audio are safe at any length.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Samples in [-1, 1] (values outside are clipped, never rescaled).
    sr : int
        Sample rate.
    fmt : str
        ``'ogg'`` (Vorbis, default), ``'mp3'``, ``'wav'`` or ``'flac'``.
    quality : float or None
        soundfile's ``compression_level`` (0 = best quality, 1 = smallest) for lossy formats.
    out : path, file object or None
        Where to write; ``None`` (default) returns the encoded bytes.

    Returns
    -------
    data : bytes or None
        The encoded file when ``out`` is ``None``.
    """
    if fmt not in FORMATS:
        raise ParameterError(f"audio format {fmt!r} is not one of {', '.join(FORMATS)}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or len(y) == 0:
        raise ParameterError(f"encode needs non-empty mono audio of shape (n,), got shape {y.shape}")
    container, subtype, _ = FORMATS[fmt]
    buf = io.BytesIO() if out is None else out
    kw = {"compression_level": quality} if quality is not None and fmt in ("ogg", "mp3", "flac") else {}
    block = max(1, int(BLOCK_S * sr))
    with sf.SoundFile(buf, "w", samplerate=int(sr), channels=1, format=container, subtype=subtype, **kw) as f:
        for i in range(0, len(y), block):
            f.write(np.clip(y[i:i + block], -1.0, 1.0))
    return buf.getvalue() if out is None else None


def match_level(y: np.ndarray, reference: np.ndarray, peak: float | None = 0.99,
                max_gain_db: float | None = None) -> tuple[np.ndarray, float]:
    """``y`` scaled to the RMS level of ``reference`` (never past ``peak``, so nothing clips, unless ``peak`` is
    None; never by more than ``max_gain_db`` when given), and the gain in dB: two players of a sound and a part
    of it then sound equally loud [shape=(n,)]."""
    y = np.asarray(y, np.float32)
    rms_y, rms_r = float(np.sqrt(np.mean(y ** 2))) if len(y) else 0.0, float(np.sqrt(np.mean(np.square(reference))))
    if rms_y <= 1e-9 or rms_r <= 1e-9:
        return y, 0.0
    g = rms_r / rms_y
    if peak is not None:
        g = min(g, peak / max(float(np.abs(y).max()), 1e-9))
    if max_gain_db is not None:
        g = min(g, 10.0 ** (max_gain_db / 20.0))
    return y * np.float32(g), 20.0 * float(np.log10(g))


def mime_type(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ParameterError(f"audio format {fmt!r} is not one of {', '.join(FORMATS)}")
    return FORMATS[fmt][2]


def cut(path: str | os.PathLike, start_s: float, duration_s: float, sr: int = SR) -> np.ndarray:
    """Decode ``duration_s`` seconds from ``start_s`` of an audio file [shape=(n,), float32, mono, ``sr``]."""
    if start_s < 0:
        raise ParameterError(f"clip start must be >= 0 s, got {start_s!r}")
    if not duration_s > 0:
        raise ParameterError(f"clip duration must be positive, got {duration_s!r}")
    return audio.load(path, sr=sr, offset=start_s, duration=duration_s, allow_silence=True)


def cut_and_encode(path: str | os.PathLike, start_s: float, duration_s: float, fmt: str = "ogg",
                   sr: int = SR, quality: float | None = None) -> Clip:
    """Cut a span of an audio file and encode it (see :func:`cut`, :func:`encode`)."""
    y = fade(cut(path, start_s, duration_s, sr), sr)
    return Clip(encode(y, sr, fmt, quality), mime_type(fmt), float(start_s), float(start_s) + len(y) / sr, sr,
                len(y))


def peak_clip(path: str | os.PathLike, peak_s: float, song_duration: float, clip_s: float = 3.0,
              fmt: str = "ogg", sr: int = SR) -> Clip:
    """The clip of ``clip_s`` seconds centred on a unit's peak (shifted inside the song)."""
    start, end = clip_span(peak_s, song_duration, clip_s)
    return cut_and_encode(path, start, end - start, fmt=fmt, sr=sr)
