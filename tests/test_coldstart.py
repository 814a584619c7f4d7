"""Cold start: embed, recommend, add, similarity search and bad uploads (on the tiny built workspace)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, synth_song

from audiovis import append, results, uploads
from audiovis import coldstart as cs
from audiovis.ann import VectorIndex, _unit_rows, exact_search, recall_at_k
from audiovis.append import add_songs
from audiovis.errors import AudioError, ParameterError
from audiovis.features import song_frames
from audiovis.index import UnitIndex
from audiovis.workspace import Workspace


@pytest.fixture(scope="module")
def ws(built_ws):
    return Workspace(built_ws[0])


@pytest.fixture(scope="module")
def new_songs(tmp_path_factory):
    """Three new songs, one of each kind, not in the catalogue."""
    d = tmp_path_factory.mktemp("new")
    rng = np.random.default_rng(123)
    out = {}
    for kind in ("low", "high", "noise"):
        p = d / f"new_{kind}.wav"
        sf.write(p, synth_song(kind, 9.5, rng), SR)
        out[kind] = p
    return out


def test_embed_catalogue_file_matches_index(ws):
    """A catalogue song embedded as a new file lands on its own predicted factors (same front end, same model)."""
    idx = UnitIndex(ws)
    eng = cs.get_engine(ws)
    song = ws.songs()[4]
    embs, failed = eng.embed(song["path"])             # one path or several -> (embeddings, failed)
    assert not failed and len(embs) == 1
    emb = embs[0]
    assert emb.window_factors.shape == (len(idx.store.song_windows(4)), idx.song_factors.shape[1])
    np.testing.assert_allclose(emb.factors, eng.song_factors[4], atol=1e-4)
    from audiovis.train import predict_songs
    np.testing.assert_allclose(emb.factors, predict_songs(eng.model, idx.store, np.array([4]))[0], atol=1e-4)
    np.testing.assert_allclose(emb.factors, emb.window_factors.mean(0), atol=1e-6)
    c = idx.store.cfg
    np.testing.assert_allclose(emb.window_starts, np.arange(len(emb.window_starts)) * c.window_frames * c.hop_length
                               / c.sr)


def test_embed_outputs(ws, new_songs, tmp_path):
    eng = cs.get_engine(ws)
    embs, failed = eng.embed([new_songs["low"], new_songs["high"], tmp_path / "missing.wav"])
    assert len(embs) == 2 and len(failed) == 1 and "missing.wav': file not found" in failed[0]["reason"]
    f = embs[0].factors.shape[0]
    results.write_embeddings(embs, tmp_path / "e.npy")
    assert np.load(tmp_path / "e.npy").shape == (2, f)
    results.write_embeddings(embs, tmp_path / "w.npy", per_window=True)
    w = np.load(tmp_path / "w.npy")
    assert w.shape == (sum(len(e.window_starts) for e in embs), 2 + f)
    np.testing.assert_allclose(w[w[:, 0] == 1, 2:], embs[1].window_factors, rtol=1e-6)
    results.write_embeddings(embs, tmp_path / "e.csv", per_window=False)
    rows = (tmp_path / "e.csv").read_text().splitlines()
    assert rows[0].startswith("file,song_id,duration_s,n_windows,f0") and len(rows) == 3
    assert rows[1].split(",")[1] == "new_low"
    results.write_embeddings(embs, tmp_path / "e.json", per_window=True)
    js = json.loads((tmp_path / "e.json").read_text())
    assert js[1]["song_id"] == "new_high" and len(js[1]["windows"]) == len(embs[1].window_starts)
    with pytest.raises(ParameterError, match=r"unknown extension '\.txt'"):
        results.write_embeddings(embs, tmp_path / "e.txt")


def test_cli_embed_and_recommend(ws, new_songs, capsys):
    from audiovis.cli import main
    assert main(["embed", "-w", str(ws.path), str(new_songs["noise"])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["song_id"] == "new_noise" and len(out[0]["factors"]) == 8
    assert main(["recommend", "-w", str(ws.path), str(new_songs["noise"]), "--json", "-k", "5"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert len(rec["similar"]) == 5 and rec["search"] == {"metric": "cosine", "method": "exact", "catalogue": 30}
    assert main(["recommend", "-w", str(ws.path), str(new_songs["noise"])]) == 0
    text = capsys.readouterr().out
    assert "Similar songs" in text and "Likely listeners" in text and "Most active units" in text


def test_recommend_finds_same_kind(ws, new_songs):
    """New songs of a kind get similar songs and listeners of that kind (the corpus' plays depend on kind)."""
    labels = ws.labels()
    users = ws.user_ids()
    for kind, path in new_songs.items():
        rec = cs.get_engine(ws).recommend(path, k=5, n_users=10, n_units=5, timeline=True)
        same = [labels[r["song_id"]]["kind"] == kind for r in rec["similar"]]
        assert sum(same) >= 4, (kind, rec["similar"])
        scores = [r["score"] for r in rec["similar"]]
        assert scores == sorted(scores, reverse=True) and -1 <= min(scores) and max(scores) <= 1 + 1e-6
        # conftest: user u prefers KINDS[u % 3]
        fav = [("low", "high", "noise")[users.index(r["user_id"]) % 3] == kind for r in rec["listeners"]]
        assert sum(fav) >= 7, (kind, rec["listeners"])
        assert len(rec["units"]) == 5 and all(not u["unit"].startswith("output") for u in rec["units"])
        assert [u["score"] for u in rec["units"]] == sorted((u["score"] for u in rec["units"]), reverse=True)
        t = rec["timeline"][rec["units"][0]["unit"]]
        assert len(t["t"]) == len(t["activation"]) > 0 and max(t["t"]) < rec["song"]["duration_s"]
        assert max(t["activation"]) == pytest.approx(rec["units"][0]["peak_activation"], rel=1e-5)


def test_recommend_excludes_the_song_itself(ws):
    song = ws.songs()[7]
    rec = cs.get_engine(ws).recommend(song["path"], k=29)
    assert song["song_id"] not in [r["song_id"] for r in rec["similar"]] and len(rec["similar"]) == 29
    rec = cs.get_engine(ws).recommend(song["path"], k=3, exclude_self=False)
    assert rec["similar"][0]["song_id"] == song["song_id"] and rec["similar"][0]["score"] > 0.9999


def _write_long(path, seconds):
    y = (0.1 * np.sin(np.arange(int(seconds * 1000)) * 0.3)).astype(np.float32)
    sf.write(path, y, 1000, format="WAV", subtype="PCM_U8")


@pytest.mark.parametrize("case", ["text", "corrupt", "empty", "too_long", "too_big", "too_short"])
def test_bad_uploads(ws, built_ws, tmp_path, case):
    eng = cs.get_engine(ws)
    name = f"my upload ({case}).ogg"
    p = tmp_path / "upload.bin"
    if case == "text":
        p.write_text("this is not audio\n" * 20)
        msg = r"'my upload \(text\)\.ogg': not a readable audio file"
    elif case == "corrupt":
        src = ws.songs()[2]["path"]            # an OGG Vorbis song, cut inside its headers
        p.write_bytes(Path(src).read_bytes()[:200])
        msg = r"'my upload \(corrupt\)\.ogg': not a readable audio file .*malformed"
    elif case == "empty":
        p.write_bytes(b"")
        msg = r"'my upload \(empty\)\.ogg': file is empty"
    elif case == "too_long":
        _write_long(p, 601)
        msg = r"'my upload \(too_long\)\.ogg': 601\.0 s is longer than the limit of 600 s \(10 min\)"
    elif case == "too_big":
        p.write_bytes(b"\0" * 2_000_000)
        msg = r"'my upload \(too_big\)\.ogg': 1\.9 MB is larger than the upload limit of 1 MB"
    else:
        sf.write(p, synth_song("low", 1.0, np.random.default_rng(0)), SR, format="WAV")
        msg = r"'my upload \(too_short\)\.ogg': 1\.00 s is shorter than one 3 s window"
    with pytest.raises(AudioError, match=msg):
        eng.recommend(p, name=name, max_bytes=1_048_576)


def test_add(built_ws, new_songs, tmp_path):
    src = built_ws[0]
    dst = tmp_path / "ws"
    shutil.copytree(src, dst)
    ws = Workspace(dst)
    before = UnitIndex(ws)
    n0, nW0, U = ws.n_songs, len(before.acts), before.n_units
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    out = add_songs(ws, [new_songs["low"], bad, new_songs["noise"]])
    assert [a["song_id"] for a in out["added"]] == ["new_low", "new_noise"]
    assert len(out["failed"]) == 1 and "bad.wav': not a readable audio file" in out["failed"][0]["reason"]
    assert not (dst / append.JOURNAL).exists()
    ws2 = Workspace(dst)
    assert ws2.n_songs == n0 + 2 and ws2.song_ids()[-2:] == ["new_low", "new_noise"]
    assert ws2.songs()[-1]["split"] == "none" and ws2.songs()[-1]["status"] == "ok"
    idx = UnitIndex(ws2)
    st = idx.store
    assert st.n_songs == n0 + 2 and len(st.windows) == len(idx.acts) == nW0 + sum(a["windows"] for a in out["added"])
    assert idx.song_factors.shape[0] == n0 + 2 and np.all(np.isfinite(idx.song_factors[-2:]))
    # old rows untouched, new rows are what a fresh embedding gives
    np.testing.assert_array_equal(np.asarray(idx.acts[:nW0]), np.asarray(before.acts))
    np.testing.assert_array_equal(idx.song_factors[:n0], before.song_factors)
    emb = cs.ColdStart(ws2).embed_file(new_songs["noise"], units=True)
    np.testing.assert_allclose(idx.song_activations(n0 + 1), emb.acts.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(cs.ColdStart(ws2).song_factors[n0 + 1], emb.factors, atol=1e-5)
    np.testing.assert_allclose(st.song(n0 + 1)[:, :], song_frames(new_songs["noise"], st.cfg))
    # statistics merged exactly: compare with a direct computation over all windows
    A = np.asarray(idx.acts, dtype=np.float64)
    Aold = np.asarray(before.acts, dtype=np.float64)
    # (the index keeps exact float32 sums; acts.npy is float16, so compare with a float16-level tolerance)
    np.testing.assert_allclose(idx.data["mean"], A.mean(0), atol=2e-3 * (1 + np.abs(A).max()))
    np.testing.assert_allclose(idx.data["sparsity"], (A <= 0).mean(0), atol=1e-9)
    assert idx.data["hist"].sum(1).tolist() == [len(A)] * U
    np.testing.assert_array_equal(idx.data["vmin"], before.data["vmin"])      # edges kept
    assert np.all(idx.data["vmax_all"] >= A.max(0) - 1e-2)
    # a unit that fires most on the new noise song now lists it on top
    new_w = st.song_windows(n0 + 1)
    c = int(np.argmax(A[new_w].max(0) - Aold.max(0)))
    assert A[new_w].max() > 0
    unit = idx.units()[c]
    if A[new_w, c].max() > Aold[:, c].max():
        top = idx.top(unit, n=1)[0]
        assert top["song_id"] == "new_noise" and top["window"] in set(new_w.tolist())
    assert any(t["song_id"] in ("new_low", "new_noise") for u in idx.units() for t in idx.top(u, n=idx.k))
    # the added song is found by similarity search
    rec = cs.get_engine(dst).recommend(new_songs["noise"], k=3, exclude_self=False)
    assert rec["similar"][0]["song_id"] == "new_noise" and rec["similar"][0]["score"] > 0.9999
    assert rec["search"]["catalogue"] == n0 + 2
    # adding the same id again fails for that file only
    out = add_songs(dst, [new_songs["noise"], new_songs["high"]])
    assert [a["song_id"] for a in out["added"]] == ["new_high"]
    assert "song id 'new_noise' is already in the workspace" in out["failed"][0]["reason"]


def test_add_rolls_back_interrupted(built_ws, new_songs, tmp_path, monkeypatch):
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    ws = Workspace(dst)
    offsets = np.load(dst / "features" / "offsets.npy")
    units = dict(np.load(dst / "index" / "units.npz"))

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(append, "merge_unit_data", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        add_songs(ws, [new_songs["high"]])
    monkeypatch.undo()
    assert (dst / append.JOURNAL).exists()
    assert append.recover(Workspace(dst)) == "rolled back an interrupted add"
    np.testing.assert_array_equal(np.load(dst / "features" / "offsets.npy"), offsets)
    assert Workspace(dst).n_songs == len(offsets) - 1
    out = add_songs(dst, [new_songs["high"]])
    assert out["added"][0]["song_idx"] == len(offsets) - 1
    idx = UnitIndex(Workspace(dst))
    assert idx.store.n_songs == len(offsets) and idx.data["hist"].sum() == units["hist"].sum() + \
        units["hist"].shape[0] * out["added"][0]["windows"]


def test_vector_index_exact_and_ann(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 16))
    X = (centres[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, 16))).astype(np.float32)
    X[7] = np.nan
    Q = (centres[rng.integers(0, 50, 100)] + 0.3 * rng.standard_normal((100, 16))).astype(np.float32)
    ex = VectorIndex(X, method="auto", threshold=10_000)
    assert ex.method == "exact"
    I, S = ex.search(Q, 10)
    Xn, valid = _unit_rows(X)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    brute = np.argsort(-np.where(valid, Qn @ Xn.T, -np.inf), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(I, brute)
    assert 7 not in I
    I2, _ = ex.search(Q[:1], 5, exclude=[int(I[0, 0])])
    assert I2[0].tolist() == I[0, 1:6].tolist()
    pytest.importorskip("faiss")
    for method in ("hnsw", "ivf"):
        ann = VectorIndex(X, method="auto" if method == "hnsw" else method, threshold=1000)
        assert ann.method == method and ann.calibrated_recall >= 0.97
        J, _ = ann.search(Q, 10)
        assert recall_at_k(J, I) >= 0.95 and 7 not in J
        ann.add(X[:3] * 2)                      # same directions: found with the new ids too
        J, S = ann.search(X[1], 3)
        assert set(J[0][:2].tolist()) == {1, 5001} and S[0][0] == pytest.approx(1, abs=1e-5)
        ann.save(tmp_path / f"{method}.faiss")  # reopened over the grown catalogue: same answers
        Y = np.concatenate([X, X[:3] * 2, X[10:12]])
        re = VectorIndex.load(tmp_path / f"{method}.faiss", Y, nprobe=ann.nprobe)
        assert re.method == method and len(re) == 5005
        J2, _ = re.search(X[11], 2)
        assert set(J2[0].tolist()) == {11, 5004}
    with pytest.raises(ParameterError, match="queries have 3 dimensions, the index has 16"):
        ex.search(np.zeros(3), 1)


def test_demo_sized_catalogue_uses_exact_search(ws):
    """Below the threshold (the 400-song demo too) results are those of exact search."""
    eng = cs.get_engine(ws)
    vi = eng.similarity_index()
    assert vi.method == "exact"
    demo_like = np.random.default_rng(1).standard_normal((400, 32)).astype(np.float32)
    v400 = VectorIndex(demo_like)                       # default method and threshold, demo size
    assert v400.method == "exact"
    Xn, valid = _unit_rows(demo_like)
    np.testing.assert_array_equal(v400.search(demo_like[:20], 10)[0], exact_search(Xn, valid, Xn[:20], 10)[0])
    Y = eng.song_factors
    I, _ = vi.search(Y[:5], 4)
    Xn, valid = _unit_rows(Y)
    J, _ = exact_search(Xn, valid, Xn[:5], 4)
    np.testing.assert_array_equal(I, J)


# --------------------------------------------------------------------------- uploads and the page
def test_recommend_upload_bytes(ws, new_songs):
    data = new_songs["high"].read_bytes()
    rec = uploads.recommend_upload(ws.path, "My Song (final).wav", data, k=4)
    json.dumps(rec)                                           # serialisable as it is
    assert rec["song"]["file"] == "My Song (final).wav" and len(rec["similar"]) == 4
    for r in rec["similar"]:
        assert 0 <= r["clip_start_s"] < r["clip_end_s"] <= ws.songs()[r["song_idx"]]["duration"] + 1e-6
    assert set(rec["timeline"]) == {u["unit"] for u in rec["units"]}
    with pytest.raises(AudioError, match=r"'huge\.ogg': 20\.0 MB is larger than the upload limit of 20 MB"):
        uploads.recommend_upload(ws.path, "huge.ogg", b"\0" * (20 * 1048576 + 1))
    with pytest.raises(AudioError, match=r"'notes\.mp3': not a readable audio file"):
        uploads.recommend_upload(ws.path, "notes.mp3", b"just some text, not audio" * 10)


def test_add_upload_validates_before_writing(built_ws, new_songs, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    with pytest.raises(AudioError, match=r"'bad\.wav': not a readable audio file"):
        uploads.add_upload(dst, "bad.wav", b"not audio at all" * 10)
    assert not (dst / "uploads").exists() and Workspace(dst).n_songs == 30
    out = uploads.add_upload(dst, "../../evil name.wav", new_songs["low"].read_bytes())
    assert out["added"][0]["song_id"] == "evil name" and (dst / "uploads" / "evil name.wav").exists()
    assert Workspace(dst).songs()[-1]["path"] == str((dst / "uploads" / "evil name.wav").resolve())
    again = uploads.add_upload(dst, "evil name.wav", new_songs["low"].read_bytes())   # the same upload twice
    assert not again["added"]
    assert "duplicate of song 'evil name' (identical file content)" in again["failed"][0]["reason"]
    assert Workspace(dst).n_songs == 31 and sorted(p.name for p in (dst / "uploads").iterdir()) == ["evil name.wav"]


def test_add_refuses_a_catalogue_song_under_a_new_id(built_ws, tmp_path):
    """Ingest refuses identical files under two ids; add does too (one stat per song, a hash on a size match)."""
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    ws = Workspace(dst)
    first = ws.songs()[0]
    out = add_songs(ws, [ws.resolve_audio(first["path"])], song_ids=["COPY"])
    assert not out["added"] and f"duplicate of song '{first['song_id']}'" in out["failed"][0]["reason"]
    assert Workspace(dst).n_songs == 30


def _page():
    import os
    from pathlib import Path

    import streamlit as st

    class _Upload:
        name = Path(os.environ["CS_UPLOAD"]).name
        type = "audio/wav"

        def getvalue(self):
            return Path(os.environ["CS_UPLOAD"]).read_bytes()

    st.file_uploader = lambda *a, **k: _Upload()
    from audiovis.ui.coldstart import coldstart_ui
    coldstart_ui(os.environ["AUDIOVIS_WORKSPACE"])


def test_page_renders_upload(monkeypatch, ws, new_songs, tmp_path):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(ws.path))
    monkeypatch.setenv("CS_UPLOAD", str(new_songs["noise"]))
    at = AppTest.from_function(_page, default_timeout=120).run()
    assert not at.exception and not at.error
    md = " ".join(m.value for m in at.markdown)
    assert "Similar songs" in md and "Most active units" in md and "view=unit&unit=" in md
    assert len(at.get("audio")) == 1 + 10                     # the upload and one clip per similar song
    bad = tmp_path / "broken.ogg"
    bad.write_bytes(b"OggS" + bytes(range(256)) * 4)          # an Ogg page marker, then garbage
    monkeypatch.setenv("CS_UPLOAD", str(bad))
    at = AppTest.from_function(_page, default_timeout=120).run()
    assert not at.exception
    assert at.error[0].value.startswith("Cannot use this upload: 'broken.ogg': not a readable audio file")


def test_page_adds_only_when_the_server_allows_it(monkeypatch, built_ws, new_songs, tmp_path):
    from streamlit.testing.v1 import AppTest
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(dst))
    monkeypatch.setenv("CS_UPLOAD", str(new_songs["high"]))
    monkeypatch.delenv("AUDIOVIS_ALLOW_ADD", raising=False)
    at = AppTest.from_function(_page, default_timeout=120).run()
    assert not at.exception and not [b for b in at.button if b.key == "coldstart_add"]
    assert any("Adding this song writes into the workspace, and this server only reads" in c.value
               and "--allow-writes" in c.value for c in at.caption)
    monkeypatch.setenv("AUDIOVIS_ALLOW_ADD", "1")                 # audiovis serve --allow-writes
    at = AppTest.from_function(_page, default_timeout=120).run()
    at.text_input(key="coldstart_add_id").input("MY_SONG")
    at.button(key="coldstart_add").click().run()
    assert not at.exception and at.success and Workspace(dst).n_songs == 31
    assert Workspace(dst).song_ids()[-1] == "MY_SONG"
    at.run()                                                     # the same upload again: now a catalogue song
    assert not at.exception and any(s.value.startswith("This is [MY_SONG]") for s in at.success)
    assert not [b for b in at.button if b.key == "coldstart_add"] and Workspace(dst).n_songs == 31


def test_page_recognises_an_uploaded_catalogue_song(monkeypatch, built_ws):
    """Issue 28: an upload of a catalogue song is named ("This is S..."), not only its own neighbour."""
    from streamlit.testing.v1 import AppTest
    ws = Workspace(built_ws[0])
    first = ws.songs()[0]
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(built_ws[0]))
    monkeypatch.setenv("CS_UPLOAD", str(ws.resolve_audio(first["path"])))
    monkeypatch.setenv("AUDIOVIS_ALLOW_ADD", "1")
    at = AppTest.from_function(_page, default_timeout=120).run()
    assert not at.exception and at.success[0].value.startswith(f"This is [{first['song_id']}]")
    assert any(f"Already in the workspace as {first['song_id']}" in c.value for c in at.caption)


