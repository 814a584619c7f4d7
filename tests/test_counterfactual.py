"""Counterfactual cold-start queries: ablate or clamp units of a new song (audiovis.counterfactual)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, synth_song

from audiovis import coldstart as cs
from audiovis import listeners as L
from audiovis.errors import ParameterError
from audiovis.features import frame_windows


@pytest.fixture(scope="module")
def new_song(tmp_path_factory):
    p = tmp_path_factory.mktemp("cf") / "new_high.wav"
    sf.write(p, synth_song("high", 9.5, np.random.default_rng(5)), SR)
    return p


def test_counterfactual_query(built_ws, new_song):
    eng = cs.get_engine(built_ws[0])
    rec = eng.recommend(new_song, k=5, n_users=6, ablate=["dense1:1"], clamp=["conv3:2=3.5"], drivers=True)
    emb, cf = rec["embedding"], rec["counterfactual"]
    assert cf["interventions"] == ["dense1:1", "conv3:2=3.5"] and cf["windows_changed"] == cf["windows"] == 3
    x = frame_windows(emb.frames, eng.fcfg.window_frames)[1]
    iv = L.parse_interventions(eng.layers, ["dense1:1"], ["conv3:2=3.5"])
    y1 = L.intervened_factors(eng.model, x, iv).mean(0)
    np.testing.assert_allclose(cf["factors"], y1, rtol=1e-6)
    assert [r["song_id"] for r in cf["original"]["similar"]] == [r["song_id"] for r in rec["similar"]]
    assert [r["song_id"] for r in cf["counterfactual"]["similar"]] == [r["song_id"] for r in eng.similar(y1, 5)]
    s1 = eng.user_factors @ y1
    assert [r["user_idx"] for r in cf["counterfactual"]["listeners"]] == list(np.argsort(-s1, kind="stable")[:6])
    for r in cf["counterfactual"]["listeners"]:
        assert r["score_before"] == pytest.approx(float(eng.user_factors[r["user_idx"]] @ emb.factors), rel=1e-5)
    # drivers: x_u . (y' - y'^-j) of the named unit
    top = rec["listeners"][0]
    d = top["drivers"][0]
    y_ab = L.intervened_factors(eng.model, x, L.parse_interventions(eng.layers, [d["unit"]])).mean(0)
    assert d["effect"] == pytest.approx(float(eng.user_factors[top["user_idx"]] @ (emb.factors - y_ab)), rel=1e-3)
    # a unit silent in every window of the song changes nothing
    names = L.unit_names(eng.layers)                            # the first columns of emb.acts, in order
    silent = next(u for j, u in enumerate(names) if not emb.acts[:, j].any())
    same = eng.counterfactual(emb, ablate=[silent], k=5, n_users=6)
    assert same["windows_changed"] == 0 and same["cosine_to_original"] == pytest.approx(1.0)
    assert same["changes"]["similar"]["entered"] == [] and same["changes"]["listeners"]["entered"] == []
    with pytest.raises(ParameterError, match="nothing to change"):
        eng.counterfactual(emb, k=5)


@pytest.mark.slow
def test_counterfactual_in_the_cold_start_view_in_a_real_browser(built_ws, corpus):
    """Upload, ablate a unit: the original and counterfactual similar songs play side by side; a bad clamp is
    refused with its message, not a traceback."""
    from _browser import chromium_page, need_browser, serve_app
    need_browser()
    from pathlib import Path
    song = sorted(Path(corpus["audio_dir"]).glob("*.wav"))[0]
    idle = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
    with serve_app(built_ws[0]) as base, chromium_page() as page:
        page.goto(f"{base}/?view=coldstart")
        page.locator("input[type=file]").set_input_files(str(song))
        page.get_by_text("Counterfactual listening", exact=True).wait_for(timeout=120_000)
        page.wait_for_function(idle, timeout=120_000)
        n_audio = page.eval_on_selector_all("audio", "els => els.length")
        assert "Units that drove it towards each listener" in page.inner_text("[data-testid=stMain]")
        page.locator("[data-testid=stMultiSelect]").first.click()
        page.keyboard.type("dense1:")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        for text in ("Counterfactual: similar songs", "Original: similar songs", "windows changed"):
            page.get_by_text(text).first.wait_for(timeout=60_000)    # a busy server may draw them in steps
        page.wait_for_function(idle, timeout=60_000)
        main = page.inner_text("[data-testid=stMain]")
        assert "Original: similar songs" in main and "windows changed" in main
        assert page.eval_on_selector_all("audio", "els => els.length") == n_audio + 2 * (n_audio - 1)
        box = page.get_by_label("Clamp units (UNIT=VALUE, comma-separated)")
        box.fill("conv3:999=2")
        box.press("Enter")
        page.get_by_text("Cannot run this counterfactual").wait_for(timeout=60_000)
        assert "index 999 out of range" in page.inner_text("[data-testid=stMain]")
