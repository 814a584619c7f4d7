"""The index export (``audiovis export``): versioned JSON Lines / Parquet files that round-trip through the
reader, carry dissection labels, never name a server path, and refuse tampered, foreign or newer files."""
import json
import math
import shutil

import pytest

import audiovis
from audiovis.errors import DataError, ParameterError
from audiovis.export import FORMAT, FORMAT_VERSION, export_index, read_export
from audiovis.index import UnitIndex
from audiovis.labels import load_dissection
from audiovis.workspace import Workspace


def _copy(built_ws, root):
    ws = root / "ws"
    shutil.copytree(built_ws[0], ws)
    (ws / "index" / "dissection.json").unlink(missing_ok=True)   # other tests dissect the shared workspace
    return ws


@pytest.fixture(scope="module")
def labelled(built_ws, tmp_path_factory):
    """A copy of the built workspace with a dissection (ground-truth concepts only: seconds), exported in
    both formats."""
    from audiovis.visualise.dissect import dissect
    root = tmp_path_factory.mktemp("export")
    ws = _copy(built_ws, root)
    dissect(ws, descriptors=False, progress=False)
    summaries = {fmt: export_index(ws, root / f"out-{fmt}", fmt=fmt) for fmt in ("jsonl", "parquet")}
    return ws, root, summaries


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN (JSON Lines write it as null)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def _clips(ix, unit, bottom=False):
    return [{k: v for k, v in c.items() if k != "song_idx"} for c in ix.top(unit, n=ix.k, bottom=bottom)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_round_trips(labelled, fmt):
    ws, root, summaries = labelled
    ix = UnitIndex(ws)
    ex = read_export(root / f"out-{fmt}")
    assert summaries[fmt]["units"] == ix.n_units == len(ex) and ex.layers == ix.layers and ex.k == ix.k
    assert [u["unit"] for u in ex.units] == ix.units() and ex.unit_names("conv1") == ix.units("conv1")
    labels = load_dissection(Workspace(ws))
    assert labels and ex.meta["counts"]["labelled_units"] == sum(1 for v in labels.values() if v)
    n_clips = 0
    for unit in ix.units():
        top, bottom = _clips(ix, unit), _clips(ix, unit, bottom=True)
        assert _same(ex.top(unit), top), unit
        assert _same(ex.top(unit, bottom=True), bottom), unit
        assert _same(ex.stats(unit), ix.stats(unit)), unit
        got = ex.unit(unit)
        assert _same(got["labels"], labels.get(unit, [])), unit
        assert got["top"] == ex.top(unit) and got["bottom"] == ex.top(unit, bottom=True)
        assert (got["layer"], got["index"]) == (unit.split(":")[0], int(unit.split(":")[1]))
        n_clips += len(top) + len(bottom)
    assert ex.meta["counts"]["clips"] == len(ex.clips) == n_clips
    assert ex.top("conv1:0", n=2) == _clips(ix, "conv1:0")[:2]
    kinds = {(c["unit"], c["kind"], c["rank"]) for c in ex.clips}
    assert ("conv1:0", "top", 1) in kinds and ("conv1:0", "bottom", 1) in kinds and len(kinds) == n_clips
    # songs: ids, durations and ground truth, never the file path
    w = Workspace(ws)
    assert [s["song_id"] for s in ex.songs] == w.song_ids()
    assert all("path" not in s for s in ex.songs)
    truth = w.labels()
    assert truth and all(s["labels"] == truth.get(s["song_id"], {}) for s in ex.songs)
    m = ex.meta
    assert (m["format"], m["format_version"], m["table_format"]) == (FORMAT, FORMAT_VERSION, fmt)
    assert m["workspace"] == "ws" and m["audiovis_version"] == audiovis.__version__
    assert m["model"]["layers"] == ix.layers and m["labels"]["metric"] == "auroc"
    assert m["model"]["preset"] == "small"            # the size "auto" chose, not "auto"
    assert set(m["files"]) == {f"{t}.{fmt}" for t in ("units", "clips", "songs")}
    assert all(len(f["sha256"]) == 64 and f["rows"] > 0 for f in m["files"].values())


def test_formats_agree(labelled):
    _, root, _ = labelled
    a, b = read_export(root / "out-jsonl"), read_export(root / "out-parquet")
    assert _same(a.units, b.units) and _same(a.clips, b.clips) and _same(a.songs, b.songs)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_names_no_server_path(labelled, corpus, fmt):
    ws, root, _ = labelled
    files = list((root / f"out-{fmt}").iterdir())
    assert {f.name for f in files} == {"manifest.json", f"units.{fmt}", f"clips.{fmt}", f"songs.{fmt}"}
    for f in files:
        data = f.read_bytes()
        for p in (ws.resolve(), corpus["audio_dir"].resolve(), root.resolve()):
            assert str(p).encode() not in data, f"{f.name} names {p}"


def test_without_labels_no_labels_field(built_ws, tmp_path):
    ws = _copy(built_ws, tmp_path)
    s = export_index(ws, tmp_path / "out")
    assert s["labelled_units"] == 0 and s["files"] == ["manifest.json", "units.jsonl", "clips.jsonl", "songs.jsonl"]
    ex = read_export(tmp_path / "out" / "manifest.json")          # the folder or its manifest
    assert "labels" not in ex.meta and all("labels" not in u for u in ex.units)
    assert ex.unit("dense1:0")["labels"] == []
    with pytest.raises(ParameterError, match="conv9"):
        ex.unit("conv9:0")


def test_tampered_or_missing_file_is_refused(labelled, tmp_path):
    _, root, _ = labelled
    out = tmp_path / "copy"
    shutil.copytree(root / "out-jsonl", out)
    clips = out / "clips.jsonl"
    lines = clips.read_text().splitlines(keepends=True)
    row = json.loads(lines[0])
    row["activation"] += 1.0
    clips.write_text(json.dumps(row) + "\n" + "".join(lines[1:]))
    with pytest.raises(DataError, match=r"clips\.jsonl.*sha256"):
        read_export(out)
    assert read_export(out, verify=False).clips[0]["activation"] == row["activation"]   # verify=False reads it
    (out / "songs.jsonl").unlink()
    with pytest.raises(DataError, match=r"songs\.jsonl.*missing"):
        read_export(out, verify=False)


def test_unknown_version_or_format_is_refused(labelled, tmp_path):
    _, root, _ = labelled
    out = tmp_path / "copy"
    shutil.copytree(root / "out-parquet", out)
    mpath = out / "manifest.json"
    m = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**m, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(DataError, match=rf"manifest\.json.*format_version {FORMAT_VERSION + 1} is newer.*upgrade"):
        read_export(out)
    mpath.write_text(json.dumps({**m, "format_version": "one"}))
    with pytest.raises(DataError, match=r"manifest\.json.*unknown format_version 'one'"):
        read_export(out)
    mpath.write_text(json.dumps({**m, "format": "something-else"}))
    with pytest.raises(DataError, match=r"manifest\.json.*'something-else'"):
        read_export(out)
    mpath.unlink()
    with pytest.raises(DataError, match="not an audiovis export"):
        read_export(out)


def test_overwrite_rules(built_ws, tmp_path):
    ws = _copy(built_ws, tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ParameterError, match=rf"'{out}' is not empty.*--force"):
        export_index(ws, out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"
    export_index(ws, out, force=True)                       # --force replaces it
    assert not (out / "notes.txt").exists() and read_export(out).meta["table_format"] == "jsonl"
    export_index(ws, out, fmt="parquet")                    # an earlier export is replaced without --force
    assert sorted(p.name for p in out.iterdir()) == ["clips.parquet", "manifest.json", "songs.parquet",
                                                    "units.parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for bad in (ws, tmp_path):                              # never the workspace or a folder above it
        with pytest.raises(ParameterError, match="would replace the workspace"):
            export_index(ws, bad, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="not a folder"):
        export_index(ws, tmp_path / "file")
    with pytest.raises(ParameterError, match="'csv'"):
        export_index(ws, tmp_path / "other", fmt="csv")


def test_cli_export(built_ws, tmp_path, capsys):
    from audiovis.cli import main
    ws = _copy(built_ws, tmp_path)
    out = tmp_path / "cli-out"
    assert main(["export", "-w", str(ws), "--out", str(out), "--format", "parquet"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["format"] == "parquet" and s["out"] == str(out.resolve()) and s["units"] == UnitIndex(ws).n_units
    assert read_export(out).meta["counts"]["units"] == s["units"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main(["export", "-w", str(ws), "--out", str(tmp_path / "busy")]) == 2
    assert "busy' is not empty" in capsys.readouterr().err
    assert main(["export", "-w", str(ws), "--out", str(tmp_path / "busy"), "--force"]) == 0


def test_public_api():
    from audiovis import export
    assert audiovis.export_index is export.export_index and audiovis.read_export is export.read_export
    assert {"export_index", "read_export"} <= set(audiovis.__all__)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_non_finite_numbers_come_back(built_ws, tmp_path, monkeypatch, fmt):
    """JSON has no NaN: JSON Lines write null, the reader gives NaN back (Parquet keeps it as it is)."""
    ws = _copy(built_ws, tmp_path)
    stats = UnitIndex.stats
    monkeypatch.setattr(UnitIndex, "stats", lambda self, u: {**stats(self, u), "strength": math.nan}
                        if str(u) == "conv1:1" else stats(self, u))
    export_index(ws, tmp_path / "out", fmt=fmt)
    ex = read_export(tmp_path / "out")
    assert math.isnan(ex.stats("conv1:1")["strength"]) and math.isfinite(ex.stats("conv1:2")["strength"])
    if fmt == "jsonl":
        assert '"strength": null' in (tmp_path / "out" / "units.jsonl").read_text()


def test_manifest_cannot_point_outside(labelled, tmp_path):
    _, root, _ = labelled
    out = tmp_path / "copy"
    shutil.copytree(root / "out-jsonl", out)
    m = json.loads((out / "manifest.json").read_text())
    m["files"]["../songs.jsonl"] = m["files"].pop("songs.jsonl")
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"'\.\./songs\.jsonl', not a file of the export folder"):
        read_export(out)
