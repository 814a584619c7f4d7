import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiovis.catalog import ingest, read_labels, read_manifest
from audiovis.errors import DataError, ParameterError
from audiovis.workspace import Workspace


def test_ingest_counts_and_reports(corpus, tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(corpus["audio_dir"], audio)
    (audio / "broken.mp3").write_text("not audio")
    (audio / "empty.wav").write_bytes(b"")
    plays = tmp_path / "plays.tsv"
    plays.write_text(corpus["plays"].read_text() + "userX\tnosuchsong\t3\nuserY\tsong000\t-2\n")
    s = ingest(tmp_path / "ws", audio, plays, progress=False)
    assert s["songs"] == 30
    assert s["unknown_song_pairs"] == 1 and s["log_problems"] == {"negative play count": 1}
    ws = Workspace(tmp_path / "ws")
    reasons = {item: reason for _, item, reason in ws.report("ingest")}
    assert "not a readable audio file" in reasons["broken"]
    assert "is empty" in reasons["empty"]
    assert any("unknown or unusable song id" in r for r in reasons.values())
    # second run with the same inputs is a no-op returning the same summary
    assert ingest(tmp_path / "ws", audio, plays, progress=False) == s


def test_labels_skip_numeric_and_file_columns(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("song_id,file,groove,bpm\na,a.wav,swing,120\nb,b.wav,polka,90\n")
    assert read_labels(p) == {"a": {"groove": "swing"}, "b": {"groove": "polka"}}


def test_csv_files_saved_by_a_spreadsheet_with_a_byte_order_mark_are_read(tmp_path):
    from audiovis.catalog import read_segments
    p = tmp_path / "labels.csv"
    p.write_text("song_id,groove\na,swing\n", encoding="utf-8-sig")        # Excel's "CSV UTF-8"
    assert read_labels(p) == {"a": {"groove": "swing"}}
    p = tmp_path / "segments.csv"
    p.write_text("song_id,start_s,end_s,concept,value\na,0,1,lead,flute\n", encoding="utf-8-sig")
    assert read_segments(p) == [("a", 0.0, 1.0, "lead", "flute")]
    (tmp_path / "a.wav").write_bytes(b"")
    p = tmp_path / "manifest.csv"
    p.write_text("song_id,file\nS1,a.wav\n", encoding="utf-8-sig")
    mapping, problems = read_manifest(p, tmp_path)
    assert list(mapping) == ["S1"] and not problems


def test_manifest_cannot_escape_root(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    sf.write(tmp_path / "outside.wav", np.zeros(10, np.float32), 22050)
    m = tmp_path / "m.csv"
    m.write_text("song_id,file\nx,../outside.wav\ny,inside.wav\ny,again.wav\n")
    mapping, problems = read_manifest(m, root)
    assert list(mapping) == ["y"]
    msgs = dict(problems)
    assert "points outside the library root" in msgs["x"] and "--allow-outside" in msgs["x"]
    assert "duplicate song id" in msgs["y"]
    mapping, _ = read_manifest(m, root, allow_outside=True)
    assert "x" in mapping


def test_bad_inputs(tmp_path, corpus):
    with pytest.raises(ParameterError, match="audio folder '.*nope' does not exist"):
        ingest(tmp_path / "ws", tmp_path / "nope", corpus["plays"])
    plays = tmp_path / "p.tsv"
    plays.write_text("u\tunknown\t1\n")
    with pytest.raises(DataError, match="no row of the listening log .* names a usable song"):
        ingest(tmp_path / "ws", corpus["audio_dir"], plays, progress=False)
    m = tmp_path / "m.csv"
    m.write_text("name,where\n")
    with pytest.raises(DataError, match="needs a song id column"):
        read_manifest(m, tmp_path)


def test_manifest_symlink_out_of_root_is_refused(tmp_path):
    import os
    root = tmp_path / "lib"
    root.mkdir()
    sf.write(tmp_path / "secret.wav", np.full(22050 * 4, 0.1, np.float32), 22050)
    sf.write(root / "real.wav", np.full(22050 * 4, 0.2, np.float32), 22050)
    os.symlink(tmp_path / "secret.wav", root / "innocent.wav")    # looks inside, points outside
    os.symlink(root / "real.wav", root / "alias.wav")              # inside -> inside is fine
    m = tmp_path / "m.csv"
    m.write_text("song_id,file\nleak,innocent.wav\nok,alias.wav\nabs,%s\n" % (tmp_path / "secret.wav"))
    mapping, problems = read_manifest(m, root)
    assert list(mapping) == ["ok"]
    msgs = dict(problems)
    assert "'innocent.wav' points outside the library root" in msgs["leak"]
    assert "points outside the library root" in msgs["abs"]
    mapping, problems = read_manifest(m, root, allow_outside=True)
    assert sorted(mapping) == ["abs", "leak", "ok"] and not problems


def test_folder_mode_refuses_symlinks_out_of_the_audio_folder(tmp_path):
    """Without a manifest, a symlink (to a file, or to a folder) whose target is outside the audio folder is
    skipped with the path, the reason and how to allow it, as the manifest does; the rest is kept."""
    import os
    root = tmp_path / "lib"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    sf.write(tmp_path / "secret.wav", np.full(22050 * 4, 0.1, np.float32), 22050)
    sf.write(tmp_path / "elsewhere" / "far.wav", np.full(22050 * 4, 0.3, np.float32), 22050)
    sf.write(root / "real.wav", np.full(22050 * 4, 0.2, np.float32), 22050)
    os.symlink(tmp_path / "secret.wav", root / "sub" / "innocent.wav")     # looks inside, points outside
    os.symlink(tmp_path / "elsewhere", root / "linked folder")             # a folder outside
    os.symlink(root / "real.wav", root / "sub" / "z alias.wav")            # inside -> inside is fine
    plays = tmp_path / "plays.tsv"
    plays.write_text("u1\treal\t2\nu1\tinnocent\t1\nu2\tfar\t3\nu2\tz alias\t1\n")
    ws = Workspace(tmp_path / "ws")
    s = ingest(ws, root, plays, progress=False)
    reasons = {item: reason for _, item, reason in ws.report("ingest")}
    assert ws.song_ids() == ["real"] and s["duplicates"] == 1          # z alias: a duplicate of real
    out, lib = tmp_path.resolve(), root.resolve()
    assert reasons["innocent"] == (f"'sub/innocent.wav' is a symlink to '{out / 'secret.wav'}', outside the "
                                   f"audio folder '{lib}'; skipped (pass --allow-outside to allow it)")
    assert reasons["far"] == (f"'linked folder/far.wav' is in a symlinked folder and lies at "
                              f"'{out / 'elsewhere' / 'far.wav'}', outside the audio folder '{lib}'; "
                              f"skipped (pass --allow-outside to allow it)")
    s = ingest(ws, root, plays, allow_outside=True, progress=False)
    assert ws.song_ids() == ["far", "innocent", "real"] and s["duplicates"] == 1
    assert "innocent" not in {item for _, item, _ in ws.report("ingest")}


def test_ingest_writes_catalogue_report_and_markers_in_one_pass(corpus, tmp_path):
    """The steps of ingest end to end: files found, checked, deduplicated, plays counted (a duplicate's for the
    song it copies), the report in order (songs skipped, then the log's rows), later stages' markers cleared."""
    audio = tmp_path / "audio"
    shutil.copytree(corpus["audio_dir"], audio)
    shutil.copy(audio / "song000.wav", audio / "zcopy.wav")
    (audio / "broken.wav").write_text("not audio")
    plays = tmp_path / "plays.tsv"
    plays.write_text(corpus["plays"].read_text() + "userX\tnosuchsong\t3\nuserY\tsong000\t-2\nuserZ\tzcopy\t4\n")
    ws = Workspace(tmp_path / "ws")
    s = ingest(ws, audio, plays, labels=corpus["labels"], progress=False)
    assert (s["songs"], s["songs_skipped"], s["duplicates"], s["labelled_songs"]) == (30, 2, 1, 30)
    assert s["plays"] == sum(float(r.split("\t")[2]) for r in corpus["plays"].read_text().splitlines()) + 4
    assert [r["song_id"] for r in ws.songs()] == [f"song{i:03d}" for i in range(30)]
    items = [item for _, item, _ in ws.report("ingest")]
    assert items[:2] == ["broken", "zcopy"] and items[2].startswith("plays.tsv (") and items[3] == "plays.tsv"
    reasons = [reason for _, _, reason in ws.report("ingest")]
    assert "duplicate of song 'song000'" in reasons[1] and reasons[2] == "negative play count: 1 rows"
    assert reasons[3].startswith("unknown or unusable song id: 1 user-song pairs (1 songs, e.g. nosuchsong)")
    uz = ws.db.execute("SELECT p.plays FROM plays p JOIN users u ON u.idx = p.user_idx WHERE u.user_id='userZ'")
    assert [r[0] for r in uz] == [4.0]                        # zcopy's plays count for song000
    ws.mark_done("train", {"summary": {}})
    ingest(ws, audio, plays, labels=corpus["labels"], force=True, progress=False)
    assert ws.get_meta("done:train") is None and ws.get_meta("done:ingest")["summary"] == s


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_content_hash_never_opens_a_fifo(tmp_path):
    from audiovis.catalog import content_hash
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=r"not a regular file \(a FIFO, a named pipe\)"):
        content_hash(fifo)                      # would block forever in open()