def test_workspace_ann_path_follows_add(built_ws, new_songs, tmp_path):
    """Above the threshold the workspace uses a saved HNSW index; an add appends to it."""
    pytest.importorskip("faiss")
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    cfg = cs.ColdStartConfig(ann_threshold=10)
    eng = cs.get_engine(dst, cfg)
    vi = eng.similarity_index()
    assert vi.method == "hnsw" and (dst / "index" / "ann.faiss").exists()
    exact = VectorIndex(eng.song_factors, method="exact")
    I, _ = exact.search(eng.song_factors, 5)
    J, _ = vi.search(eng.song_factors, 5)
    assert recall_at_k(J, I) >= 0.95
    out = add_songs(dst, [new_songs["high"]], cfg=cfg)
    assert json.loads((dst / "index" / "ann.json").read_text())["n"] == 31
    rec = cs.get_engine(dst, cfg).recommend(new_songs["high"], k=2, exclude_self=False)
    assert rec["search"]["method"] == "hnsw" and rec["similar"][0]["song_idx"] == out["added"][0]["song_idx"]


def test_an_added_song_gets_the_catalogue_rows_of_the_same_audio(built_ws, tmp_path):
    """One index path: a catalogue song re-added (same samples, another container, so not a byte duplicate)
    gets exactly the catalogue's own rows of index/acts.npy in every layer, the output factors included (they
    were once left standardised, 10x off the catalogue's scale)."""
    import soundfile as sf
    dst = tmp_path / "ws"
    shutil.copytree(built_ws[0], dst)
    ws = Workspace(dst)
    song = next(s for s in ws.songs() if s["path"].endswith(".wav") and s["status"] == "ok")
    y, sr = sf.read(str(ws.resolve_audio(song["path"])), dtype="int16")
    copy = tmp_path / "same_samples.flac"
    sf.write(copy, y, sr, subtype="PCM_16")                          # lossless: identical decoded samples
    out = add_songs(ws, [copy], song_ids=["SAME"])
    assert out["added"], out
    idx = UnitIndex(Workspace(dst))
    orig, added = idx.song_activations(song["idx"]), idx.song_activations(out["added"][0]["song_idx"])
    assert orig.shape == added.shape
    out_cols = [i for i, u in enumerate(idx.units()) if u.startswith("output:")]
    assert out_cols
    np.testing.assert_allclose(added, orig, rtol=2e-3, atol=2e-3)    # float16 storage
    np.testing.assert_allclose(added[:, out_cols], orig[:, out_cols], rtol=2e-3, atol=2e-3)


