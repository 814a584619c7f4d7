"""Decode, mix to mono, resample, and validate audio input."""
from __future__ import annotations

import codecs
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

SR = 22050
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")

# a decode that stops this much short of what the header promises is reported (both must hold)
TRUNCATED_FRACTION = 0.01
TRUNCATED_SECONDS = 0.5


class AudioWarning(UserWarning):
    """A file was used, but not all of it: e.g. it is truncated and only the part that decodes was kept.

    Attributes: ``path``; ``decoded_s``, the seconds kept; ``claimed_s``, the seconds its header claims (None
    when the format claims none, as Ogg: its stream stops without its end-of-stream page).
    """

    def __init__(self, message: str, path: str | None = None, decoded_s: float | None = None,
                 claimed_s: float | None = None):
        super().__init__(message)
        self.path, self.decoded_s, self.claimed_s = path, decoded_s, claimed_s


@dataclass
class AudioInfo:
    """What the file header says."""

    path: str
    sr: int
    channels: int
    duration: float


def info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of an audio file without decoding it.

    Raises
    ------
    AudioError
        The file is missing, not audio, or has no samples; the message names the file.
    """
    path = Path(path)
    with _quiet_decoder(path), _open(path) as f:
        return _header(f, path)


_USE = "use WAV, FLAC, OGG Vorbis, Opus or MP3"


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is not a regular file ("a FIFO, a named pipe", "a socket", "a folder", ...), from
    one ``stat`` that never blocks (opening a FIFO waits for a writer forever); None for a regular file (or a
    symlink to one) and for a missing path, which the caller reports as missing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, what in ((stat.S_ISREG, None), (stat.S_ISFIFO, "a FIFO, a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "not a regular file"


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioError(f"'{path}': file not found")
    what = not_regular(path)
    if what is not None:
        raise AudioError(f"'{path}': not a regular file ({what}); skipped without reading it")
    if path.stat().st_size == 0:
        raise AudioError(f"'{path}': file is empty (0 bytes)")
    try:
        return sf.SoundFile(str(path))
    except Exception as e:  # libsndfile's messages are terse or wrong; say what the file is and what to do
        what = _not_audio(path)
        msg = _short(e).removeprefix(f"Error opening {str(path)!r}: ")
        if what is None and "does not exist or is not a regular file" in msg:   # what libmpg123's probe says
            what = "unrecognised format: no WAV, AIFF, FLAC, Ogg or MP3 header"
        if what is not None:
            raise AudioError(f"'{path}': not a readable audio file: not audio libsndfile can decode ({what}); "
                             f"{_USE}") from None
        raise AudioError(f"'{path}': not a readable audio file ({msg}); {_USE}") from None


# what a file that is not audio starts with
_MAGIC = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive or office document"),
          (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"\x7fELF", "a program"), (b"\x1f\x8b", "a gzip archive"), (b"Rar!", "a RAR archive"),
          (b"7z\xbc\xaf", "a 7-Zip archive"), (b"0&\xb2u\x8ef\xcf\x11", "a WMA/ASF file"))


def _not_audio(path: Path, n: int = 4096) -> str | None:
    """What a file that libsndfile refused is, when it is plainly not audio: text, a document, an image, an
    archive, an MP4/M4A container (AAC). None when it does not look like anything known."""
    try:
        with open(path, "rb") as f:
            head = f.read(n)
    except OSError:
        return None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        return "an MP4/M4A container (AAC or ALAC audio): convert it to FLAC, Ogg or MP3"
    if b"\0" in head:
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)   # a cut last character is fine
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        return "text/ASCII content" if text.isascii() else "text (UTF-8) content"
    return None


def _header(f: sf.SoundFile, path: Path) -> AudioInfo:
    duration = f.frames / f.samplerate if f.samplerate else 0.0
    if f.frames <= 0 or duration <= 0:
        raise AudioError(f"'{path}': audio has no samples")
    return AudioInfo(str(path), int(f.samplerate), int(f.channels), float(duration))


# libsndfile's log of a WAV/AIFF whose sample data chunk is cut short: "data : 352800 (should be 176400)"
_SHORT_CHUNK = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# ... and of an AIFF whose COMM chunk claims more frames than its SSND chunk holds
_COMM_FRAMES = re.compile(r"Frame count read from 'COMM' chunk \((\d+)\) not equal to frame count\s*"
                          r"(?:\*\*\*)?\s*calculated from length of 'SSND' chunk \((\d+)\)")


def _placeholder(size: int) -> bool:
    """A size that streaming writers leave in a header when the length is not known yet: 0xFFFFFFFF, 0x7FFFFFFF,
    SoX's 0x7FFFF000 (or a few bytes less, the header's own size taken off). It says nothing about the length;
    any other size, 2^31 included, is a claim."""
    return 0xFFFFF000 <= size <= 0xFFFFFFFF or 0x7FFFF000 - 64 <= size <= 0x7FFFFFFF


def _declared_frames(f: sf.SoundFile) -> int:
    """Frames the file says it has. libsndfile's ``frames`` is already cut to what a truncated WAV or AIFF
    holds; the size its header declares is only in libsndfile's log. Other formats: ``frames``."""
    if f.format not in ("WAV", "WAVEX", "AIFF"):
        return f.frames
    log = f.extra_info
    m = _COMM_FRAMES.search(log)
    if m is not None and int(m.group(2)) == f.frames and int(m.group(1)) > f.frames \
            and not _placeholder(int(m.group(1))):
        return int(m.group(1))
    m = _SHORT_CHUNK.search(log)
    if m is None:
        return f.frames
    declared, present = int(m.group(2)), int(m.group(3))
    if present <= 0 or declared <= present or _placeholder(declared):
        return f.frames
    head = 8 if m.group(1) == "SSND" else 0            # an SSND chunk's offset and block size come first
    return round(f.frames * (declared - head) / max(present - head, 1))


