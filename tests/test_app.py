"""The Streamlit page's logic with streamlit.testing.v1.AppTest on the built fixture workspace."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def _app(monkeypatch, ws, **params) -> AppTest:
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(ws))
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
    assert len(at.get("audio")) == 4
    assert len(at.get("image")) == 4 + 1                             # a picture per clip + the histogram
    qp = dict(at.query_params)
    assert qp["unit"] == "conv2:3" and qp["n"] == "4" and qp["bottom"] == "0" and qp["view"] == "unit"
    assert qp["ws"] == str(built_ws[0])


def test_ws_query_param_and_least_activating(monkeypatch, built_ws, tmp_path):
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(tmp_path / "elsewhere"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(ws=str(built_ws[0]), unit="output:1", n="2", bottom="1")
    at.run()
    assert not at.exception
    assert "Unit output:1" in _titles(at)
    assert at.sidebar.toggle(key="bottom").value is True
    assert any("Least 2 clips" in m.value for m in at.markdown)
    assert len(at.get("audio")) == 2


def test_selection_sort_search_random(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0])
    assert not at.exception and len(at.get("audio")) == 5           # n defaults to 10, capped at k = 5
    at.sidebar.selectbox(key="layer").set_value("conv1").run()
    at.sidebar.selectbox(key="sort").set_value("sparsity").run()
    assert at.sidebar.selectbox(key="unit").value.startswith("conv1:")
    at.sidebar.selectbox(key="unit").set_value("conv1:7").run()
    assert "Unit conv1:7" in _titles(at) and at.query_params["unit"] == "conv1:7"
    at.sidebar.slider(key="n").set_value(2).run()
    assert len(at.get("audio")) == 2
    at.sidebar.text_input(key="query").input("conv1:1").run()        # search narrows the list
    opts = at.sidebar.selectbox(key="unit").options
    assert opts and all("conv1:1" in o for o in opts)
    at.sidebar.text_input(key="query").input("zzzz nothing").run()
    assert not at.exception and "No unit matches" in at.sidebar.warning[0].value
    at.sidebar.text_input(key="query").input("").run()
    at.sidebar.button[0].click().run()                                 # random unit
    assert not at.exception and at.sidebar.selectbox(key="unit").value.startswith("conv1:")


def test_bad_unit_in_url_falls_back(monkeypatch, built_ws):
    at = _app(monkeypatch, built_ws[0], unit="conv2:99999", n="abc")
    assert not at.exception
    assert _titles(at)[0].startswith("Unit ")
    assert len(at.get("audio")) == 10 or len(at.get("audio")) == at.sidebar.slider(key="n").value


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
