"""Explanations with a simulation score (audiovis.explain)."""
import json
import shutil

import numpy as np
import pytest

from audiovis.errors import ParameterError
from audiovis.explain import explain, explain_arrays, load_explanations
from audiovis.workspace import Workspace


def planted(n_songs=60, per_song=6, seed=0):
    """Windows of songs with two song-level concepts and a continuous 'brightness'; three units:
    0 = 2 * groove=ska + 0.5 * brightness, 1 = silent, 2 = quieter on lead=flute; plus noise."""
    rng = np.random.default_rng(seed)
    songs = np.repeat(np.arange(n_songs), per_song)
    ska = np.repeat(rng.random(n_songs) < 0.3, per_song).astype(float)
    flute = np.repeat(rng.random(n_songs) < 0.4, per_song).astype(float)
    bright = rng.standard_normal(len(songs))
    noise = rng.standard_normal((len(songs), 3)) * 0.2
    acts = np.stack([2 * ska + 0.5 * bright + noise[:, 0], np.zeros(len(songs)), 3 - flute + noise[:, 2]], 1)
    terms = np.stack([ska, flute, bright, rng.standard_normal(len(songs))], 1)
    return acts, terms, ["groove=ska", "lead=flute", "bright", "busy"], \
        ["not groove=ska", "not lead=flute", "dark", "calm"], songs


def test_explanations_name_the_planted_terms_with_a_high_score():
    acts, terms, pos, neg, songs = planted()
    rows = explain_arrays(acts, terms, pos, neg, songs)
    assert rows[0]["text"] == "groove=ska, bright" and rows[0]["score"] > 0.95
    assert [t["term"] for t in rows[0]["terms"]] == ["groove=ska", "bright"]
    assert rows[1] == {"text": "silent", "score": None, "r2_fit": None, "terms": []}
    assert rows[2]["text"] == "not lead=flute" and rows[2]["score"] > 0.9
    # a term that does not help is not added ('busy' is noise)
    assert all("busy" not in r["text"] and "calm" not in r["text"] for r in rows)


def test_the_score_is_measured_on_songs_the_map_was_not_fitted_on():
    rng = np.random.default_rng(1)
    songs = np.repeat(np.arange(40), 5)
    terms = rng.standard_normal((len(songs), 30))        # noise terms only: whatever is chosen overfits
    acts = rng.standard_normal((len(songs), 1))
    row = explain_arrays(acts, terms, [f"t{i}" for i in range(30)], [f"-t{i}" for i in range(30)], songs,
                         min_gain=0.0)[0]
    assert row["r2_fit"] > 0.02 and abs(row["score"]) < 0.3


def test_bad_inputs_say_what_is_wrong():
    acts, terms, pos, neg, songs = planted()
    with pytest.raises(ParameterError, match="must have one row per window"):
        explain_arrays(acts[:10], terms, pos, neg, songs)
    with pytest.raises(ParameterError, match="4 terms but 3 positive"):
        explain_arrays(acts, terms, pos[:3], neg, songs)
    with pytest.raises(ParameterError, match="at least 2 songs"):
        explain_arrays(acts, terms, pos, neg, np.zeros(len(songs)))
    bad = terms.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="terms must be finite"):
        explain_arrays(acts, bad, pos, neg, songs)


def test_render_scores_draws_a_png():
    from audiovis.pictures import render_scores
    assert render_scores([0.9, 0.5, None, -0.2])[:4] == b"\x89PNG"
    assert render_scores([])[:4] == b"\x89PNG"


def test_explain_a_workspace_then_the_page_shows_sorts_and_searches(built_ws, tmp_path, monkeypatch):
    from audiovis.explore import Explorer
    from audiovis.index import UnitIndex
    from audiovis.visualise import dissect
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(built_ws[0], ws.path)
    res = explain(ws, progress=False)
    ix = UnitIndex(ws)
    assert set(res["units"]) == set(ix.units()) and set(res["layers"]) == set(ix.layers)
    assert (ws.index_dir / "explain_descriptors.npz").exists()
    kinds = [u for u, e in res["units"].items() if e["score"] is not None and "kind=" in e["text"]]
    assert kinds                                             # the corpus' planted concept (low/high/noise)
    best = max(kinds, key=lambda u: res["units"][u]["score"])
    assert res["units"][best]["score"] > 0.8
    med = res["layers"]["output"]["median_score"]
    assert med is None or -1 <= med <= 1
    # a second run reads the cached descriptors (no librosa pass)
    monkeypatch.setattr(dissect, "window_descriptors", lambda *a, **k: pytest.fail("descriptors recomputed"))
    again = explain(ws, progress=False)
    assert again["units"][best] == res["units"][best]
    assert load_explanations(ws)[best]["text"] == res["units"][best]["text"]
    ex = Explorer(ws)
    layer = best.split(":")[0]
    rows = ex.unit_table(layer, sort="score")
    scores = [r["score"] for r in rows if np.isfinite(r["score"])]
    assert scores == sorted(scores, reverse=True) and rows[0]["explanation"]
    word = res["units"][best]["text"].split(",")[0].split("=")[-1]
    assert best in [r["unit"] for r in ex.unit_table(layer, query=word)]
    assert ex.unit_explanation(best)["score"] == res["units"][best]["score"]
    assert json.loads((ws.index_dir / "explanations.json").read_text())["max_terms"] == 3


def test_explain_cli_refuses_a_workspace_without_an_index(tmp_path, capsys):
    from audiovis.cli import main
    assert main(["explain", "-w", str(tmp_path / "nothing")]) == 2
    assert "no workspace at" in capsys.readouterr().err


def test_the_page_shows_features_explanations_and_the_score_picture(built_ws, tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from audiovis.dictionary import DictionaryConfig, train_dictionary
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(built_ws[0], ws.path)
    train_dictionary(ws, "dense1", DictionaryConfig(features=8, k=2, epochs=5), progress=False)
    res = explain(ws, descriptors=False, progress=False)
    app = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
    monkeypatch.setenv("AUDIOVIS_WORKSPACE", str(ws.path))
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params.update(view="unit", unit="dense1.dict:1", n="2")
    at.run()
    assert not at.exception
    assert "Unit dense1.dict:1" in [t.value for t in at.title]
    text = res["units"]["dense1.dict:1"]["text"]
    assert any(m.value.startswith("**Explanation:** " + text) for m in at.markdown)
    assert "score" in at.sidebar.selectbox(key="sort").options
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params.update(view="layer", layer="dense1.dict")
    at.run()
    assert not at.exception
    assert "Layer dense1.dict: 8 units" in [t.value for t in at.title]
    assert len(at.get("image")) == 2                         # the score distribution and the heat map
    df = at.dataframe[0].value
    assert {"explanation", "score"} <= set(df.columns) and df["explanation"].iloc[0]
    word = res["units"]["dense1.dict:1"]["text"].split(",")[0].split("=")[-1].replace("not ", "")
    at.sidebar.text_input(key="ov_query").set_value(word).run()
    assert not at.exception and "dense1.dict:1" in list(at.dataframe[0].value["unit"])
    at.sidebar.text_input(key="ov_query").set_value("zzzz nothing").run()
    assert any("No unit of dense1.dict matches" in i.value for i in at.info)
