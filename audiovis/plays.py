"""Listening logs: who played which song how often, aggregated to play counts.

Accepted forms
--------------
- MSD Taste Profile triplets: ``user<TAB>song<TAB>plays`` with no header (further columns are ignored);
- a table whose first line is a header naming a user, a song and optionally a plays column, in any order and
  under aliases such as ``user_id``, ``track``, ``count`` (see `USER_COLS`, `SONG_COLS`, `PLAYS_COLS`);
- raw listen events: a header with user and song columns but no plays column, or two columns with no header;
  each row counts one play.

How a log is read is decided from its first `SAMPLE_ROWS` data rows (comments and blank lines aside), never
from one row: the delimiter (tab, comma, semicolon or ``|``) is the one that splits most of them into the same
number of fields (at least two; ties go to tab, comma, semicolon, pipe in that order), and that number is the
expected field count of a headerless log: two fields are raw events, three or more are triplets.

Policies
--------
Every line is blank (ignored), a comment, the header, a kept row or a reported row. `PlayLog.n_rows` counts
the data rows, and ``n_rows == n_kept + n_skipped``: each skipped row is counted under its reason in
`PlayLog.problems`, with its line number in `PlayLog.lines`. Line numbers are those an editor shows.

comments
    A line whose first non-blank character is ``#`` is a comment, anywhere in the file: counted in
    `PlayLog.n_comments`, not a problem. A user id therefore cannot start with ``#``.
header
    The first data line is a header when one of its fields is a known column name and it is not numeric where
    most rows are. A header that lacks a user or a song column is an error that names the columns it found and
    the names accepted. A first line with no known name is read as data (in a headerless plays log it is
    then reported as a non-numeric play count).
quotes
    Fields may be quoted as in CSV (``"a, b"``; ``""`` inside quotes is a quote). Each line is parsed on its
    own, so a quoted field cannot span lines: a line with an unbalanced quote is reported as "unbalanced
    quote" (text after a closing quote as "misplaced quote") and never swallows the lines after it. A quote
    inside an unquoted field (``12" Mix``) is kept as a character.
field count
    A row with fewer fields than expected, or an empty user, song or plays field, is a "missing field"; one
    with more is reported as e.g. "10 fields, expected 3". Empty trailing fields (``u1,s1,3,``) are ignored.
play counts
    A play count must be a number in ``(0, MAX_PLAYS]``; other rows are skipped as "non-numeric play count"
    (``lots``, ``1,234``), "NaN play count", "negative play count", "zero play count" or "play count out of
    range (max 1,000,000)" (``1e23``, ``inf``, ``1e400`` which overflows a float, a Unix timestamp in the
    plays column). `MAX_PLAYS` is about seven years of one 3.5-minute song played non-stop.
fractional play counts
    ``2.5`` is kept as it is and reported as "fractional play count (kept as is)". Plays are whole numbers,
    so fractions usually mean a column of weights (listening time, decayed counts), which the model can use
    as they are; rounding would turn 0.4 into no play and rejecting would lose a listen, so neither is done
    behind your back: the report says it happened and where.
duplicates
    Rows that repeat a user-song pair of a plays log are summed and reported as "duplicate user-song row
    (summed)". Raw events repeat by nature and are not reported.
encoding
    UTF-8 with or without a byte-order mark, or UTF-16/UTF-32 with one (spreadsheets' "Unicode text");
    UTF-16 without a byte-order mark is refused with its encoding named; undecodable bytes become U+FFFD.
    Lines end with ``\\n``, ``\\r\\n`` or ``\\r``.
"""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

USER_COLS = ("user", "user_id", "userid", "listener", "listener_id")
SONG_COLS = ("song", "song_id", "songid", "track", "track_id", "item", "item_id")
PLAYS_COLS = ("plays", "play_count", "playcount", "count", "plays_count", "n", "listens")
KNOWN_COLS = frozenset(USER_COLS + SONG_COLS + PLAYS_COLS)

