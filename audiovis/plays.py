"""Listening logs: MSD Taste Profile triplets, CSV/TSV with user/song/plays columns, or raw listen events."""
from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

USER_COLS = ("user", "user_id", "userid", "listener", "listener_id")
SONG_COLS = ("song", "song_id", "songid", "track", "track_id", "item", "item_id")
PLAYS_COLS = ("plays", "play_count", "playcount", "count", "plays_count", "n", "listens")


@dataclass
class PlayLog:
    """A listening log aggregated to play counts.

    Attributes
    ----------
    counts : dict[(user, song), float]
        Total plays per user-song pair (duplicate rows and raw events are summed).
    problems : Counter
        Skipped or fixed rows by reason.
    examples : dict
        The first offending line number per reason, to quote in reports.
    """

    counts: dict = field(default_factory=dict)
    problems: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    n_rows: int = 0
    format: str = ""

    def note(self, reason: str, line_no: int, text: str = "") -> None:
        self.problems[reason] += 1
        self.examples.setdefault(reason, f"line {line_no}" + (f": {text[:80]!r}" if text else ""))


def read_log(path: str | os.PathLike) -> PlayLog:
    """Read a listening log and aggregate it to play counts.

    Accepted forms (delimiter sniffed among tab, comma, semicolon and '|'):

    - MSD Taste Profile: ``user<TAB>song<TAB>plays`` with no header;
    - a table with a header naming user, song and plays columns (aliases such as ``user_id``, ``track``, ``count``);
    - raw listen events: a header with user and song columns but no plays column, or two columns with no header;
      each row counts one play.

    Malformed rows (missing fields, non-numeric, negative or zero counts) are skipped and counted; duplicate
    user-song rows are summed and counted.

    Raises
    ------
    DataError
        The file is missing or empty, its columns cannot be recognised, or no usable row remains.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"listening log '{path}' not found")
    # utf-8-sig: a byte-order mark (spreadsheet exports) must not hide the header
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"listening log '{path}' is empty; expected lines of user<TAB>song<TAB>plays")
    delim = _sniff_delimiter(lines[:50])
    first = [c.strip().lower() for c in next(csv.reader([lines[0]], delimiter=delim))]
    log = PlayLog()
    has_header = any(c in USER_COLS for c in first) and any(c in SONG_COLS for c in first)
    if has_header:
        ui = next(first.index(c) for c in first if c in USER_COLS)
        si = next(first.index(c) for c in first if c in SONG_COLS)
        pi = next((first.index(c) for c in first if c in PLAYS_COLS), None)
        body = lines[1:]
        start_line = 2
        log.format = "table with header" + ("" if pi is not None else " (raw events)")
    else:
        ncol = len(first)
        if ncol >= 3:
            ui, si, pi = 0, 1, 2
            log.format = "MSD triplets"
        elif ncol == 2:
            ui, si, pi = 0, 1, None
            log.format = "raw events (user, song)"
        else:
            raise DataError(f"listening log '{path}': cannot find user, song and plays columns in line 1 "
                            f"{lines[0][:80]!r}; expected user<TAB>song<TAB>plays or a header naming them")
        body = lines
        start_line = 1
    reader = csv.reader(io.StringIO("\n".join(body)), delimiter=delim)
    counts: dict = {}
    seen_rows: set = set()
    need = max(ui, si, pi if pi is not None else 0) + 1
    for k, row in enumerate(reader):
        line_no = start_line + k
        log.n_rows += 1
        if len(row) < need or not row[ui].strip() or not row[si].strip():
            log.note("missing field", line_no, delim.join(row))
            continue
        user, song = row[ui].strip(), row[si].strip()
        if pi is None:
            plays = 1.0
        else:
            raw = row[pi].strip()
            try:
                plays = float(raw)
            except ValueError:
                log.note("non-numeric play count", line_no, raw)
                continue
            if not math.isfinite(plays):
                log.note("non-numeric play count", line_no, raw)
                continue
            if plays < 0:
                log.note("negative play count", line_no, raw)
                continue
            if plays == 0:
                log.note("zero play count", line_no, raw)
                continue
            key_row = (user, song)
            if key_row in seen_rows:
                log.note("duplicate user-song row (summed)", line_no, delim.join(row))
            seen_rows.add(key_row)
        counts[(user, song)] = counts.get((user, song), 0.0) + plays
    log.counts = counts
    if not counts:
        detail = "; ".join(f"{r}: {n} (first at {log.examples[r]})" for r, n in log.problems.items())
        raise DataError(f"listening log '{path}' has no usable rows out of {log.n_rows}"
                        + (f" ({detail})" if detail else ""))
    return log


def _sniff_delimiter(lines: list[str]) -> str:
    best, best_score = "\t", -1
    for d in ("\t", ",", ";", "|"):
        n = [ln.count(d) for ln in lines]
        if min(n) == 0:
            continue
        score = min(n) * 10 - (max(n) - min(n))
        if score > best_score:
            best, best_score = d, score
    return best
