"""Songs <-> files (manifest or file stems), ground truth, and the ingest stage."""
from __future__ import annotations

import csv
import errno
import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from . import audio
from .config import FeatureConfig
from .errors import AudioError, DataError, ParameterError
from .plays import read_log
from .workspace import Workspace

ID_COLS = ("song_id", "song", "id", "track_id", "track")
FILE_COLS = ("file", "path", "filename", "audio")


def read_manifest(path: str | os.PathLike, audio_dir: str | os.PathLike,
                  allow_outside: bool = False) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Read a manifest CSV (song id and file columns) into {song_id: path}.

    Relative paths are resolved against ``audio_dir``. A path that leaves ``audio_dir`` (``..``, an absolute path
    elsewhere, a symlink out) is refused unless ``allow_outside``.

    Returns
    -------
    mapping : dict[str, Path]
    problems : list of (item, reason)
    """
    path, root = Path(path), Path(audio_dir).resolve()
    if not path.exists():
        raise DataError(f"manifest '{path}' not found")
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:   # -sig: a spreadsheet's BOM
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"manifest '{path}' is empty; expected a header with song_id and file columns")
    header = [c.strip().lower() for c in rows[0]]
    try:
        ic = next(header.index(c) for c in header if c in ID_COLS)
        fc = next(header.index(c) for c in header if c in FILE_COLS)
    except StopIteration:
        raise DataError(f"manifest '{path}': header {rows[0]!r} needs a song id column ({', '.join(ID_COLS)}) "
                        f"and a file column ({', '.join(FILE_COLS)})") from None
    mapping: dict[str, Path] = {}
    problems: list[tuple[str, str]] = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(ic, fc) or not row[ic].strip() or not row[fc].strip():
            problems.append((f"{path.name} row {n}", "missing song id or file"))
            continue
        sid, rel = row[ic].strip(), row[fc].strip()
        p = Path(rel)
        p = (p if p.is_absolute() else root / p)
        resolved = p.resolve()
        if not allow_outside and not resolved.is_relative_to(root):
            problems.append((sid, f"manifest path '{rel}' points outside the library root '{root}' "
                                  f"(pass --allow-outside to permit it)"))
            continue
        if sid in mapping:
            problems.append((sid, f"duplicate song id in manifest row {n}; kept the first"))
            continue
        mapping[sid] = p
    return mapping, problems


def map_by_stem(audio_dir: str | os.PathLike, allow_outside: bool = False
                ) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Map every audio file under ``audio_dir`` to its file stem as song id.

    Symlinks are followed, but a file whose real location is outside ``audio_dir`` (a symlink out, or a file in a
    symlinked folder elsewhere) is skipped with the reason unless ``allow_outside``, as :func:`read_manifest`
    does. A dangling symlink is kept here (reading it fails at ingest with "file not found").
    """
    root = Path(audio_dir).resolve()
    mapping: dict[str, Path] = {}
    problems: list[tuple[str, str]] = []
    for p in audio.find_audio(audio_dir):
        what = audio.not_regular(p)              # a FIFO would block the first read: reported, never opened
        if what is not None:
            problems.append((p.stem, f"'{p}': not a regular file ({what}); skipped without reading it"))
            continue
        if not allow_outside:
            why = _outside(p, Path(audio_dir), root)
            if why:
                problems.append((p.stem, why))
                continue
        if p.stem in mapping:
            problems.append((str(p), f"song id '{p.stem}' already taken by '{mapping[p.stem]}'; skipped"))
            continue
        mapping[p.stem] = p
    return mapping, problems


def _outside(p: Path, audio_dir: Path, root: Path) -> str | None:
    """Why file ``p`` (found under ``audio_dir``, whose real path is ``root``) is outside it, or None."""
    real = p.resolve()
    if real.is_relative_to(root) or not real.exists():
        return None
    rel = p.relative_to(audio_dir) if p.is_relative_to(audio_dir) else p
    how = f"is a symlink to '{real}'" if p.is_symlink() else f"is in a symlinked folder and lies at '{real}'"
    return f"'{rel}' {how}, outside the audio folder '{root}'; skipped (pass --allow-outside to allow it)"


