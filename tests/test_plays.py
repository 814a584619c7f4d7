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
