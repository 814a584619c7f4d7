import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiovis.errors import DataError
from audiovis.plays import DUPLICATE, KEPT_REASONS, read_log


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
    # numbers, but not play counts: each gets its own reason, none is "non-numeric"
    assert log.problems == {"NaN play count": 1, "play count out of range (max 1,000,000)": 2,
                            "fractional play count (kept as is)": 1}
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


# --- issue: listening logs that silently lose or change data -------------------------------------------------

def _triplets(n, start=0):
    rows = [f"u{i % 13}\ts{i}\t{i % 7 + 1}" for i in range(start, start + n)]
    return rows, sum(i % 7 + 1 for i in range(start, start + n))


def _accounted(log):
    """Every data row is kept or skipped under a reason, and each reason lists each of its lines."""
    assert log.n_rows == log.n_kept + log.n_skipped
    assert all(len(log.lines[r]) == n for r, n in log.problems.items())


def test_a_two_field_first_row_does_not_make_the_log_raw_events(tmp_path):
    rows, total = _triplets(119)
    p = tmp_path / "log.tsv"
    p.write_text("u0\ts0\n" + "\n".join(rows) + "\n")
    log = read_log(p)
    assert log.format == "MSD triplets"
    assert log.n_kept == 119 and sum(log.counts.values()) == total
    assert log.problems == {"missing field": 1} and log.examples["missing field"] == "line 1: 'u0\\ts0'"
    _accounted(log)


