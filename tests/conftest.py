"""Seeded synthetic fixtures: a tiny corpus of tone/noise songs with a listening log that depends on them."""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import soundfile as sf

SR = 22050
KINDS = ("low", "high", "noise")


def synth_song(kind: str, seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Three audibly different kinds: a low tone pulse, a high tone pulse, bursts of noise."""
    t = np.arange(int(seconds * sr)) / sr
    bpm = rng.uniform(90, 150)
    env = (np.sin(2 * np.pi * bpm / 60 * t) > 0.3).astype(np.float32)
    if kind == "low":
        y = np.sin(2 * np.pi * rng.uniform(100, 160) * t)
    elif kind == "high":
        y = np.sin(2 * np.pi * rng.uniform(1800, 2600) * t)
    else:
        y = rng.standard_normal(len(t)) * 0.5
    y = 0.3 * env * y + 0.01 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def make_corpus(root, n_songs: int = 30, n_users: int = 60, seconds: float = 7.0, seed: int = 0):
    """Write songs (mixed formats and rates), a play log, a manifest and labels under ``root``."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    kinds = [KINDS[i % len(KINDS)] for i in range(n_songs)]
    formats = [("wav", "PCM_16", SR), ("flac", "PCM_16", 44100), ("ogg", "VORBIS", SR)]
    rows = []
    for i, kind in enumerate(kinds):
        ext, sub, sr = formats[i % len(formats)]
        y = synth_song(kind, seconds, rng, sr)
        if i % 4 == 1:
            y = np.stack([y, y * 0.8], 1)  # some stereo
        sid = f"song{i:03d}"
        sf.write(audio / f"{sid}.{ext}", y, sr, subtype=sub)
        rows.append((sid, f"{sid}.{ext}", kind))
    with open(root / "manifest.csv", "w") as f:
        f.write("song_id,file,kind\n")
        for r in rows:
            f.write(",".join(r) + "\n")
    with open(root / "plays.tsv", "w") as f:
        for u in range(n_users):
            fav = KINDS[u % len(KINDS)]
            for i, kind in enumerate(kinds):
                p = 0.7 if kind == fav else 0.05
                if rng.random() < p:
                    f.write(f"user{u}\tsong{i:03d}\t{int(rng.integers(1, 20))}\n")
    return {"audio_dir": audio, "plays": root / "plays.tsv", "manifest": root / "manifest.csv",
            "labels": root / "manifest.csv", "kinds": kinds}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_configs():
    from audiovis.config import FactorConfig, FeatureConfig
    from audiovis.index import IndexConfig
    from audiovis.train import TrainConfig
    return dict(feature=FeatureConfig(), factors=FactorConfig(factors=8, iterations=10, test_fraction=0.3),
                training=TrainConfig(preset="auto", epochs=4, steps_per_epoch=8, batch_size=16),   # from scratch
                index=IndexConfig(k=5, batch_windows=16, checkpoint_every=1))


@pytest.fixture(scope="session")
def built_ws(corpus, tiny_configs, tmp_path_factory):
    """A workspace with every stage run on the tiny corpus (shared by read-only tests)."""
    from audiovis.pipeline import run_pipeline
    ws = tmp_path_factory.mktemp("ws") / "ws"
    out = run_pipeline(ws, corpus["audio_dir"], corpus["plays"], corpus["manifest"], corpus["labels"],
                       n_jobs=1, progress=False, **tiny_configs)
    return ws, out


LONG_ID = "long10min"


@pytest.fixture(scope="session")
def long_ws(built_ws, tmp_path_factory):
    """A copy of the built workspace with one 10-minute OGG Vorbis song added (cold-start ``add``, no
    retraining): the song view of a long song, whose encode once crashed libsndfile and the whole server."""
    import shutil

    from audiovis.append import add_songs
    from audiovis.clips import encode
    root = tmp_path_factory.mktemp("long")
    ws = root / "ws"
    shutil.copytree(built_ws[0], ws)
    rng = np.random.default_rng(10)
    y = np.concatenate([synth_song(KINDS[i % 3], 60.0, rng) for i in range(10)])     # 600 s, kinds alternate
    song = root / f"{LONG_ID}.ogg"
    encode(y, SR, "ogg", out=song)
    out = add_songs(ws, [song])
    assert out["added"] and not out["failed"], out
    return ws, song
