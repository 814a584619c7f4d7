"""The unit index as documented, versioned files (``audiovis export``), and their reader.

An export is a folder of three tables and a manifest, in JSON Lines (default) or Parquet, the way Neuronpedia
publishes its features: every unit with its statistics and labels, every kept clip of every unit, and the songs
the clips come from. Nothing in it points back into the server: songs are named by id, never by file path, and
the workspace by its folder name only. docs/model.md ("Export") documents the fields.

Layout::

    DIR/manifest.json    format, format_version, audiovis version, creation time, workspace name, model and
                         labels summary, counts, and every table file with its rows, bytes and sha256
    DIR/units.jsonl      one row per unit: unit, layer, index, stats {...}, labels [...] (with a dissection)
    DIR/clips.jsonl      one row per kept clip: unit, kind (top|bottom), rank (1 = most, or least, active),
                         song_id, window, start_s, end_s, peak_s, activation
    DIR/songs.jsonl      one row per song: song_id, duration, status, split, labels {concept: value} and
                         segments [...] (where the workspace has ground truth)

(``.parquet`` instead of ``.jsonl`` with ``fmt="parquet"``.) Versioning: a field added keeps
``format_version``; a field removed, renamed or given another meaning raises it. :func:`read_export` refuses a
version newer than it knows, and files whose sha256 differs from the manifest's.

Examples
--------
>>> from audiovis import export_index, read_export                  # doctest: +SKIP
>>> export_index("workspaces/demo", "exports/demo")                 # doctest: +SKIP
>>> ex = read_export("exports/demo")                                # doctest: +SKIP
>>> ex.unit("conv2:17")["top"][0]["song_id"]                        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .errors import DataError, DependencyError, ParameterError
from .index import UnitIndex
from .labels import load_dissection
from .units import parse_unit
from .workspace import Workspace

FORMAT = "audiovis-index-export"
FORMAT_VERSION = 1
FORMATS = ("jsonl", "parquet")
TABLES = ("units", "clips", "songs")
MANIFEST = "manifest.json"
CLIP_FLOATS = ("start_s", "end_s", "peak_s", "activation")
# what the manifest says of a dissection (the unit labels' meaning), when there is one
DISSECTION_HEADER = ("metric", "threshold", "iou_quantile", "n_windows")


# --------------------------------------------------------------------------------------------- writing
def export_index(workspace: str | os.PathLike | Workspace, out: str | os.PathLike, fmt: str = "jsonl",
                 force: bool = False) -> dict:
    """Write a workspace's unit index to the folder ``out`` as versioned tables (module docstring).

    The folder is written next to ``out`` under a temporary name and renamed into place when complete, so a
    killed export never leaves a partial one at ``out``.

    Parameters
    ----------
    workspace : str, Path or Workspace
        Needs the ``index`` stage; unit labels come from ``WS/index/dissection.json`` when there is one.
    out : str or Path
        Folder to write. A folder holding an earlier export is replaced; any other non-empty folder only with
        ``force``.
    fmt : {"jsonl", "parquet"}
        Table format (Parquet needs pyarrow, which comes with streamlit).
    force : bool
        Replace ``out`` even if it is a non-empty folder that is not an export.

    Returns
    -------
    summary : dict
        ``out``, ``format``, ``format_version``, the counts and the file names.

    Raises
    ------
    ParameterError
        Unknown ``fmt``; ``out`` not a folder, not empty and not an export (without ``force``), or the
        workspace itself or a folder above it.
    WorkspaceError
        The workspace has no index.
    """
    if fmt not in FORMATS:
        raise ParameterError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ix = UnitIndex(ws)
    out = Path(out).expanduser().resolve()
    _check_target(out, ws, force)
    dissection = load_dissection(ws)
    tables = {"units": unit_rows(ix, dissection if dissection else None), "clips": clip_rows(ix),
              "songs": song_rows(ws)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))
    try:
        files = {}
        for name, rows in tables.items():
            fname = f"{name}.{fmt}"
            (_write_parquet if fmt == "parquet" else _write_jsonl)(tmp / fname, rows)
            files[fname] = {"table": name, "rows": len(rows), "bytes": (tmp / fname).stat().st_size,
                            "sha256": sha256(tmp / fname)}
        manifest = _manifest(ws, ix, fmt, tables, files, bool(dissection))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)      # gone already once renamed
    return {"out": str(out), "format": fmt, "format_version": FORMAT_VERSION, **manifest["counts"],
            "files": [MANIFEST, *files]}


def unit_rows(ix: UnitIndex, dissection: dict[str, list[dict]] | None = None) -> list[dict]:
    """One row per unit: unit, layer, index, stats (:meth:`UnitIndex.stats`) and, with a dissection
    ({unit: [label, ...]} as :func:`audiovis.labels.load_dissection` reads it), its labels (best first)."""
    from .adapters import read_unit_notes
    notes = read_unit_notes(ix.ws.index_dir)          # what a model of your own says a unit is (CREPE: its pitch)
    rows = []
    for name in ix.units():
        u = parse_unit(name)
        row = {"unit": name, "layer": u.layer, "index": u.index, "stats": ix.stats(name)}
        if dissection is not None:
            row["labels"] = dissection.get(name, [])
        if name in notes:
            row["note"] = notes[name]
        rows.append(row)
    return rows


def clip_rows(ix: UnitIndex) -> list[dict]:
    """One row per kept clip of every unit: its top clips, then its bottom clips, each ranked from 1."""
    rows = []
    for name in ix.units():
        for kind in ("top", "bottom"):
            for rank, c in enumerate(ix.top(name, n=ix.k, bottom=kind == "bottom"), 1):
                rows.append({"unit": name, "kind": kind, "rank": rank, "song_id": c["song_id"],
                             "window": c["window"], **{f: c[f] for f in CLIP_FLOATS}})
    return rows


def song_rows(ws: Workspace) -> list[dict]:
    """One row per song of the catalogue, without its file path (nor the reason a failed song failed: it may
    quote the path): song_id, duration, status, split, and ground-truth labels and segments where there are."""
    labels = ws.labels() if ws.has_labels else None
    segments: dict[str, list[dict]] | None = None
    for seg in ws.segments():
        segments = {} if segments is None else segments
        segments.setdefault(seg.pop("song_id"), []).append(seg)
    rows = []
    for s in ws.songs():
        row = {k: s[k] for k in ("song_id", "duration", "status", "split")}
        if labels is not None:
            row["labels"] = labels.get(s["song_id"], {})
        if segments is not None:
            row["segments"] = segments.get(s["song_id"], [])
        rows.append(row)
    return rows


def _manifest(ws: Workspace, ix: UnitIndex, fmt: str, tables: dict, files: dict, labelled: bool) -> dict:
    hop_s = ix.store.cfg.hop_length / ix.store.cfg.sr
    done = ws.get_meta("done:train") or {}      # the size "auto" chose; older models: the preset asked for
    preset = done.get("summary", {}).get("preset") or done.get("config", {}).get("preset")
    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "audiovis_version": _version(),
         "created": datetime.now(UTC).isoformat(timespec="seconds"), "workspace": ws.path.name,
         "table_format": fmt, "k": ix.k,
         "model": {"preset": preset, "layers": dict(ix.layers), "n_units": ix.n_units,
                   "n_factors": ix.layers.get("output"),
                   "adapter": (ws.get_meta("adapter") or {}).get("name")},      # a model of your own (--model)
         "windows": {"sr": ix.store.cfg.sr, "hop_s": hop_s, "window_s": ix.store.cfg.window_frames * hop_s,
                   "n_windows": len(ix.store.windows)},
         "counts": {"units": len(tables["units"]), "clips": len(tables["clips"]), "songs": len(tables["songs"]),
                    "labelled_units": sum(1 for r in tables["units"] if r.get("labels")),
                    "detector_units": sum(1 for r in tables["units"] if any(e.get("detector") for e in
                                                                           r.get("labels", [])))},
         "files": files}
    if labelled:
        from .visualise.dissect import load_dissection as load_dissection_file
        d = load_dissection_file(ws)
        m["labels"] = {"source": "dissection", **{k: d[k] for k in DISSECTION_HEADER if k in d},
                       "concepts": d.get("concept_info", {})}
    return _finite(m)


def _version() -> str:
    try:
        return importlib.metadata.version("audiovis")
    except importlib.metadata.PackageNotFoundError:      # run from a source tree that is not installed
        return "unknown"


def _check_target(out: Path, ws: Workspace, force: bool) -> None:
    if out == ws.path or out in ws.path.parents:
        raise ParameterError(f"export folder '{out}' would replace the workspace '{ws.path}'; choose another --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise ParameterError(f"export folder '{out}' exists and is not a folder; choose another --out")
    if any(out.iterdir()) and not is_export(out) and not force:
        raise ParameterError(f"export folder '{out}' is not empty and holds no audiovis export; choose another "
                             "--out, or pass --force to replace it")


def is_export(path: str | os.PathLike) -> bool:
    """Whether the folder ``path`` holds an audiovis export (its manifest names the format)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto ``out``; an existing ``out`` is moved aside first and removed after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old)                      # onto the empty folder just made
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)                  # put the previous export back
        raise
    shutil.rmtree(old, ignore_errors=True)


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _finite(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN or infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(_finite(r), ensure_ascii=False, allow_nan=False) + "\n")


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DependencyError(f"Parquet needs pyarrow ({e}); pip install pyarrow, or use the JSON Lines format") \
            from None
    return pa, pq


