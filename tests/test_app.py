"""The Streamlit page's logic with streamlit.testing.v1.AppTest on the built fixture workspace."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def _app(monkeypatch, ws_dir, **params) -> AppTest:
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(ws_dir))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _titles(at) -> list[str]:
    return [t.value for t in at.title]


def test_empty_state_names_the_commands(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path / "no_ws")
    assert not at.exception
    assert "No workspace at" in at.info[0].value
    code = [c.value for c in at.code]
    assert "audiovis demo" in code
    assert any(c.startswith("audiovis run --workspace") and "--plays" in c for c in code)
    assert len(at.get("audio")) == 0


def test_query_params_reopen_a_unit(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="unit", unit="conv2:3", n="4", bottom="0")
    assert not at.exception
    assert "Unit conv2:3" in _titles(at)
    assert at.sidebar.selectbox(key="layer").value == "conv2"
    assert at.sidebar.slider(key="n").value == 4
    assert len(at.get("audio")) == 4 + 1                             # a player per clip + the play-all track
    assert len(at.get("image")) == 4 + 1                             # a picture per clip + the histogram
    qp = dict(at.query_params)
    assert qp["unit"] == "conv2:3" and qp["n"] == "4" and qp["bottom"] == "0" and qp["view"] == "unit"
    assert qp["ws"] == built_ws[0].name                            # the served workspace's name, not its path


def test_ws_query_param_picks_among_served_workspaces_and_least_activating(monkeypatch, built_ws, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("AUDIOVIS_WORKSPACES", os.pathsep.join([str(other), str(built_ws[0])]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(ws=built_ws[0].name, unit="output:1", n="2", bottom="1")
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="ws").options == ["other", built_ws[0].name]
    assert "Unit output:1" in _titles(at)
    assert at.sidebar.toggle(key="bottom").value is True
    assert any("Least 2 clips" in m.value for m in at.markdown)
    assert len(at.get("audio")) == 2 + 1
    at.sidebar.selectbox(key="ws").set_value("other").run()          # the empty state of the other one
    assert not at.exception and "No workspace at" in at.info[0].value


def _all_text(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "title", "info", "warning", "error", "code", "text", "header", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)] + [str(e.value) for e in getattr(at.sidebar, kind)]
    return "\n".join(parts)


@pytest.mark.parametrize("hostile", ["../../../../tmp/other_ws", "~", "/proc/self", "\x00", "OTHER"])
def test_ws_param_cannot_open_anything_else(monkeypatch, built_ws, tmp_path, hostile):
    """A visitor's ?ws= is a name among the served workspaces: a path, ~, /proc/self or a NUL byte opens
    nothing, echoes nothing of the server, and the served workspace is shown with a warning."""
    other = tmp_path / "OTHER"                                        # a finished workspace that is not served
    shutil.copytree(built_ws[0], other)
    if hostile == "../../../../tmp/other_ws":
        hostile = os.path.relpath(other, Path.cwd())
    at = _app(monkeypatch, built_ws[0], ws=hostile, unit="conv2:1", n="2")
    assert not at.exception
    assert "Unit conv2:1" in _titles(at)
    assert "is not served here" in at.sidebar.warning[0].value
    assert at.query_params["ws"] == built_ws[0].name
    text = _all_text(at)
    assert str(Path.home()) not in text and str(os.getpid()) not in text and "/proc" not in text
    assert str(other) not in text


def _damaged_copy(built_ws, tmp_path, damage) -> Path:
    ws = tmp_path / "damaged"
    shutil.copytree(built_ws[0], ws)
    damage(ws)
    return ws


@pytest.mark.parametrize("damage,expect", [
    (lambda ws: [(ws / f"catalog.sqlite{x}").unlink(missing_ok=True) for x in ("-wal", "-shm")]
     + [(ws / "catalog.sqlite").write_bytes(b"this is not a database" * 100)], "audiovis ingest"),
    (lambda ws: (ws / "index" / "units.npz").unlink(), "audiovis index"),
    (lambda ws: (ws / "model.pt").write_bytes(b"\x80\x04corrupt pickle"), "audiovis"),
], ids=["corrupt-catalog", "missing-units", "bad-checkpoint"])
def test_damaged_workspace_gives_a_message_not_a_traceback(monkeypatch, built_ws, tmp_path, damage, expect):
    ws = _damaged_copy(built_ws, tmp_path, damage)
    at = _app(monkeypatch, ws, view="unit", unit="conv2:1")
    assert not at.exception, at.exception
    msgs = [e.value for e in at.error] + [e.value for e in at.info]
    assert msgs and any(expect in m for m in msgs), msgs
    assert "Traceback" not in _all_text(at) and 'File "' not in _all_text(at)
def test_selection_sort_search_random(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0])
    assert not at.exception and len(at.get("audio")) == 5 + 1       # n defaults to 10, capped at k = 5; play all
    at.sidebar.selectbox(key="layer").set_value("conv1").run()
    at.sidebar.selectbox(key="sort").set_value("sparsity").run()
    assert at.sidebar.selectbox(key="unit").value.startswith("conv1:")
    at.sidebar.selectbox(key="unit").set_value("conv1:7").run()
    assert "Unit conv1:7" in _titles(at) and at.query_params["unit"] == "conv1:7"
    at.sidebar.slider(key="n").set_value(2).run()
    assert len(at.get("audio")) == 2 + 1
    at.sidebar.text_input(key="query").input("conv1:1").run()        # search narrows the list
    opts = at.sidebar.selectbox(key="unit").options
    assert opts and all("conv1:1" in o for o in opts)
    at.sidebar.text_input(key="query").input("zzzz nothing").run()
    assert not at.exception and "No unit matches" in at.sidebar.warning[0].value
    at.sidebar.text_input(key="query").input("").run()
    at.sidebar.selectbox(key="layer").set_value("conv1").run()        # a search looks in every layer
    at.sidebar.button[0].click().run()                                 # random unit
    assert not at.exception and at.sidebar.selectbox(key="unit").value.startswith("conv1:")


def test_bad_unit_in_url_falls_back(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], unit="conv2:99999", n="abc")
    assert not at.exception
    assert _titles(at)[0].startswith("Unit ")
    assert len(at.get("audio")) == at.sidebar.slider(key="n").value + 1


@pytest.mark.parametrize("params,expect", [
    ({"unit": "conv9:99999"}, "unit conv9:99999 does not exist in this model; showing "),
    ({"unit": "conv1:-1"}, "unit conv1:-1 does not exist in this model; showing "),
    ({"view": "bogus"}, "view 'bogus' does not exist; showing the unit view"),
    ({"view": "song", "song": "../../etc/passwd"}, "song '../../etc/passwd' is not in this workspace; showing "),
    ({"view": "unit", "layer": "conv9"}, "layer 'conv9' does not exist in this model; showing all layers"),
    ({"unit": "conv2:1", "n": "abc"}, "n='abc' is not a whole number; using 10"),
])
def test_malformed_url_parameters_say_what_was_not_found(monkeypatch, built_ws, params, expect):
    """Issue 27: the page says what was asked and not found, and the URL then names what is shown."""
    at = _app(monkeypatch, built_ws[0], **params)
    assert not at.exception
    notes = [w.value for w in at.warning]
    assert any(n.startswith(expect) for n in notes), notes
    qp = dict(at.query_params)
    if "unit" in params and params["unit"] != "conv2:1":
        shown = notes[0].split("showing ")[1].split(",")[0]
        assert qp["unit"] == shown != params["unit"] and f"Unit {shown}" in _titles(at)
    if "song" in params:
        assert qp["song"] != params["song"] and _titles(at)[0] == f"Song {qp['song']}"
    assert qp.get("view") in ("unit", "song") and qp.get("n", "5") == "5"          # n capped at k = 5


def test_landing_unit_is_live_and_search_opens_its_best_match(monkeypatch, built_ws):
    from audiovis.explore import Explorer
    ex = Explorer(built_ws[0])
    at = _app(monkeypatch, built_ws[0])
    landing = at.query_params["unit"]
    assert landing == ex.default_unit() and not ex.unit_flag(landing)
    at.sidebar.selectbox(key="layer").set_value("conv1").run()
    best = ex.unit_table(None, "selectivity", "kind")[0]["unit"]          # the fixture's concept, 'kind=...'
    at.sidebar.text_input(key="query").input("kind").run()             # searches every layer, opens the best
    assert not at.exception and at.query_params["unit"] == best
    assert at.sidebar.selectbox(key="layer").value == "(all layers)"


def test_dead_unit_is_flagged_without_clips(monkeypatch, built_ws, tmp_path):
    import numpy as np
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    z = dict(np.load(ws / "index" / "units.npz"))                       # conv2:0 never fires
    from audiovis.index import UnitIndex
    c = UnitIndex(ws).column("conv2:0")
    for k in ("vmax", "std"):
        z[k][c] = 0.0
    np.savez(ws / "index" / "units.npz", **z)
    at = _app(monkeypatch, ws, unit="conv2:0")
    assert not at.exception and "Unit conv2:0" in _titles(at)
    assert any("flagged dead" in w.value for w in at.warning)
    assert len(at.get("audio")) == 0 and at.sidebar.toggle(key="flagged").value is True
    at.sidebar.toggle(key="flagged").set_value(False).run()            # hidden again: another unit is shown
    assert at.query_params["unit"] != "conv2:0"


def test_layer_and_song_views(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="layer", layer="conv1")
    assert not at.exception
    assert "Layer conv1" in _titles(at)[0]
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) > 0
    assert at.query_params["view"] == "layer" and at.query_params["layer"] == "conv1"
    at.sidebar.radio(key="view").set_value("song").run()
    assert not at.exception and _titles(at)[0].startswith("Song ")
    assert len(at.get("audio")) == 1
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("song_unit_"))).click().run()
    assert not at.exception and _titles(at)[0].startswith("Unit ")


@pytest.mark.slow
def test_song_view_of_a_ten_minute_song(monkeypatch, long_ws):
    """The song view of a 10-minute song plays the whole song (one Vorbis write of it crashed the server)."""
    import io

    import soundfile as sf
    from conftest import LONG_ID
    at = _app(monkeypatch, long_ws[0], view="song", song=LONG_ID)
    assert not at.exception
    assert f"Song {LONG_ID}" in _titles(at)
    assert len(at.get("audio")) == 1
    from audiovis.explore import Explorer
    ex = Explorer(long_ws[0])
    clip = ex.song_audio(ex.song_ids.index(LONG_ID))                   # what the view encoded and played
    y, sr = sf.read(io.BytesIO(clip.data))
    assert clip.mime == "audio/ogg" and len(y) / sr == pytest.approx(600.0, abs=0.1)


def test_song_view_of_a_song_that_failed_featurize(monkeypatch, built_ws, tmp_path):
    """A song that failed featurize has no activations: the view says why instead of listing 'most active'
    units (it once listed units 0-4 with z = 0)."""
    import sqlite3
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    with sqlite3.connect(ws / "catalog.sqlite") as db:
        sid = db.execute("SELECT song_id FROM songs ORDER BY idx LIMIT 1").fetchone()[0]
        db.execute("UPDATE songs SET status='failed', reason='cannot decode (test)' WHERE song_id=?", (sid,))
    from audiovis.explore import Explorer
    v = Explorer(ws).song_view(0, "conv2")
    assert v["units"] == [] and "cannot decode (test)" in v["problem"]
    at = _app(monkeypatch, ws, view="song", song=sid)
    assert not at.exception
    assert any("No activations to show" in w.value and "cannot decode (test)" in w.value for w in at.warning)
    assert not any("Most active" in m.value for m in at.markdown)


def test_ab_view_shows_two_units_side_by_side(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="compare", a="conv2:1", b="conv3:2")
    assert not at.exception and _titles(at)[0].startswith("A/B")
    assert at.selectbox(key="unit_a").value == "conv2:1" and at.selectbox(key="unit_b").value == "conv3:2"
    assert len(at.get("audio")) == 2 * (5 + 1)                     # per side: play all + 5 clips (k = 5)
    assert at.query_params["a"] == "conv2:1" and at.query_params["b"] == "conv3:2"
    at.selectbox(key="unit_b").set_value("conv1:3").run()
    assert not at.exception and at.query_params["b"] == "conv1:3"


def test_ab_view_says_when_a_linked_unit_is_not_shown(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="compare", a="conv9:99999", b="conv3:2")
    assert not at.exception
    assert any(w.value.startswith("unit conv9:99999 is not a live unit of this model") for w in at.warning)
    shown = at.selectbox(key="unit_a").value
    assert shown != "conv9:99999" and at.query_params["a"] == shown and at.query_params["b"] == "conv3:2"


def test_listener_page_plays_around_a_song_whose_audio_is_gone(monkeypatch, built_ws, tmp_path):
    from audiovis.listeners import listening_history
    from audiovis.workspace import Workspace
    ws = tmp_path / "ws"
    shutil.copytree(built_ws[0], ws)
    user = Workspace(ws).user_ids()[0]
    top = listening_history(ws, user, 8)
    gone = Workspace(ws).resolve_audio(Workspace(ws).songs()[top[0]["song_idx"]]["path"])
    Path(gone).rename(Path(gone).with_suffix(".moved"))
    try:
        at = _app(monkeypatch, ws, view="listeners", user=user)
    finally:
        Path(gone).with_suffix(".moved").rename(gone)
    assert not at.exception and not at.error
    assert any(w.value.startswith(f"cannot play {top[0]['song_id']}") for w in at.warning)
    assert len(at.get("audio")) >= len(top) - 1


def test_listener_view_without_listeners_names_the_command(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], view="listeners", user="nobody")
    assert not at.exception
    assert any(w.value.startswith("listener 'nobody' is not in this workspace; showing ") for w in at.warning)
    assert any("audiovis listeners -w" in c.value for c in at.caption)
    assert len(at.get("audio")) >= 1                                 # their most-played songs play


def test_unit_view_opens_dream_and_auralise_of_its_unit(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], unit="conv2:3", n="2")
    at.button(key="unit_dream").click().run()
    assert not at.exception and at.query_params["view"] == "visualise"
    assert at.session_state["vis_dream_layer"] == "conv2" and at.session_state["vis_dream_idx"] == "3"
    at = _app(monkeypatch, built_ws[0], unit="conv2:3", n="2")
    at.button(key="unit_auralise").click().run()
    assert not at.exception and at.session_state["vis_aur_layer"] == "conv2" and at.session_state["vis_aur_idx"] == 3