SAMPLE_ROWS = 500
"""Data rows read to decide the delimiter, the header and the format."""
MAX_PLAYS = 1_000_000
"""Largest accepted play count of one row."""
DELIMITERS = ("\t", ",", ";", "|")
_DELIM_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}

DUPLICATE = "duplicate user-song row (summed)"
FRACTIONAL = "fractional play count (kept as is)"
KEPT_REASONS = frozenset({DUPLICATE, FRACTIONAL})
"""Reasons noted on rows that are kept; every other reason is a skipped row."""
OUT_OF_RANGE = f"play count out of range (max {MAX_PLAYS:,})"


@dataclass
class PlayLog:
    """A listening log aggregated to play counts.

    Attributes
    ----------
    counts : dict[(user, song), float]
        Total plays per user-song pair (duplicate rows and raw events are summed).
    problems : Counter
        Skipped or noted rows by reason; the reasons in `KEPT_REASONS` are rows that were kept.
    examples : dict
        Where each reason occurred, to quote in reports: the first line number and text, then up to five more
        line numbers (``"line 3: '-4'; also lines 9, 12 and 40 more"``).
    lines : dict[str, array]
        Every line number noted under each reason.
    n_rows : int
        Data rows read (blank lines, comments and the header aside); ``n_rows == n_kept + n_skipped``.
    n_kept : int
        Rows whose plays are in `counts`.
    n_comments : int
        Comment lines skipped.
    format, delimiter : str
        How the log was read, e.g. ``"MSD triplets"`` and ``"\\t"``.
    """

    counts: dict = field(default_factory=dict)
    problems: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    lines: dict = field(default_factory=dict)
    n_rows: int = 0
    n_kept: int = 0
    n_comments: int = 0
    format: str = ""
    delimiter: str = ""

    @property
    def n_skipped(self) -> int:
        """Rows skipped for a reason (not in `counts`)."""
        return sum(n for r, n in self.problems.items() if r not in KEPT_REASONS)

    def note(self, reason: str, line_no: int, text: str = "") -> None:
        self.problems[reason] += 1
        seen = self.lines.get(reason)
        if seen is None:
            self.lines[reason] = array("q", [line_no])
            self.examples[reason] = f"line {line_no}" + (f": {text[:80]!r}" if text else "")
        else:
            seen.append(line_no)

    def _finish_examples(self) -> None:
        for reason, seen in self.lines.items():
            if len(seen) > 1:
                more = ", ".join(map(str, seen[1:6]))
                rest = f" and {len(seen) - 6} more" if len(seen) > 6 else ""
                self.examples[reason] += f"; also line{'s' if len(seen) > 2 else ''} {more}{rest}"