def _string_map(values: list) -> bool:
    """A column of {str: str or None} dicts (song labels) is written as a Parquet map, not a struct."""
    return all(isinstance(v, dict) and all(isinstance(x, (str, type(None))) for x in v.values())
               for v in values) and bool(values)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    pa, pq = _pyarrow()
    names = list(dict.fromkeys(k for r in rows for k in r))
    cols = {}
    for k in names:
        values = [r.get(k) for r in rows]
        try:
            if _string_map(values):
                cols[k] = pa.array([list(v.items()) for v in values], type=pa.map_(pa.string(), pa.string()))
            else:
                cols[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DataError(f"column {k!r} of {path.name} cannot be written as Parquet: {e}") from None
    pq.write_table(pa.table(cols), path)


# --------------------------------------------------------------------------------------------- reading
class ExportedIndex:
    """An export read back (:func:`read_export`): the same clips and statistics as :class:`UnitIndex`.

    Attributes
    ----------
    path : Path            the export folder
    meta : dict            the manifest
    units : list of dict   the units table (unit, layer, index, stats, labels when exported)
    clips : list of dict   the clips table (unit, kind, rank, song_id, window, start_s, end_s, peak_s, activation)
    songs : list of dict   the songs table (song_id, duration, status, split, labels, segments)
    """

    def __init__(self, path: Path, meta: dict, units: list[dict], clips: list[dict], songs: list[dict]):
        self.path, self.meta, self.units, self.clips, self.songs = path, meta, units, clips, songs
        self.layers: dict[str, int] = dict(meta["model"]["layers"])
        self.k: int = meta["k"]
        self._unit = {u["unit"]: u for u in units}
        self._clips: dict[tuple[str, str], list[dict]] = {}
        for c in sorted(clips, key=lambda c: c["rank"]):
            self._clips.setdefault((c["unit"], c["kind"]), []).append(
                {k: v for k, v in c.items() if k not in ("unit", "kind", "rank")})

    def unit_names(self, layer: str | None = None) -> list[str]:
        return [u["unit"] for u in self.units if layer in (None, u["layer"])]

    def _row(self, unit: str) -> dict:
        name = str(parse_unit(unit, self.layers))
        if name not in self._unit:
            raise DataError(f"unit {name!r} is missing from the units table of the export at '{self.path}'")
        return self._unit[name]

    def top(self, unit: str, n: int | None = None, bottom: bool = False) -> list[dict]:
        """The unit's top (or bottom) clips, as :meth:`UnitIndex.top` gives them (without ``song_idx``)."""
        name = self._row(unit)["unit"]
        clips = self._clips.get((name, "bottom" if bottom else "top"), [])
        return [dict(c) for c in clips[:n]]

    def stats(self, unit: str) -> dict:
        """The unit's statistics, as :meth:`UnitIndex.stats` gives them."""
        return dict(self._row(unit)["stats"])

    def unit(self, unit: str) -> dict:
        """Everything about one unit: unit, layer, index, stats, labels (empty without), top and bottom clips."""
        row = self._row(unit)
        return {**row, "labels": list(row.get("labels") or []), "top": self.top(row["unit"]),
                "bottom": self.top(row["unit"], bottom=True)}

    def __len__(self) -> int:
        return len(self.units)

    def __repr__(self) -> str:
        return f"ExportedIndex('{self.path}', units={len(self.units)}, clips={len(self.clips)})"


def read_export(path: str | os.PathLike, verify: bool = True) -> ExportedIndex:
    """Read an export written by :func:`export_index` (JSON Lines or Parquet).

    Parameters
    ----------
    path : str or Path
        The export folder, or its ``manifest.json``.
    verify : bool
        Check every table file's sha256 against the manifest (default).

    Returns
    -------
    ExportedIndex

    Raises
    ------
    DataError
        No manifest, another format, a ``format_version`` this audiovis does not know (newer: upgrade), a file
        missing, modified (sha256) or unreadable; each message names the file.
    """
    path = Path(path).expanduser()
    folder = path.parent if path.name == MANIFEST else path
    mpath = folder / MANIFEST
    try:
        meta = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise DataError(f"'{mpath}' is missing: '{folder}' is not an audiovis export") from None
    except (OSError, ValueError) as e:
        raise DataError(f"'{mpath}' cannot be read as JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(f"'{mpath}' is not an {FORMAT} manifest (format {got!r})")
    v = meta.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise DataError(f"'{mpath}': unknown format_version {v!r} (this audiovis reads 1..{FORMAT_VERSION})")
    if v > FORMAT_VERSION:
        raise DataError(f"'{mpath}': format_version {v} is newer than this audiovis reads (1..{FORMAT_VERSION}); "
                        "upgrade audiovis to read it")
    lacking = [k for k in ("k", "model", "files") if k not in meta]
    if lacking or not isinstance(meta["files"], dict) or "layers" not in (meta["model"] or {}):
        raise DataError(f"'{mpath}' lacks {', '.join(lacking) or 'model.layers or a files table'}")
    tables: dict[str, list[dict]] = {}
    for fname, info in meta["files"].items():
        if not isinstance(info, dict) or Path(fname).name != fname or fname in (".", ".."):
            raise DataError(f"'{mpath}' lists {fname!r}, not a file of the export folder")
        f = folder / fname
        if not f.is_file():
            raise DataError(f"'{f}' is missing (listed in '{mpath}')")
        if verify and sha256(f) != info.get("sha256"):
            raise DataError(f"'{f}' does not match its sha256 in '{mpath}': the file was modified or truncated")
        tables[info.get("table", f.stem)] = _read_parquet(f) if f.suffix == ".parquet" else _read_jsonl(f)
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise DataError(f"'{mpath}' lists no {', '.join(missing)} table")
    for u in tables["units"]:
        u["stats"] = {k: _nan(x) for k, x in u["stats"].items()}
        if "labels" in u:            # a key absent and a null are the same (Parquet structs have every key)
            u["labels"] = [{k: x for k, x in e.items() if x is not None} for e in u["labels"] or []]
    for c in tables["clips"]:
        c.update({k: _nan(c[k]) for k in CLIP_FLOATS})
    return ExportedIndex(folder, meta, tables["units"], tables["clips"], tables["songs"])


def _nan(x):
    """JSON Lines write non-finite numbers as null: back to NaN (in lists too)."""
    if x is None:
        return math.nan
    if isinstance(x, list):
        return [_nan(v) for v in x]
    return x


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise DataError(f"'{path}' line {i} is not JSON: {e}") from None
    return rows


def _read_parquet(path: Path) -> list[dict]:
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"'{path}' cannot be read as Parquet: {e}") from None
    maps = [f.name for f in table.schema if pa.types.is_map(f.type)]
    rows = table.to_pylist()
    for r in rows:
        for k in maps:
            r[k] = dict(r[k]) if r[k] is not None else None
    return rows
