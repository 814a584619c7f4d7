import pytest

from audiovis.errors import DataError
from audiovis.plays import read_log


def test_msd_triplets(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("u1\ts1\t3\nu1\ts2\t1\nu2\ts1\t5\n")
    log = read_log(p)
    assert log.format == "MSD triplets"
    assert log.counts == {("u1", "s1"): 3.0, ("u1", "s2"): 1.0, ("u2", "s1"): 5.0}


def test_csv_header_aliases_and_raw_events(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("track_id,user_id,timestamp\ns1,u1,10\ns1,u1,11\ns2,u2,12\n")
    log = read_log(p)
    assert "raw events" in log.format
    assert log.counts == {("u1", "s1"): 2.0, ("u2", "s2"): 1.0}


def test_malformed_rows_counted_not_fatal(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("u1\ts1\t3\nu1\ts2\t-1\nu1\ts3\tmany\nu2\ts1\nu2\ts1\t2\nu2\ts1\t2\nu3\ts4\t0\n")
    log = read_log(p)
    assert log.counts == {("u1", "s1"): 3.0, ("u2", "s1"): 4.0}
    assert log.problems["negative play count"] == 1
    assert log.problems["non-numeric play count"] == 1
    assert log.problems["missing field"] == 1
    assert log.problems["zero play count"] == 1
    assert log.problems["duplicate user-song row (summed)"] == 1
    assert log.examples["negative play count"].startswith("line 2")


def test_semicolon_delimiter(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("user;song;plays\nu1;s1;2\n")
    assert read_log(p).counts == {("u1", "s1"): 2.0}


def test_empty_and_useless_logs(tmp_path):
    p = tmp_path / "empty.tsv"
    p.write_text("\n\n")
    with pytest.raises(DataError, match="empty.tsv' is empty"):
        read_log(p)
    p = tmp_path / "bad.tsv"
    p.write_text("u1\ts1\t-3\nu2\ts2\tx\n")
    with pytest.raises(DataError, match=r"no usable rows out of 2 \(negative play count: 1"):
        read_log(p)
    with pytest.raises(DataError, match="not found"):
        read_log(tmp_path / "missing.tsv")


def test_pipe_and_headerless_comma_logs(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("user|song|plays\nu1|s1|2\nu2|s 2|1\n")
    log = read_log(p)
    assert log.counts == {("u1", "s1"): 2.0, ("u2", "s 2"): 1.0}
    p.write_text("u1,s1,2\nu1,s2,1\n")
    log = read_log(p)
    assert log.format == "MSD triplets" and log.counts == {("u1", "s1"): 2.0, ("u1", "s2"): 1.0}


def test_byte_order_mark_and_crlf_do_not_hide_the_header(tmp_path):
    # a spreadsheet export: BOM, CRLF, columns in another order; without BOM handling the header is read as a
    # triplet row and song/user are silently swapped
    p = tmp_path / "log.csv"
    p.write_bytes("\ufeffsong_id,user_id,plays\r\ns1,u1,2\r\ns2,u1,1\r\n".encode("utf-8"))
    log = read_log(p)
    assert log.format == "table with header"
    assert log.counts == {("u1", "s1"): 2.0, ("u1", "s2"): 1.0} and not log.problems


def test_non_finite_and_header_only(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("u1\ts1\tnan\nu1\ts2\tinf\nu1\ts3\t1e400\nu1\ts4\t2.5\n")
    log = read_log(p)
    assert log.counts == {("u1", "s4"): 2.5}
    assert log.problems["non-numeric play count"] == 3
    p.write_text("user,song,plays\n")
    with pytest.raises(DataError, match=r"log.tsv' has no usable rows out of 0"):
        read_log(p)


def test_nothing_usable_after_unknown_ids_names_the_log(corpus, tmp_path):
    from audiovis.catalog import ingest
    from audiovis.workspace import Workspace
    p = tmp_path / "plays.tsv"
    p.write_text("u1\tnot_a_song\t3\nu2\tsong000\t-1\nu2\tsong001\n")
    with pytest.raises(DataError, match=r"no row of the listening log '.*plays.tsv' names a usable song: "
                                        r"1 user-song pairs, 30 usable songs"):
        ingest(Workspace(tmp_path / "ws"), corpus["audio_dir"], p, progress=False)


def test_log_problems_reach_the_report(corpus, tmp_path):
    from audiovis.catalog import ingest
    from audiovis.workspace import Workspace
    p = tmp_path / "plays.tsv"
    good = corpus["plays"].read_text()
    p.write_text(good + "u1\tsong001\t-4\nu1\tsong001\tlots\nu1\tsong002\nu9\tghost\t2\nu9\tghost2\t1\n"
                 + good.splitlines()[0] + "\n")
    ws = Workspace(tmp_path / "ws")
    s = ingest(ws, corpus["audio_dir"], p, progress=False)
    assert s["log_problems"] == {"negative play count": 1, "non-numeric play count": 1, "missing field": 1,
                                 "duplicate user-song row (summed)": 1}
    assert s["unknown_song_pairs"] == 2
    rows = [r for _, item, r in ws.report("ingest")]
    assert "negative play count: 1 rows" in rows and "missing field: 1 rows" in rows
    assert any(r.startswith("unknown or unusable song id: 2 user-song pairs (2 songs, e.g. ghost, ghost2)")
               for r in rows)
    n_lines = len(good.splitlines())
    items = [item for _, item, _ in ws.report("ingest")]
    assert f"plays.tsv (line {n_lines + 1}: '-4')" in items