def test_an_upload_whose_header_claims_more_than_it_holds_says_so(monkeypatch, ws, tmp_path):
    """A WAV header claiming 2^31 frames with 8 s present: kept, and the note reaches the answer and the page."""
    import struct

    from streamlit.testing.v1 import AppTest
    y = (np.random.default_rng(3).standard_normal(SR * 8) * 0.1).astype(np.float32)
    p = tmp_path / "lying.wav"
    sf.write(p, y, SR, subtype="PCM_U8")
    d = bytearray(p.read_bytes())
    i = d.index(b"data") + 4
    d[i:i + 4] = struct.pack("<I", 2 ** 31)
    p.write_bytes(bytes(d))
    rec = uploads.recommend_upload(ws.path, "lying.wav", p.read_bytes(), timeline=False)
    assert rec["song"]["duration_s"] == pytest.approx(8.0, abs=0.05)
    assert any(w.startswith("'lying.wav': decoded 8.0 s of") and "truncated" in w for w in rec["song"]["warnings"])
    assert str(tmp_path) not in " ".join(rec["song"]["warnings"])     # the upload's name, not a temporary path
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(ws.path))
    monkeypatch.setenv("CS_UPLOAD", str(p))
    at = AppTest.from_function(_page, default_timeout=120).run()
    assert not at.exception
    assert any("decoded 8.0 s of" in w.value for w in at.warning)