def read_labels(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Song-level ground truth from a CSV: a song id column plus categorical concept columns.

    Columns named like files, and columns whose values are all numbers (bpm, durations), are not concepts.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"labels file '{path}' not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"labels file '{path}' has no rows")
    cols = list(rows[0].keys())
    idc = next((c for c in cols if c.lower() in ID_COLS), None)
    if idc is None:
        raise DataError(f"labels file '{path}': no song id column among {cols!r}")
    concepts = []
    for c in cols:
        if c == idc or c.lower() in FILE_COLS:
            continue
        vals = [r[c] for r in rows if r[c] not in ("", None)]
        if not vals or all(_is_number(v) for v in vals):
            continue
        concepts.append(c)
    return {r[idc]: {c: r[c] for c in concepts if r[c] not in ("", None)} for r in rows}


def read_segments(path: str | os.PathLike) -> list[tuple[str, float, float, str, str]]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"segments file '{path}' not found")
    out = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, r in enumerate(csv.DictReader(f), start=2):
            try:
                out.append((r["song_id"], float(r["start_s"]), float(r["end_s"]), r["concept"], r["value"]))
            except (KeyError, ValueError, TypeError):
                raise DataError(f"segments file '{path}' row {n}: expected song_id,start_s,end_s,concept,value; "
                                f"got {r!r}") from None
    return out


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def engine_signature(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        if p is None:
            h.update(b"-")
            continue
        p = Path(p) if isinstance(p, (str, os.PathLike)) and Path(p).exists() else p
        if isinstance(p, Path):
            st = p.stat()
            h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes (identical files under two song ids are duplicates).

    Raises OSError, without opening it, for what is not a regular file (a FIFO would block the read forever).
    """
    what = audio.not_regular(path)
    if what is not None:
        raise OSError(errno.EINVAL, f"not a regular file ({what})", str(path))
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _drop_duplicates(songs: list[tuple], problems: list[tuple[str, str]]) -> tuple[list[tuple], dict[str, str]]:
    """Keep the first (in song id order) of songs with byte-identical files; skip the others with the reason.

    Only files whose sizes collide are hashed, so a library of distinct songs costs one ``stat`` per file.
    Returns the kept songs and {skipped song id: kept song id} (their plays are credited to the kept song).
    """
    by_size: dict[int, list[int]] = {}
    for i, s in enumerate(songs):
        by_size.setdefault(os.stat(s[1]).st_size, []).append(i)
    first: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        for i in group:
            sid, path = songs[i][0], songs[i][1]
            try:
                digest = content_hash(path)
            except OSError:
                continue
            if digest in first:
                aliases[sid] = first[digest]
                problems.append((sid, f"duplicate of song '{first[digest]}' (identical file content, sha1 "
                                      f"{digest[:12]}); skipped, its plays count for '{first[digest]}'"))
            else:
                first[digest] = sid
    return [s for s in songs if s[0] not in aliases], aliases


def ingest(workspace: str | os.PathLike | Workspace, audio_dir: str | os.PathLike, plays: str | os.PathLike | None,
           manifest: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
           segments: str | os.PathLike | None = None, max_duration: float = FeatureConfig.max_duration,
           min_duration: float = 3.0, allow_outside: bool = False, force: bool = False, progress: bool = True) -> dict:
    """Build a workspace's catalogue from an audio folder and a listening log.

    Parameters
    ----------
    workspace : str, Path or Workspace
    audio_dir : str or Path
        The library root; scanned recursively when there is no manifest.
    plays : str, Path or None
        Listening log (see :func:`audiovis.plays.read_log`). None: no plays (an index-only workspace for a model
        of your own, :mod:`audiovis.adapters`; factorize, train and evaluate need plays).
    manifest : str or Path, optional
        CSV mapping song ids to files; without it a file's stem is its song id.
    labels, segments : str or Path, optional
        Ground truth, when known (the demo world has it).
    max_duration, min_duration : float
        Songs outside these bounds (seconds) are skipped with the reason; the bounds are inclusive (a file of
        exactly 30 minutes is accepted with the default limit).
    allow_outside : bool
        Accept files whose real location is outside ``audio_dir``: manifest paths that leave it, and (without a
        manifest) symlinks, or files in symlinked folders, that point out of it. By default each is skipped with
        the reason in the report.

    Notes
    -----
    Songs whose files are byte-identical (the same file under two song ids, a copy, a symlink to it) are
    duplicates: the first in song id order is kept, the others are skipped with the reason "duplicate of song
    ..." in the report, and their plays are credited to the kept song, so no play is lost and the cold-start
    test split never holds a copy of a training song.

    Returns
    -------
    summary : dict
        Counts of songs, users, plays and problems by reason.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise ParameterError(f"audio folder '{audio_dir}' does not exist or is not a folder")
    sig = engine_signature(audio_dir, plays, manifest, labels, segments, max_duration, min_duration, allow_outside)
    if not force and ws.exists() and ws.get_meta("done:ingest", {}).get("signature") == sig:
        return ws.get_meta("done:ingest")["summary"]
    log = read_log(plays) if plays is not None else None
    mapping, problems = _find_files(audio_dir, manifest, allow_outside)
    songs = _check_songs(mapping, problems, max_duration, min_duration, progress)
    songs, aliases = _drop_duplicates(songs, problems)
    if log is None:                      # an index-only workspace (a model of your own, no listening log)
        if not songs:
            raise DataError(f"no usable audio under '{audio_dir}': {len(problems)} files skipped"
                            + (f", e.g. {problems[0][0]}: {problems[0][1]}" if problems else ""))
        counted = _Plays({s[0]: i for i, s in enumerate(songs)}, {}, [], 0, {})
    else:
        counted = _count_plays(log, songs, aliases, plays, problems)
    label_map = read_labels(labels) if labels else {}
    seg_rows = read_segments(segments) if segments else []
    log_rows = _log_problems(log, plays, counted) if log is not None else []
    _write_catalog(ws, songs, counted, label_map, seg_rows, problems + log_rows)
    summary = {
        "songs": len(songs), "songs_skipped": len(problems),
        "users": len(counted.users), "pairs": len(counted.rows), "plays": float(sum(r[2] for r in counted.rows)),
        "log_rows": log.n_rows if log else 0, "log_format": log.format if log else None,
        "log_problems": dict(log.problems) if log else {},
        "unknown_song_pairs": counted.unknown, "duplicates": len(aliases),
        "labelled_songs": len([s for s in label_map if s in counted.song_idx]),
    }
    ws.mark_done("ingest", {"signature": sig, "summary": summary})
    return summary


def _find_files(audio_dir: Path, manifest, allow_outside: bool) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """{song id: file} from the manifest, or from the file stems under ``audio_dir``, and the problems found."""
    if manifest is not None:
        mapping, problems = read_manifest(manifest, audio_dir, allow_outside=allow_outside)
    else:
        mapping, problems = map_by_stem(audio_dir, allow_outside=allow_outside)
    if not mapping and not problems:
        raise DataError(f"no audio files (WAV, FLAC, OGG, Opus, MP3) found under '{audio_dir}'")
    return mapping, problems


def _check_songs(mapping: dict[str, Path], problems: list[tuple[str, str]], max_duration: float,
                 min_duration: float, progress: bool) -> list[tuple]:
    """(song id, resolved path, duration, sr, channels) of each file whose header reads and whose duration is
    within the bounds, in song id order; the others go to ``problems`` with the reason."""
    songs = []
    for sid, p in tqdm(sorted(mapping.items()), desc="ingest: checking audio", unit="song", disable=not progress):
        try:
            meta = audio.info(p)
            # the limit is inclusive: a file of exactly max_duration seconds (30 min by default) is accepted
            if meta.duration > max_duration:
                raise AudioError(f"'{p}': {meta.duration:.0f} s is longer than the limit of {max_duration:.0f} s")
            if meta.duration < min_duration:
                raise AudioError(f"'{p}': {meta.duration:.2f} s is shorter than one {min_duration:.0f} s window")
        except AudioError as e:
            problems.append((sid, str(e)))
            continue
        songs.append((sid, str(p.resolve()), meta.duration, meta.sr, meta.channels))
    return songs


class _Plays(NamedTuple):
    song_idx: dict[str, int]                 # song id -> row of the songs table
    users: dict[str, int]                    # user id -> row of the users table
    rows: list[tuple[int, int, float]]       # (user, song, plays), one per pair
    unknown: int                             # user-song pairs of songs not in the catalogue
    unknown_ids: dict[str, int]              # those songs -> their pairs


def _count_plays(log, songs: list[tuple], aliases: dict[str, str], plays, problems: list[tuple[str, str]]) -> _Plays:
    """The log's plays per (user, song) of the catalogue's songs (a duplicate's plays count for the song it
    duplicates); a DataError if no row names a usable song."""
    song_idx = {s[0]: i for i, s in enumerate(songs)}
    users: dict[str, int] = {}
    pair_plays: dict[tuple[int, int], float] = {}
    unknown = 0
    unknown_ids: dict[str, int] = {}
    for (u, s), n in log.counts.items():
        s = aliases.get(s, s)                 # plays of a duplicate count for the song it duplicates
        if s not in song_idx:
            unknown += 1
            unknown_ids[s] = unknown_ids.get(s, 0) + 1
            continue
        key = (users.setdefault(u, len(users)), song_idx[s])
        pair_plays[key] = pair_plays.get(key, 0.0) + n
    play_rows = [(u, s, n) for (u, s), n in pair_plays.items()]
    if not play_rows:
        why = f"; {len(problems)} songs were skipped, e.g. {problems[0][0]}: {problems[0][1]}" if problems else ""
        raise DataError(f"no row of the listening log '{plays}' names a usable song: "
                        f"{len(log.counts)} user-song pairs, {len(songs)} usable songs{why}; check that the "
                        f"log's song ids match the manifest or the file names")
    return _Plays(song_idx, users, play_rows, unknown, unknown_ids)


def _log_problems(log, plays, counted: _Plays) -> list[tuple[str, str]]:
    """Report rows (item, reason) of the listening log: unreadable rows by reason, then unknown song ids."""
    rows = [(f"{Path(plays).name} ({log.examples[reason]})", f"{reason}: {n} rows")
            for reason, n in log.problems.items()]
    if counted.unknown:
        some = ", ".join(list(counted.unknown_ids)[:5])
        rows.append((Path(plays).name, f"unknown or unusable song id: {counted.unknown} user-song pairs "
                                       f"({len(counted.unknown_ids)} songs, e.g. {some})"))
    return rows


def _write_catalog(ws: Workspace, songs: list[tuple], counted: _Plays, label_map: dict[str, dict[str, str]],
                   seg_rows: list[tuple], report: list[tuple[str, str]]) -> None:
    """Replace the workspace's catalogue (songs, users, plays, ground truth, the ingest report) in one commit,
    and empty the meta table (every stage's markers and settings went with the old catalogue)."""
    song_idx = counted.song_idx
    db = ws.db
    with db:
        for t in ("songs", "users", "plays", "labels", "segments", "report", "meta"):
            db.execute(f"DELETE FROM {t}")
        db.executemany("INSERT INTO songs(idx, song_id, path, duration, sr, channels) VALUES (?,?,?,?,?,?)",
                       [(i, *s) for i, s in enumerate(songs)])
        db.executemany("INSERT INTO users(idx, user_id) VALUES (?, ?)", [(i, u) for u, i in counted.users.items()])
        db.executemany("INSERT INTO plays(user_idx, song_idx, plays) VALUES (?,?,?)", counted.rows)
        db.executemany("INSERT INTO labels(song_id, concept, value) VALUES (?,?,?)",
                       [(sid, c, v) for sid, d in label_map.items() if sid in song_idx for c, v in d.items()])
        db.executemany("INSERT INTO segments(song_id, start_s, end_s, concept, value) VALUES (?,?,?,?,?)",
                       [r for r in seg_rows if r[0] in song_idx])
        db.executemany("INSERT INTO report(stage, item, reason) VALUES ('ingest', ?, ?)", report)
