"""A messy library: ingest and featurize skip what cannot be used, with a per-file reason, and lose nothing else.

The corpus is made here: good songs in every format and rate a real library has (WAV, FLAC, OGG Vorbis, MP3,
Opus; 8 kHz to 96 kHz; mono, stereo, 6 channels; non-ASCII and space-laden names; a file of exactly 30
minutes), and bad ones (zero bytes, text named .mp3, header only, truncated, corrupt, silent, too short, too
long, dangling symlink), plus duplicates (a byte copy and a symlink under other song ids).

Policies tested (see :func:`audiovis.catalog.ingest`):

- the duration bounds are inclusive: exactly 1800 s (the default ``max_duration``) is accepted, 1801 s is not;
- byte-identical files under two song ids: the first in song id order is kept, the others are skipped as
  "duplicate of song ...", and their plays count for the kept song;
- a truncated file whose remaining audio decodes (WAV, MP3, Vorbis stop early, as in any player) keeps what
  decodes, with a warning in the featurize report: where the header shows what is missing (WAV, AIFF, MP3), or
  where an Ogg stream (whose header claims no length) stops without its end-of-stream page; one whose decoder
  fails midway (FLAC "lost sync", a corrupt MP3 frame) is skipped at featurize;
- without a manifest, symlinks are followed inside the audio folder; one that points out of it is skipped with
  the reason (``--allow-outside`` allows it), as a manifest path that leaves it is.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_song

from audiovis.catalog import ingest
from audiovis.config import FeatureConfig
from audiovis.engines.local import featurize
from audiovis.features import FeatureStore
from audiovis.workspace import Workspace

SECONDS = 6.0

# (song id / file stem, extension, subtype, rate, channels)
GOOD = [
    ("a wav 22k", "wav", "PCM_16", 22050, 1),
    ("b flac 44k stereo", "flac", "PCM_16", 44100, 2),
    ("c vorbis", "ogg", "VORBIS", 22050, 1),
    ("d mp3 44k", "mp3", "MPEG_LAYER_III", 44100, 2),
    ("e opus 48k", "opus", "OPUS", 48000, 1),
    ("f 8k", "wav", "PCM_16", 8000, 1),
    ("g 96k", "flac", "PCM_24", 96000, 1),
    ("h six channels", "wav", "FLOAT", 48000, 6),
    ("Café – ñandú 日本の歌", "flac", "PCM_16", 22050, 1),
]


def _write(path, kind, sr, channels, rng, subtype, seconds=SECONDS):
    y = synth_song(kind, seconds, rng, sr)
    if channels > 1:
        y = np.stack([y * (1 - 0.1 * c) for c in range(channels)], 1)
    fmt = "OGG" if path.suffix == ".opus" else None
    sf.write(path, y, sr, subtype=subtype, format=fmt)


def _long_wav(path, seconds, sr=8000):
    """A long WAV written in one-minute chunks of a pulsed tone (cheap: 8 kHz, 16 bit)."""
    t = np.arange(sr * 60) / sr
    chunk = (0.3 * np.sin(2 * np.pi * 220 * t) * ((t % 1.0) < 0.5)).astype(np.float32)
    with sf.SoundFile(path, "w", sr, 1, "PCM_16") as f:
        left = int(seconds * sr)
        while left > 0:
            f.write(chunk[:left])
            left -= min(left, len(chunk))


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("messy")
    lib = root / "lib"
    lib.mkdir()
    good = {}
    for i, (sid, ext, sub, sr, ch) in enumerate(GOOD):
        p = lib / f"{sid}.{ext}"
        _write(p, ("low", "high", "noise")[i % 3], sr, ch, rng, sub)
        good[sid] = SECONDS
    (lib / "sub dir").mkdir()
    _write(lib / "sub dir" / "i nested.wav", "high", 22050, 1, rng, "PCM_16")
    good["i nested"] = SECONDS
    _long_wav(lib / "j thirty minutes.wav", 1800)                       # exactly the default limit: kept
    good["j thirty minutes"] = 1800.0
    # truncated WAV: the header is rewritten by libsndfile from the file size, 4 of 8 s remain and decode
    _write(lib / "k truncated.wav", "noise", 22050, 1, rng, "PCM_16", seconds=8.0)
    data = (lib / "k truncated.wav").read_bytes()
    (lib / "k truncated.wav").write_bytes(data[:44 + 4 * 22050 * 2])
    good["k truncated"] = 4.0

    bad = {}
    (lib / "empty.wav").write_bytes(b"")
    bad["empty"] = ("ingest", "file is empty (0 bytes)")
    (lib / "readme.mp3").write_text("This is not an MP3, it is a text file.\n" * 20)
    bad["readme"] = ("ingest", f"'{lib / 'readme.mp3'}': not a readable audio file: not audio libsndfile can "
                               f"decode (text/ASCII content); use WAV, FLAC, OGG Vorbis, Opus or MP3")
    _write(root / "x.ogg", "low", 22050, 1, rng, "VORBIS")
    (lib / "header only.ogg").write_bytes((root / "x.ogg").read_bytes()[:100])
    bad["header only"] = ("ingest", "not a readable audio file")
    _write(root / "x.flac", "low", 22050, 1, rng, "PCM_16")
    d = (root / "x.flac").read_bytes()
    (lib / "truncated.flac").write_bytes(d[:len(d) // 2])
    bad["truncated"] = ("featurize", "cannot decode")
    _write(root / "x.mp3", "noise", 44100, 1, rng, "MPEG_LAYER_III")
    c = bytearray((root / "x.mp3").read_bytes())
    c[len(c) // 3:len(c) // 3 + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    (lib / "corrupt.mp3").write_bytes(bytes(c))
    bad["corrupt"] = ("featurize", "cannot decode")
    sf.write(lib / "silence.wav", np.zeros(22050 * 5, np.float32), 22050)
    bad["silence"] = ("featurize", "audio is silent")
    _write(lib / "short.wav", "low", 22050, 1, rng, "PCM_16", seconds=1.0)
    bad["short"] = ("ingest", "shorter than one 3 s window")
    _long_wav(lib / "too long.wav", 1801, sr=1000)
    bad["too long"] = ("ingest", "1801 s is longer than the limit of 1800 s")
    os.symlink(root / "missing.wav", lib / "dangling.wav")
    bad["dangling"] = ("ingest", "file not found")
    # duplicates: a byte copy and a symlink of kept songs, under ids that sort after them
    (lib / "z copy of a.wav").write_bytes((lib / "a wav 22k.wav").read_bytes())
    bad["z copy of a"] = ("ingest", "duplicate of song 'a wav 22k'")
    os.symlink(lib / "c vorbis.ogg", lib / "z link to c.ogg")
    bad["z link to c"] = ("ingest", "duplicate of song 'c vorbis'")
    # a half-truncated Ogg Vorbis (its header claims no length): kept, with a warning at featurize
    r2 = np.random.default_rng(8)
    _write(root / "x16.ogg", "noise", 22050, 1, r2, "VORBIS", seconds=16.0)
    d = (root / "x16.ogg").read_bytes()
    (lib / "l truncated ogg.ogg").write_bytes(d[:len(d) // 2])
    good["l truncated ogg"] = sf.info(lib / "l truncated ogg.ogg").frames / 22050
    # folder mode follows symlinks, but not out of the audio folder (as a manifest may not point out of it)
    os.symlink(root / "x16.ogg", lib / "outside link.ogg")
    bad["outside link"] = ("ingest", f"'outside link.ogg' is a symlink to '{(root / 'x16.ogg').resolve()}', "
                                     f"outside the audio folder '{lib.resolve()}'; skipped (pass --allow-outside "
                                     f"to allow it)")

    # every song, good or bad, has listeners; the duplicates' plays must end up on the kept songs
    ids = sorted(good) + sorted(bad)
    with open(root / "plays.tsv", "w", encoding="utf-8") as f:
        for u in range(12):
            for j, sid in enumerate(ids):
                if (u + j) % 3:
                    f.write(f"user{u}\t{sid}\t{1 + (u * j) % 5}\n")
    return {"lib": lib, "plays": root / "plays.tsv", "good": good, "bad": bad, "root": root}


@pytest.fixture(scope="module")
def messy_ws(messy, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws") / "ws")
    summary = ingest(ws, messy["lib"], messy["plays"], progress=False)
    feat = featurize(ws, n_jobs=2, progress=False)
    return ws, summary, feat


def _reasons(ws, stage):
    return {item: reason for _, item, reason in ws.report(stage)}


def test_ingest_skips_each_bad_file_with_its_reason(messy, messy_ws):
    ws, summary, _ = messy_ws
    reasons = _reasons(ws, "ingest")
    for sid, (stage, msg) in messy["bad"].items():
        if stage == "ingest":
            assert msg in reasons[sid], (sid, reasons.get(sid))
    assert summary["duplicates"] == 2
    assert summary["songs"] == len(messy["good"]) + 3          # + the three that fail only when decoded
    kept = set(ws.song_ids())
    assert set(messy["good"]) <= kept
    assert not kept & {s for s, (st, _) in messy["bad"].items() if st == "ingest"}


def test_duplicates_keep_their_plays(messy, messy_ws):
    ws, summary, _ = messy_ws
    plays = {}
    for ln in messy["plays"].read_text(encoding="utf-8").splitlines():
        _, s, n = ln.split("\t")
        plays[s] = plays.get(s, 0) + float(n)
    P = ws.play_matrix()
    col = {sid: i for i, sid in enumerate(ws.song_ids())}
    assert P[:, col["a wav 22k"]].sum() == plays["a wav 22k"] + plays["z copy of a"]
    assert P[:, col["c vorbis"]].sum() == plays["c vorbis"] + plays["z link to c"]
    assert summary["unknown_song_pairs"] == sum(1 for ln in messy["plays"].read_text(encoding="utf-8").splitlines()
                                                if ln.split("\t")[1] in messy["bad"]
                                                and messy["bad"][ln.split("\t")[1]][0] == "ingest"
                                                and not ln.split("\t")[1].startswith("z "))


def test_featurize_skips_undecodable_and_keeps_every_good_song(messy, messy_ws):
    ws, _, feat = messy_ws
    reasons = _reasons(ws, "featurize")
    failing = {sid for sid, (st, _) in messy["bad"].items() if st == "featurize"}
    assert set(reasons) == failing | {"k truncated", "l truncated ogg"}         # kept, with a warning row
    cut = (messy["lib"] / "k truncated.wav").resolve()
    assert reasons["k truncated"] == (f"'{cut}': decoded 4.0 s of 8.0 s (file truncated?); "
                                      f"kept the decoded part")
    cut = (messy["lib"] / "l truncated ogg.ogg").resolve()
    assert reasons["l truncated ogg"] == (f"'{cut}': decoded {messy['good']['l truncated ogg']:.1f} s, but the "
                                          f"Ogg stream stops without its end-of-stream page (file truncated?); "
                                          f"kept the decoded part")
    assert feat["warnings"] == 2
    for sid in failing:
        assert messy["bad"][sid][1] in reasons[sid] and sid in reasons[sid]   # the message names the file
    assert feat["failed"] == len(failing) and feat["songs"] == len(messy["good"])
    store = FeatureStore(ws)
    cfg = FeatureConfig()
    status = {s["song_id"]: s["status"] for s in ws.songs()}
    for sid, seconds in messy["good"].items():
        idx = ws.song_index(sid)
        assert status[sid] == "ok"
        expect = 1 + int(round(seconds * cfg.sr)) // cfg.hop_length
        assert abs(store.n_frames(idx) - expect) <= 2, sid       # every rate and format, resampled to 22,050
        assert len(store.song_windows(idx)) == store.n_frames(idx) // cfg.window_frames
        assert np.isfinite(np.asarray(store.song(idx), dtype=np.float32)).all()
    for sid in failing:
        assert store.n_frames(ws.song_index(sid)) == 0 and status[sid] == "failed"


def test_six_channels_and_96k_are_mixed_and_resampled(messy, messy_ws):
    ws, _, _ = messy_ws
    rows = {s["song_id"]: s for s in ws.songs()}
    assert rows["h six channels"]["channels"] == 6 and rows["g 96k"]["sr"] == 96000
    assert rows["f 8k"]["sr"] == 8000
    store = FeatureStore(ws)
    # the 8 kHz song has no energy above its 4 kHz Nyquist frequency after resampling; the 96 kHz one does
    import librosa
    c = store.cfg
    above = librosa.mel_frequencies(n_mels=c.n_mels, fmin=0.0, fmax=c.sr / 2) > 5000
    f8 = np.asarray(store.song(ws.song_index("f 8k")), dtype=np.float32)
    f96 = np.asarray(store.song(ws.song_index("g 96k")), dtype=np.float32)
    assert np.percentile(f8[:, above], 99) < -90 and np.median(f96[:, above]) > -50


def test_longer_limit_is_a_setting(messy, tmp_path):
    ws = Workspace(tmp_path / "ws")
    s = ingest(ws, messy["lib"], messy["plays"], max_duration=3600, progress=False)
    assert "too long" in ws.song_ids()
    assert s["songs"] == len(messy["good"]) + 4
    s = ingest(ws, messy["lib"], messy["plays"], max_duration=1799, progress=False)
    reasons = _reasons(ws, "ingest")
    assert "1800 s is longer than the limit of 1799 s" in reasons["j thirty minutes"]


def test_rerun_after_fixing_a_file_picks_it_up(messy, tmp_path):
    """Report rows are per run: a file fixed by the user is featurized on the next run, the rest is reused."""
    import shutil
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("a wav 22k.wav", "c vorbis.ogg", "f 8k.wav", "silence.wav"):
        shutil.copy(messy["lib"] / name, lib / name)
    plays = tmp_path / "plays.tsv"
    plays.write_text("u1\ta wav 22k\t2\nu1\tsilence\t1\nu2\tc vorbis\t3\nu2\tf 8k\t1\n")
    ws = Workspace(tmp_path / "ws")
    ingest(ws, lib, plays, progress=False)
    assert featurize(ws, n_jobs=1, progress=False)["failed"] == 1
    assert list(_reasons(ws, "featurize")) == ["silence"]
    rng = np.random.default_rng(1)
    y = synth_song("noise", 5.0, rng)
    sf.write(lib / "silence.wav", y, 22050)          # same name, now audible
    ws.clear_done("featurize")
    s = featurize(ws, n_jobs=1, progress=False)
    assert s["failed"] == 0 and s["songs"] == 4 and ws.report("featurize") == []


class _Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    import torch

    from audiovis.errors import WorkspaceError
    from audiovis.model import AudioCNN, ModelConfig, load_checkpoint, save_checkpoint
    real = tmp_path / "real.pt"
    save_checkpoint(real, AudioCNN(ModelConfig(channels=(8, 8), pools=(4,), dense=(8,), n_factors=4)),
                    {"train": {"preset": "small"}})
    good = torch.load(real, weights_only=True)
    evil = tmp_path / "model.pt"
    torch.save({**good, "history": _Payload(tmp_path / "pwned")}, evil)
    with pytest.raises(WorkspaceError, match=r"checkpoint '.*model\.pt' was refused: .*weights_only=True.*"
                                             r"GLOBAL posix\.system"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    evil.write_bytes(real.read_bytes()[:1000])
    with pytest.raises(WorkspaceError, match=r"checkpoint '.*model\.pt' is truncated or not a checkpoint"):
        load_checkpoint(evil)
    with pytest.raises(WorkspaceError, match="checkpoint '.*nope.pt' not found"):
        load_checkpoint(tmp_path / "nope.pt")
    _, extra = load_checkpoint(real)                                     # a real one still loads
    assert extra["train"]["preset"] == "small"