def test_the_format_is_the_majority_not_the_first_row(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("u1,s1,x\n" + "".join(f"u{i},s{i}\n" for i in range(40)))
    log = read_log(p)
    assert log.format == "raw events (user, song)" and log.n_kept == 40
    assert log.problems == {"3 fields, expected 2": 1} and log.examples["3 fields, expected 2"].startswith("line 1:")
    _accounted(log)


def test_an_unbalanced_quote_is_reported_on_its_own_line_and_swallows_nothing(tmp_path):
    good = [f"u{i},s{i},2" for i in range(20)]
    p = tmp_path / "log.csv"
    p.write_text("user,song,plays\n" + 'u1,"s1,3\n' + "\n".join(good)
                 + '\nu2,"Song, The",4\nu3,12" Mix,1\nu4,"s"x,1\n"u50","s50","5"\n')
    log = read_log(p)
    assert {(f"u{i}", f"s{i}") for i in range(20)} <= set(log.counts)      # none swallowed by the quote
    assert log.n_kept == 20 + 3
    assert {("u2", "Song, The"), ("u3", '12" Mix'), ("u50", "s50")} <= set(log.counts)
    assert log.problems == {"unbalanced quote": 1, "misplaced quote": 1}
    assert log.examples["unbalanced quote"] == "line 2: \'u1,\"s1,3\'"
    assert log.examples["misplaced quote"].startswith(f"line {2 + 20 + 3}:")
    _accounted(log)


def test_comment_lines_are_skipped_not_errors(tmp_path):
    rows, total = _triplets(30)
    p = tmp_path / "log.tsv"
    p.write_text("# exported by a listening tracker\n#\n" + "\n".join(rows[:10]) + "\n  # a note\n"
                 + "\n".join(rows[10:]) + "\nu1\ts1\t-1\n")
    log = read_log(p)
    assert log.format == "MSD triplets" and log.n_comments == 3
    assert log.n_kept == 30 and sum(log.counts.values()) == total
    assert log.problems == {"negative play count": 1}
    assert log.examples["negative play count"] == f"line {2 + 30 + 1 + 1}: '-1'"    # line numbers of the file
    p.write_text("# header next\nuser,song,plays\nu1,s1,2\nu1,s2,x\n")
    log = read_log(p)
    assert log.format == "table with header" and log.examples["non-numeric play count"] == "line 4: 'x'"
    p.write_text("# nothing but a comment\n\n")
    with pytest.raises(DataError, match=r"log.tsv' is empty \(only 1 comment line\)"):
        read_log(p)


def test_play_counts_that_are_numbers_but_not_plays(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("u1\ts1\t2.5\nu1\ts2\t1e23\nu1\ts3\tinf\nu1\ts4\t1e400\nu1\ts5\tnan\nu1\ts6\t-2\n"
                 "u1\ts7\t1000000\nu1\ts8\t1000001\nu1\ts9\tlots\nu1\ts10\t3.0\nu1\ts11\t0.4\n")
    log = read_log(p)
    # fractional counts are kept as they are, and reported; whole-valued ones such as 3.0 are plain counts
    assert log.counts == {("u1", "s1"): 2.5, ("u1", "s7"): 1e6, ("u1", "s10"): 3.0, ("u1", "s11"): 0.4}
    assert log.problems == {"fractional play count (kept as is)": 2, "play count out of range (max 1,000,000)": 4,
                            "NaN play count": 1, "negative play count": 1, "non-numeric play count": 1}
    assert log.examples["play count out of range (max 1,000,000)"] == "line 2: '1e23'; also lines 3, 4, 8"
    assert log.examples["fractional play count (kept as is)"] == "line 1: '2.5'; also line 11"
    assert list(log.lines["play count out of range (max 1,000,000)"]) == [2, 3, 4, 8]
    assert log.n_kept == 4 and log.n_skipped == 7
    _accounted(log)


def test_rows_with_too_many_fields_are_reported(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("u1\ts1\t3\n" + "\t".join(["u2", "s2", "1"] + ["x"] * 7) + "\nu3\ts3\t2\t\t\nu4\ts4\t1\n")
    log = read_log(p)
    assert log.counts == {("u1", "s1"): 3.0, ("u3", "s3"): 2.0, ("u4", "s4"): 1.0}   # empty trailing fields
    assert log.problems == {"10 fields, expected 3": 1}
    assert log.examples["10 fields, expected 3"].startswith("line 2: 'u2\\ts2\\t1\\tx")
    _accounted(log)


def test_a_header_without_a_song_column_says_so(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,title,plays\nu1,s1,2\n")
    with pytest.raises(DataError, match=r"log.csv': the header on line 1 has no song column; found columns "
                                        r"'user', 'title', 'plays'; accepted song column names: song, song_id, "):
        read_log(p)
    p.write_text("# export\nListener;Artist;Count\nu1;s1;2\n")
    with pytest.raises(DataError, match=r"header on line 2 has no song column; found columns 'Listener', 'Artist', "
                                        r"'Count'; accepted song column names"):
        read_log(p)
    p.write_text("who,what,plays\nu1,s1,2\n")
    with pytest.raises(DataError, match=r"has no user and no song column; .*accepted user column names: user, "
                                        r"user_id.*; accepted song column names: song"):
        read_log(p)


def test_every_row_read_is_kept_or_reported(tmp_path):
    """A messy log: good rows kept == good rows, and the report's counts add up to the rows read."""
    rows, total = _triplets(200)
    bad = ["u1\ts1", "u1\t\t3", "u1\ts1\t-1", "u1\ts1\t0", "u1\ts1\tmany", "u1\ts1\t1e23", "u1\ts1\tnan",
           'u1\t"s1\t3', "\t".join("abcdefghij")]
    lines = ["# comment"]
    for i, r in enumerate(rows):
        lines.append(r)
        if i % 20 == 0:
            lines += [bad[(i // 20) % len(bad)], ""]
    p = tmp_path / "log.tsv"
    p.write_text("\n".join(lines) + "\n")
    log = read_log(p)
    n_bad = len(range(0, 200, 20))
    assert log.n_kept == 200 and sum(log.counts.values()) == total
    assert log.n_rows == 200 + n_bad and log.n_skipped == n_bad and log.n_comments == 1
    assert sum(log.problems.values()) == n_bad and DUPLICATE not in log.problems
    numbered = {ln for r in log.lines.values() for ln in r}
    assert numbered == {i + 1 for i, t in enumerate(lines) if t in bad}
    _accounted(log)


def test_number_problems_reach_the_report_with_their_reason(corpus, tmp_path):
    from audiovis.catalog import ingest
    from audiovis.workspace import Workspace
    p = tmp_path / "plays.tsv"
    good = corpus["plays"].read_text()
    p.write_text("# my log\n" + good + "u1\tsong001\t1e23\nu1\tsong002\t1e400\n")
    ws = Workspace(tmp_path / "ws")
    s = ingest(ws, corpus["audio_dir"], p, progress=False)
    n = len(good.splitlines())
    assert s["log_problems"] == {"play count out of range (max 1,000,000)": 2}
    assert s["log_rows"] == n + 2
    report = {item: reason for _, item, reason in ws.report("ingest")}
    assert report[f"plays.tsv (line {n + 2}: '1e23'; also line {n + 3})"] == \
        "play count out of range (max 1,000,000): 2 rows"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_logs_with_a_byte_order_mark_are_read(tmp_path, codec):
    # spreadsheets' "Unicode text": UTF-16 with a byte-order mark; once refused as "non-numeric play count"
    p = tmp_path / "log.tsv"
    text = "user_id\tsong_id\tplays\nü1\ts1\t2\nu2\ts1\t1\n"
    p.write_bytes(b"\xfe\xff" + text.encode(codec) if codec == "utf-16-be" else text.encode(codec))
    log = read_log(p)
    assert log.counts == {("ü1", "s1"): 2.0, ("u2", "s1"): 1.0} and not log.problems


@pytest.mark.parametrize("codec, kind", [("utf-16-le", "UTF-16LE"), ("utf-16-be", "UTF-16BE")])
def test_utf16_without_a_byte_order_mark_is_named(tmp_path, codec, kind):
    p = tmp_path / "log.tsv"
    p.write_bytes("u1\ts1\t2\nu2\ts1\t1\n".encode(codec))
    with pytest.raises(DataError) as e:
        read_log(p)
    assert str(e.value) == (f"listening log '{p}' is not UTF-8: it looks like {kind} text without a byte-order "
                            f"mark (a NUL byte in every other position); convert it to UTF-8, e.g. "
                            f"`iconv -f {kind} -t UTF-8 '{p}' > plays.tsv`")


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)
_GOOD = st.tuples(st.sampled_from(["u1", "u2", "ü3", "user 4"]), st.sampled_from(["s1", "s2", "söng"]),
                  st.integers(1, 1000))


@st.composite
def _messy_log(draw):
    """Lines of a triplet log: well-formed rows (at least two thirds of the lines) mixed with any text."""
    good = draw(st.lists(_GOOD, min_size=3, max_size=30))
    bad = draw(st.lists(_TEXT, max_size=len(good) // 2))
    lines = [("good", g) for g in good] + [("bad", b) for b in bad]
    order = draw(st.permutations(range(1, len(lines))))       # a good row first: no header to guess
    return [lines[0]] + [lines[i] for i in order]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_messy_log(), codec=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
def test_property_every_row_is_kept_or_reported(tmp_path, lines, codec):
    text = ["\t".join(map(str, v)) if kind == "good" else v for kind, v in lines]
    p = tmp_path / "log.tsv"
    p.write_bytes(("\n".join(text) + "\n").encode(codec))
    log = read_log(p)
    data = [t for t in text if t.strip() and t.strip()[0] != "#"]
    assert log.n_rows == len(data) and log.n_comments == sum(1 for t in text if t.strip()[:1] == "#")
    _accounted(log)
    want: dict = {}
    for kind, v in lines:
        if kind == "good":
            want[v[:2]] = want.get(v[:2], 0) + v[2]
    for pair, plays in want.items():             # every good row counted (a stray row may add to its pair)
        assert log.counts.get(pair, 0) >= plays
    reported = sorted(ln for r, seen in log.lines.items() if r not in KEPT_REASONS for ln in seen)
    assert len(reported) == log.n_skipped and len(set(reported)) == len(reported)
    assert not set(reported) & {n for n, (kind, _) in enumerate(lines, 1) if kind == "good"}   # never a good one