@lru_cache(maxsize=1)
def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return tuple(table)


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, over the page with its CRC zeroed)."""
    t, crc = _ogg_crc_table(), 0
    for b in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ t[((crc >> 24) ^ b) & 0xFF]
    return crc


def _ogg_unfinished(path: Path) -> bool:
    """Whether an Ogg file (Vorbis, Opus, FLAC in Ogg) stops without its end-of-stream page: its last whole
    page (checksum verified) lacks the end-of-stream flag. Ogg headers claim no length, so this is how a cut
    copy shows; libsndfile counts the frames of what is left and decodes it without a word."""
    try:
        with open(path, "rb") as f:      # a page is at most 65,307 bytes: the last whole one is in the tail
            f.seek(max(0, os.fstat(f.fileno()).st_size - 2 * 65307))
            tail = f.read()
    except OSError:
        return False
    p = len(tail)
    while (p := tail.rfind(b"OggS", 0, p)) >= 0:
        if p + 27 > len(tail) or tail[p + 4] != 0:
            continue
        n = tail[p + 26]
        body = sum(tail[p + 27:p + 27 + n]) if p + 27 + n <= len(tail) else -1
        end = p + 27 + n + body
        if body < 0 or end > len(tail):
            continue                      # a partial page (or "OggS" inside one)
        page = tail[p:end]
        if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != struct.unpack_from("<I", page, 22)[0]:
            continue
        return not page[5] & 0x04
    return False


def load(path: str | os.PathLike, sr: int = SR, mono: bool = True, offset: float = 0.0,
         duration: float | None = None, max_duration: float | None = None,
         min_duration: float = 0.0, allow_silence: bool = False,
         on_warning: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode an audio file to float32, mix to mono and resample.

    Parameters
    ----------
    path : str or Path
    sr : int
        Target sampling rate (22,050 Hz, the paper's front end).
    offset, duration : float
        Read only this span, in seconds.
    max_duration : float or None
        Refuse longer files (only the span read counts when ``duration`` is given).
    min_duration : float
        Refuse files shorter than this.
    allow_silence : bool
        Accept digital silence (refused by default: it carries nothing to learn).
    on_warning : callable or None
        Called with a message (naming the file) when the file is used but not all of it: a truncated file
        that decodes only in part (at least 1% and 0.5 s less than its header says; for Ogg, which claims no
        length, a stream that stops without its end-of-stream page) keeps what decodes.
        Default: ``warnings.warn(AudioWarning(message, path, decoded_s, claimed_s))``.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
    """
    path = Path(path)
    with _quiet_decoder(path), _open(path) as f:
        meta = _header(f, path)
        span = meta.duration - offset if duration is None else min(duration, meta.duration - offset)
        if max_duration is not None and span > max_duration:
            raise AudioError(f"'{path}': {meta.duration:.1f} s is longer than the limit of {max_duration:.0f} s; "
                             f"trim it or raise the limit")
        if meta.duration < min_duration:
            raise AudioError(f"'{path}': {meta.duration:.2f} s is shorter than the minimum of "
                             f"{min_duration:.2f} s")
        file_sr = meta.sr
        start = int(round(offset * file_sr))
        stop = None if duration is None else start + int(round(duration * file_sr))
        # one open for the header and the samples (sf.read would open the file a second time)
        try:
            if start:
                f.seek(min(start, f.frames))
            y = f.read(max(0, (f.frames if stop is None else min(stop, f.frames)) - start), dtype="float32",
                       always_2d=True)
        except Exception as e:
            raise AudioError(f"'{path}': cannot decode ({_short(e)}); the file may be truncated or "
                             f"corrupt") from None
        if y.shape[0] == 0:
            raise AudioError(f"'{path}': decoded no samples; the file may be truncated or corrupt")
        declared = _declared_frames(f)
        expected = (declared if stop is None else min(stop, declared)) - start
        missing = expected - y.shape[0]
        got = y.shape[0] / file_sr
        note = None
        if missing > TRUNCATED_FRACTION * expected and missing > TRUNCATED_SECONDS * file_sr:
            note = AudioWarning(f"'{path}': decoded {got:.1f} s of {expected / file_sr:.1f} s (file truncated?); "
                                f"kept the decoded part", str(path), got, expected / file_sr)
        elif f.format == "OGG" and start + y.shape[0] >= f.frames and _ogg_unfinished(path):
            note = AudioWarning(f"'{path}': decoded {got:.1f} s, but the Ogg stream stops without its "
                                f"end-of-stream page (file truncated?); kept the decoded part", str(path), got)
    if note is not None:                # out of the decoder's stderr redirection (see _quiet_decoder)
        if on_warning is None:
            warnings.warn(note, stacklevel=2)
        else:
            on_warning(str(note))
    if not mono:
        y = y.T
    elif y.shape[1] == 1:
        y = y[:, 0]                       # (n, 1) -> (n,), contiguous; y.mean(axis=1) took 25% of decoding time
    else:
        y = y @ np.full(y.shape[1], 1.0 / y.shape[1], np.float32)      # mean over channels, one fast pass
    peak = float(np.max(np.abs(y)))      # NaN and infinity propagate into the peak: one pass checks both
    if not np.isfinite(peak):
        raise AudioError(f"'{path}': decoded samples contain NaN or infinity")
    if not allow_silence and peak < 1e-5:
        raise AudioError(f"'{path}': audio is silent (peak below -100 dBFS)")
    return resample(y, file_sr, sr)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling with soxr (what librosa uses by default)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr
    out = soxr.resample(y.T if y.ndim == 2 else y, orig_sr, target_sr, quality="HQ")
    return np.asarray(out, dtype=np.float32).T      # soxr returns float32 for float32 input: no copy