def read_log(path: str | os.PathLike) -> PlayLog:
    """Read a listening log and aggregate it to play counts.

    Parameters
    ----------
    path : str or Path
        The log, in one of the forms and under the policies described in :mod:`audiovis.plays`.

    Returns
    -------
    log : PlayLog
        The play counts, and every row skipped or noted with its reason and line number.

    Raises
    ------
    DataError
        The file is missing, unreadable or empty, its columns cannot be recognised (a header without a user or
        song column), or no usable row remains.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"listening log '{path}' not found")
    if path.is_dir():
        raise DataError(f"listening log '{path}' is a folder; give the log file")
    log = PlayLog()
    try:
        with open(path, "rb") as raw, io.TextIOWrapper(raw, encoding=_encoding(path, raw.peek(4096)[:4096]),
                                                        errors="replace") as f:
            numbered = enumerate(f, 1)
            sample = []
            for n, line in numbered:
                s = line.strip()
                if not s:
                    continue
                if s[0] == "#":
                    log.n_comments += 1
                    continue
                sample.append((n, line))
                if len(sample) >= SAMPLE_ROWS:
                    break
            if not sample:
                k = log.n_comments
                only = f" (only {k} comment line{'s' if k > 1 else ''})" if k else ""
                raise DataError(f"listening log '{path}' is empty{only}; expected lines of user<TAB>song<TAB>plays")
            body, ui, si, pi, ncols = _layout(path, log, sample)
            _read_rows(log, itertools.chain(body, numbered), ui, si, pi, ncols)
    except OSError as e:
        raise DataError(f"listening log '{path}' cannot be read: {e.strerror or e}") from e
    log._finish_examples()
    if not log.counts:
        detail = "; ".join(f"{r}: {n} (first at {log.examples[r]})" for r, n in log.problems.items())
        raise DataError(f"listening log '{path}' has no usable rows out of {log.n_rows}"
                        + (f" ({detail})" if detail else "")
                        + f"; read as {log.format}, {_DELIM_NAMES[log.delimiter]}-separated, {ncols} fields a row")
    return log


# byte-order marks, UTF-32 before UTF-16 (FF FE starts both little-endian marks)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _encoding(path: Path, head: bytes) -> str:
    """The codec of a log from its first bytes: UTF-8, or UTF-16/32 with a byte-order mark (spreadsheets save
    "Unicode text" so), read as such. Text with NUL bytes and no mark (UTF-16 without one) is refused with the
    encoding named, never read as rows of garbage."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if head.count(0) > len(head) // 4:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        kind = "UTF-16BE" if even > odd else "UTF-16LE"
        raise DataError(f"listening log '{path}' is not UTF-8: it looks like {kind} text without a byte-order "
                        f"mark (a NUL byte in every other position); convert it to UTF-8, e.g. "
                        f"`iconv -f {kind} -t UTF-8 '{path}' > plays.tsv`")
    return "utf-8-sig"          # a UTF-8 byte-order mark (spreadsheet exports) must not hide the header


def _layout(path: Path, log: PlayLog, sample: list) -> tuple:
    """Decide delimiter, header and columns from the sample; returns (body, ui, si, pi, ncols)."""
    delim, ncols = _sniff(sample)
    if delim is None:
        n, line = sample[0]
        raise DataError(f"listening log '{path}': cannot find user, song and plays columns: no tab, comma, "
                        f"semicolon or '|' separates the fields of its rows (line {n}: {line.strip()[:80]!r}); "
                        f"expected user<TAB>song<TAB>plays or a header naming the columns")
    log.delimiter = delim
    split = _Splitter(delim)
    rows = [split(line.rstrip("\r\n")) for _, line in sample]
    rows = [_trim(r) if isinstance(r, list) else None for r in rows]
    ref = [r for r in rows[1:] if r is not None and len(r) == ncols]
    numeric = [j for j in range(ncols) if 2 * sum(_is_number(r[j]) for r in ref) > len(ref)] if ref else []
    first = [c.strip().lower() for c in rows[0]] if rows[0] is not None else []
    is_header = (any(c in KNOWN_COLS for c in first)
                 and not any(_is_number(first[j]) for j in numeric if j < len(first)))
    if not is_header:
        if ncols >= 3:
            log.format = "MSD triplets"
            return sample, 0, 1, 2, ncols
        log.format = "raw events (user, song)"
        return sample, 0, 1, None, ncols
    ui = next((j for j, c in enumerate(first) if c in USER_COLS), None)
    si = next((j for j, c in enumerate(first) if c in SONG_COLS), None)
    pi = next((j for j, c in enumerate(first) if c in PLAYS_COLS), None)
    if ui is None or si is None:
        found = ", ".join(repr(c.strip()) for c in rows[0])
        lack = [(k, names) for k, names, j in (("user", USER_COLS, ui), ("song", SONG_COLS, si)) if j is None]
        accepted = "; ".join(f"accepted {k} column names: {', '.join(names)}" for k, names in lack)
        raise DataError(f"listening log '{path}': the header on line {sample[0][0]} has no "
                        f"{' and no '.join(k for k, _ in lack)} column; found columns {found}; {accepted} "
                        f"(or remove the header line of a user<TAB>song<TAB>plays log)")
    log.format = "table with header" + ("" if pi is not None else " (raw events)")
    return sample[1:], ui, si, pi, len(first)


