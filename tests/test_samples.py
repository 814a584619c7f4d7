"""Checks of the embedded demo dataset in samples/ (see samples/README.md).

The learnability test fits a small WMF model (implicit's ALS) on the synthetic
play counts and checks that the song factors linearly encode the audible
concepts (groove, lead) and the inaudible artist factor.
"""
from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
N_SONGS = 480
MIN_USERS = 1000


def read_csv(name):
    with open(SAMPLES / name, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def songs():
    return read_csv("songs.csv")


@pytest.fixture(scope="module")
def plays():
    rows = []
    with open(SAMPLES / "plays.tsv") as f:
        for line in f:
            u, s, c = line.rstrip("\n").split("\t")
            rows.append((u, s, int(c)))
    return rows


def test_files_exist(songs):
    for name in ["README.md", "generate.py", "songs.csv", "segments.csv", "hidden.csv",
                 "plays.tsv", "pcm_sha256.txt"]:
        assert (SAMPLES / name).is_file(), name
    assert len(songs) == N_SONGS
    assert len({s["song_id"] for s in songs}) == N_SONGS
    for s in songs:
        assert (SAMPLES / s["file"]).is_file(), s["file"]
        assert 20.0 <= float(s["duration_s"]) <= 30.0
    size = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert size <= 30e6, f"samples/ is {size / 1e6:.1f} MB"


def test_song_columns(songs):
    assert list(songs[0]) == ["song_id", "file", "groove", "lead", "tempo_class", "bpm", "key",
                              "mode", "density", "harmony", "bass", "pad", "lead_entry_s", "duration_s"]
    assert len({s["groove"] for s in songs}) >= 8
    leads = Counter(s["lead"] for s in songs)
    assert len(leads) - ("none" in leads) >= 6
    assert 0.05 < leads["none"] / N_SONGS < 0.25
    for s in songs:
        assert s["tempo_class"] in {"slow", "medium", "fast"}
        assert s["mode"] in {"major", "minor"}
        assert s["density"] in {"sparse", "dense"}
        assert 60 <= int(s["bpm"]) <= 260
        assert s["key"] in {"C", "D", "E"}
        assert s["harmony"] in {"piano", "rhodes", "jazz_guitar", "nylon_guitar", "harpsichord"}
        assert s["bass"] in {"acoustic_bass", "fingered_bass", "picked_bass", "fretless_bass"}
        assert (s["pad"] != "") == (s["density"] == "dense")
        if s["lead"] == "none":
            assert s["lead_entry_s"] == ""
        else:
            assert 0.0 <= float(s["lead_entry_s"]) < float(s["duration_s"]) - 3.5
    late = [s for s in songs if s["lead"] != "none" and float(s["lead_entry_s"]) > 0]
    with_lead = [s for s in songs if s["lead"] != "none"]
    assert 0.25 < len(late) / len(with_lead) < 0.55


def test_accompaniment_independent_of_groove(songs):
    """A groove is its rhythm and drums: every groove is played by (nearly) every harmony and bass instrument."""
    for g in {s["groove"] for s in songs}:
        assert len({s["harmony"] for s in songs if s["groove"] == g}) >= 4, g
        assert len({s["bass"] for s in songs if s["groove"] == g}) >= 3, g


def test_tempo_classes_audibly_apart(songs):
    """Within a groove, each tempo class is ~1.25x the one below, with no overlap (a listener hears 'fast')."""
    by = defaultdict(lambda: defaultdict(list))
    for s in songs:
        by[s["groove"]][s["tempo_class"]].append(int(s["bpm"]))
    for g, cls in by.items():
        assert max(cls["slow"]) * 1.1 < min(cls["medium"]), g
        assert max(cls["medium"]) * 1.1 < min(cls["fast"]), g


def test_audio_decodes(songs):
    sf = pytest.importorskip("soundfile")
    for s in songs[::50]:
        y, sr = sf.read(SAMPLES / s["file"], dtype="float32")
        assert sr == 22050
        assert y.ndim == 1, "mono"
        assert abs(len(y) / sr - float(s["duration_s"])) < 0.05
        rms = float(np.sqrt(np.mean(y ** 2)))
        assert 0.03 < rms < 0.3, rms
        assert np.abs(y).max() < 1.0


def test_segments_cover_songs(songs):
    segs = defaultdict(list)
    for r in read_csv("segments.csv"):
        segs[(r["song_id"], r["concept"])].append((float(r["start_s"]), float(r["end_s"]), r["value"]))
    for s in songs:
        parts = sorted(segs[(s["song_id"], "lead")])
        assert parts, s["song_id"]
        assert parts[0][0] == 0.0
        assert abs(parts[-1][1] - float(s["duration_s"])) < 1e-6
        for (_, a1, _), (b0, _, _) in zip(parts, parts[1:]):
            assert abs(a1 - b0) < 1e-6
        assert parts[-1][2] == s["lead"]
        if s["lead"] != "none" and float(s["lead_entry_s"]) > 0:
            assert parts[0][2] == "none" and abs(parts[0][1] - float(s["lead_entry_s"])) < 1e-6


def test_plays_log(songs, plays):
    ids = {s["song_id"] for s in songs}
    users = {u for u, _, _ in plays}
    assert len(users) >= MIN_USERS
    assert all(s in ids for _, s, _ in plays)
    assert all(c >= 1 for _, _, c in plays)
    assert len({(u, s) for u, s, _ in plays}) == len(plays), "one line per (user, song)"
    per_user = Counter(u for u, _, _ in plays)
    assert 30 <= np.mean(list(per_user.values())) <= 100
    hidden = read_csv("hidden.csv")
    assert [h["song_id"] for h in hidden] == [s["song_id"] for s in songs]


# --------------------------------------------------------------------------
def _probe_accuracy(x, labels, train, test, ridge=1.0):
    """One-vs-rest ridge least-squares classifier; returns test accuracy."""
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    t = np.eye(len(classes))[y]
    w = np.linalg.solve(z[train].T @ z[train] + ridge * np.eye(z.shape[1]), z[train].T @ t[train])
    return float(np.mean(np.argmax(z[test] @ w, 1) == y[test]))


def _r2(x, y, train, test, ridge=1.0):
    """Held-out R^2 (pooled over columns of y) of a ridge regression y ~ x."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    w = np.linalg.solve(z[train].T @ z[train] + ridge * np.eye(z.shape[1]), z[train].T @ y[train])
    resid = y[test] - z[test] @ w
    return 1 - float((resid ** 2).sum() / ((y[test] - y[train].mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def song_factors(songs, plays):
    pytest.importorskip("implicit")
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix

    sid = {s["song_id"]: i for i, s in enumerate(songs)}
    uid = {u: i for i, u in enumerate(sorted({u for u, _, _ in plays}))}
    rows = [uid[u] for u, _, _ in plays]
    cols = [sid[s] for _, s, _ in plays]
    vals = np.log1p([c for _, _, c in plays]).astype(np.float32)
    ui = csr_matrix((vals, (rows, cols)), shape=(len(uid), len(sid)))
    model = AlternatingLeastSquares(factors=32, regularization=0.05, alpha=10.0, iterations=15,
                                    random_state=0, use_gpu=False)
    model.fit(ui, show_progress=False)
    f = model.item_factors
    f = f.to_numpy() if hasattr(f, "to_numpy") else np.asarray(f)
    return f


def test_learnability(songs, song_factors):
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(songs))
    train, test = perm[:int(0.7 * len(songs))], perm[int(0.7 * len(songs)):]
    report = {}
    for concept in ["groove", "lead", "tempo_class", "mode", "density"]:
        labels = [s[concept] for s in songs]
        acc = _probe_accuracy(song_factors, labels, train, test)
        chance = max(Counter(labels[i] for i in test).values()) / len(test)
        report[concept] = (acc, chance)
        print(f"probe song factors -> {concept}: accuracy {acc:.3f} (majority chance {chance:.3f})")
    for concept in ["groove", "lead"]:
        acc, chance = report[concept]
        assert acc > 2 * chance, (concept, acc, chance)


def test_hidden_factor_is_real(songs, song_factors):
    """The song factors carry the inaudible artist vectors (hidden.csv), which
    the audible concepts cannot explain (artists are assigned independently)."""
    hidden = read_csv("hidden.csv")
    h = np.array([[float(r[f"h{j}"]) for j in range(8)] for r in hidden])
    onehot = np.hstack([
        np.array([[s[c] == v for v in sorted({t[c] for t in songs})] for s in songs], float)
        for c in ["groove", "lead", "tempo_class", "mode", "density"]])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(songs))
    train, test = perm[:int(0.7 * len(songs))], perm[int(0.7 * len(songs)):]
    r2_factors = _r2(song_factors, h, train, test, ridge=10.0)
    r2_concepts = _r2(onehot, h, train, test, ridge=10.0)
    print(f"held-out R^2 of hidden artist vectors: from song factors {r2_factors:.3f}, "
          f"from audible concepts {r2_concepts:.3f}")
    assert r2_factors > 0.2
    assert r2_factors > r2_concepts + 0.15