def find_audio(root: str | os.PathLike) -> list[Path]:
    """Audio files under ``root`` (recursively, following symlinks), sorted."""
    root = Path(root)
    out = []
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for f in files:
            if f.lower().endswith(AUDIO_EXTENSIONS) and not f.startswith("."):
                out.append(Path(dirpath) / f)
    return sorted(out)


# what libmpg123 writes to stderr about a damaged MP3 ("Note: Illegal Audio-MPEG-Header 0x... at offset N.",
# "Note: Trying to resync...", "[src/libmpg123/parse.c:...] error: Giving up resync ..."); libsndfile reports
# the failures that matter through its own error codes
_MPG123_NOISE = re.compile(rb"^(?:Note: |Warning: |\[[^\]\n]*libmpg123[^\]\n]*\] )")
_MPEG_SUFFIXES = (".mp3", ".mp2", ".mp1", ".mpga", ".mpeg")
_quiet_lock = threading.Lock()
_quiet = {"users": 0, "saved": None, "sink": None}


def _looks_mpeg(path: Path) -> bool:
    if path.suffix.lower() in _MPEG_SUFFIXES:
        return True
    if not_regular(path) is not None:       # never opened: a FIFO would block; _open says what it is
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


@contextmanager
def _quiet_decoder(path: Path) -> Iterator[None]:
    """Keep libmpg123's notes about damaged frames off stderr while an MP3 is opened and decoded.

    The notes are written by C code straight to file descriptor 2, so fd 2 is pointed at a temporary file
    meanwhile (once for all the threads decoding at the same time: the first in redirects it, the last out
    restores it); what was written there that is not libmpg123's is then passed on to stderr, so another
    thread's real error is delayed, never lost. Other formats are decoded as they are.
    """
    if not _looks_mpeg(Path(path)):
        yield
        return
    with _quiet_lock:
        if _quiet["users"] == 0:
            _redirect_stderr()
        quiet = _quiet["sink"] is not None
        _quiet["users"] += quiet
    try:
        yield
    finally:
        if quiet:
            with _quiet_lock:
                _quiet["users"] -= 1
                if _quiet["users"] == 0:
                    _restore_stderr()


def _redirect_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        sink = tempfile.TemporaryFile()
    except (OSError, ValueError):
        return
    try:
        saved = os.dup(2)
    except OSError:                         # no fd 2 to redirect (a daemon): decode as it is
        sink.close()
        return
    try:
        os.dup2(sink.fileno(), 2)
    except OSError:
        os.close(saved)
        sink.close()
        return
    _quiet.update(saved=saved, sink=sink)


def _restore_stderr() -> None:
    saved, sink = _quiet["saved"], _quiet["sink"]
    _quiet.update(saved=None, sink=None)
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)
    sink.seek(0)
    rest = b"".join(ln for ln in sink.read().splitlines(keepends=True) if not _MPG123_NOISE.match(ln))
    sink.close()
    while rest:
        rest = rest[os.write(2, rest):]


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[-1] if msg else type(e).__name__