def _read_rows(log: PlayLog, lines, ui: int, si: int, pi: int | None, ncols: int) -> None:
    """Aggregate the data rows of `lines` ((line number, text) pairs) into ``log``."""
    delim, counts, note, split = log.delimiter, log.counts, log.note, _Splitter(log.delimiter)
    rows = kept = comments = 0
    for n, line in lines:
        s = line.strip()
        if not s:
            continue
        if s[0] == "#":
            comments += 1
            continue
        rows += 1
        line = line.rstrip("\r\n")
        if '"' in line:
            row = split(line)
            if isinstance(row, str):
                note(row, n, s)
                continue
        else:
            row = line.split(delim)
        if len(row) != ncols:
            row = _trim(row)
            if len(row) < ncols:
                note("missing field", n, s)
                continue
            if len(row) > ncols:
                note(f"{len(row)} fields, expected {ncols}", n, s)
                continue
        user = row[ui].strip()
        song = row[si].strip()
        if not user or not song:
            note("missing field", n, s)
            continue
        key = (user, song)
        if pi is None:
            plays = 1.0
        else:
            raw = row[pi].strip()
            if not raw:
                note("missing field", n, s)
                continue
            try:
                plays = float(raw)
            except ValueError:
                note("non-numeric play count", n, raw)
                continue
            if not 0.0 < plays <= MAX_PLAYS:        # also NaN, which fails every comparison
                note(_bad_count(plays), n, raw)
                continue
            if not plays.is_integer():
                note(FRACTIONAL, n, raw)
            if key in counts:
                note(DUPLICATE, n, s)
        counts[key] = counts.get(key, 0.0) + plays
        kept += 1
    log.n_rows += rows
    log.n_kept += kept
    log.n_comments += comments


def _bad_count(plays: float) -> str:
    if plays != plays:
        return "NaN play count"
    if plays < 0:
        return "negative play count"
    if plays == 0:
        return "zero play count"
    return OUT_OF_RANGE


class _Splitter:
    """Splits one line into fields, quotes read as in CSV but within the line; returns the reason on failure."""

    __slots__ = ("delim", "_line", "_reader")

    def __init__(self, delim: str):
        self.delim, self._line = delim, None
        self._reader = csv.reader(self, delimiter=delim, strict=True)     # reused: 5x faster than one a line

    def __iter__(self):
        return self

    def __next__(self) -> str:      # feeds the reader the current line only, so a quote cannot swallow the next
        line, self._line = self._line, None
        if line is None:
            raise StopIteration
        return line

    def __call__(self, line: str) -> list[str] | str:
        if '"' not in line:
            return line.split(self.delim)
        self._line = line
        try:
            return next(self._reader)
        except csv.Error as e:
            self._line = None
            if "end of data" in str(e):
                return "unbalanced quote"
            if "expected after" in str(e):
                return "misplaced quote"
            return f"unreadable row ({e})"


def _trim(row: list[str]) -> list[str]:
    """Drop empty trailing fields (``u1,s1,3,``)."""
    end = len(row)
    while end > 1 and not row[end - 1].strip():
        end -= 1
    return row if end == len(row) else row[:end]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff(sample: list) -> tuple[str | None, int]:
    """The delimiter splitting most sample lines into one field count (at least 2), and that count."""
    best, best_key, best_n = None, None, 0
    for rank, d in enumerate(DELIMITERS):
        n_fields, split = Counter(), _Splitter(d)
        for _, line in sample:
            row = split(line.rstrip("\r\n"))
            n_fields[len(_trim(row)) if isinstance(row, list) else line.count(d) + 1] += 1
        multi = [(agree, n) for n, agree in n_fields.items() if n >= 2]
        if not multi:
            continue
        agree, n = max(multi)                   # most rows agree; on a tie the larger field count
        if best_key is None or (agree, -rank) > best_key:
            best, best_key, best_n = d, (agree, -rank), n
    return best, best_n
