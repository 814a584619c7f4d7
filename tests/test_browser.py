"""A real browser on the page: `streamlit run` on a free port, headless Debian Chromium driven by Playwright.

Opens a unit view by URL, checks one audio player per clip and that every player's source is decodable audio
of the clip's length, and saves a screenshot (to a tmp dir, and to $AUDIOVIS_SCREENSHOT when set). Then the
interactive views: uploads a song to the cold-start view and dreams a unit in the Visualise view; a ten-minute
song's view; and every view at 1400 and 820 px (no error box, no traceback, axes on every clip picture).
"""
from __future__ import annotations

import io
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
from _browser import chromium_page, open_and_wait, serve_app
from _browser import need_browser as _need_browser

pytestmark = pytest.mark.slow


def test_unit_view_in_a_real_browser(built_ws, tmp_path):
    _need_browser()
    ws_path = built_ws[0]
    n = 3
    with serve_app(ws_path) as base, chromium_page() as page:
        open_and_wait(page, f"{base}/?view=unit&unit=conv2:1&n={n}&bottom=0", n + 1)
        assert "Unit conv2:1" in page.inner_text("[data-testid=stMain] h1")
        srcs = page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)")
        assert len(srcs) == n + 1                       # the clips in sequence, then each clip
        assert len(set(srcs)) == n + 1                  # three different clips
        y, sr = sf.read(io.BytesIO(page.request.get(srcs[0]).body()))
        assert len(y) / sr == pytest.approx(n * 3.0 + (n - 1) * 0.4, abs=0.05)
        for src in srcs[1:]:
            r = page.request.get(src)
            assert r.ok, src
            assert r.headers.get("content-type", "").startswith("audio/ogg")
            body = r.body()
            assert len(body) < 60_000                    # compact: 3 s of Vorbis, not PCM (132 kB)
            y, sr = sf.read(io.BytesIO(body))
            assert sr == 22050
            assert len(y) / sr == pytest.approx(3.0, abs=0.01)
        shot = tmp_path / "unit.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        title = "[data-testid=stMain] h1"                # keys J and K step through the ranking
        page.keyboard.press("j")
        page.wait_for_function(f"!document.querySelector('{title}').innerText.includes('conv2:1')", timeout=60_000)
        page.keyboard.press("k")
        page.wait_for_function(f"document.querySelector('{title}').innerText.includes('Unit conv2:1')",
                               timeout=60_000)
        if os.environ.get("AUDIOVIS_SCREENSHOT"):
            out = Path(os.environ["AUDIOVIS_SCREENSHOT"])
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, out)


def test_coldstart_and_visualise_views_in_a_real_browser(built_ws, corpus, tmp_path):
    """The two interactive views through a real browser: upload a song to the cold-start view (similar songs
    with playable clips, listeners, units and their timeline), then dream a unit in the Visualise view and
    fetch the dreamed audio that the page plays."""
    _need_browser()
    ws_path = built_ws[0]
    song = sorted(Path(corpus["audio_dir"]).glob("*.flac"))[0]
    with serve_app(ws_path) as base, chromium_page() as page:
        page.goto(f"{base}/?view=coldstart")
        page.locator("input[type=file]").set_input_files(str(song))
        page.get_by_text("Likely listeners", exact=True).wait_for(timeout=120_000)
        page.get_by_text("writes into the workspace", exact=False).wait_for(timeout=120_000)
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        main = page.inner_text("[data-testid=stMain]")
        assert f"This is {song.stem}" in main            # a catalogue song's file, recognised
        assert song.name in main and "Likely listeners" in main and "Most active units" in main
        assert "When the most active units fire" in main
        assert "writes into the workspace, and this server only reads" in main   # unless --allow-writes
        assert page.get_by_role("button", name="Add this song to the workspace").count() == 0
        n_audio = page.eval_on_selector_all("audio", "els => els.length")
        assert n_audio >= 1 + 3                         # the upload and at least 3 similar songs' clips
        srcs = page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)")
        r = page.request.get(srcs[1])                   # the first similar song's clip
        assert r.ok and r.headers.get("content-type", "").startswith("audio/")
        y, sr = sf.read(io.BytesIO(r.body()))
        assert sr == 22050 and len(y) > sr              # a clip of the catalogue, seconds long
        imgs = page.locator("[data-testid=stMain] img")
        for i in range(imgs.count()):                   # images below the fold load when scrolled to
            imgs.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("[...document.querySelectorAll('[data-testid=stMain] img')]"
                               ".every(e => e.complete)", timeout=60_000)
        widths = page.eval_on_selector_all("[data-testid=stMain] img", "els => els.map(e => e.naturalWidth)")
        assert widths and min(widths) > 100             # the timeline image decoded

        page.goto(f"{base}/?view=visualise")
        page.get_by_role("tab", name="Dream").click()
        page.get_by_role("button", name="Dream").filter(has_text=":0").click()
        page.get_by_text("activation of the dream").wait_for(timeout=120_000)
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        panel = page.locator("[role=tabpanel]:visible")
        srcs = panel.locator("audio").evaluate_all("els => els.map(e => e.currentSrc || e.src)")
        assert len(srcs) == 1
        r = page.request.get(srcs[0])
        assert r.ok
        y, sr = sf.read(io.BytesIO(r.body()))
        assert sr == 16000 and len(y) / sr >= 1.0 and float(abs(y).max()) > 0.0   # rendered at the features' rate
        assert panel.locator("img").count() >= 1
        page.screenshot(path=str(tmp_path / "visualise.png"), full_page=True)


def test_song_view_of_a_ten_minute_song_in_a_real_browser(long_ws):
    """The song view of a 10-minute song: the page stays up and its player's source is the whole song."""
    _need_browser()
    from conftest import LONG_ID
    with serve_app(long_ws[0]) as base, chromium_page() as page:
        open_and_wait(page, f"{base}/?view=song&song={LONG_ID}", 1)
        assert f"Song {LONG_ID}" in page.inner_text("[data-testid=stMain] h1")
        srcs = page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)")
        assert len(srcs) == 1
        r = page.request.get(srcs[0])
        assert r.ok and r.headers.get("content-type", "").startswith("audio/ogg")
        y, sr = sf.read(io.BytesIO(r.body()))
        assert sr == 22050 and len(y) / sr == pytest.approx(600.0, abs=0.1)
        widths = page.eval_on_selector_all("[data-testid=stMain] img", "els => els.map(e => e.naturalWidth)")
        assert widths and min(widths) > 100                # the song's picture decoded
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as h:
            assert h.status == 200                          # the server is still up


# ----------------------------------------------------------------------------- every view, two widths
VIEWS = ["view=unit&n=3", "view=unit&unit=conv2:1&n=3&bottom=1", "view=layer&layer=conv2", "view=song",
         "view=compare", "view=listeners", "view=coldstart", "view=visualise", "view=unit&unit=conv9:99999"]


def _clip_picture_has_axes(data: bytes) -> bool:
    """A clip picture (audiovis.pictures.render_clip): tick labels left of and below the spectrogram, and the
    colour bar right of it."""
    import numpy as np
    from PIL import Image

    from audiovis.pictures import CLIP_BOTTOM, CLIP_LEFT, CLIP_RIGHT
    im = np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)
    H = im.shape[0] - CLIP_BOTTOM
    return ((im[:H, :CLIP_LEFT - 2] < 80).sum() > 20 and (im[H + 2:, CLIP_LEFT:-CLIP_RIGHT] < 80).sum() > 20
            and (im[:H, -CLIP_RIGHT + 14:] < 80).sum() > 10)


@pytest.mark.parametrize("width", [1400, 820])
def test_every_view_at_two_widths(built_ws, tmp_path, width):
    """Issue 28: every view at 1400 and 820 px: no error box, no traceback, axes on every clip picture, and
    every player's source decodes to audio."""
    _need_browser()
    with serve_app(built_ws[0]) as base, chromium_page(width=width) as page:
        for q in VIEWS:
            page.goto(f"{base}/?{q}")
            page.wait_for_selector("[data-testid=stMain] :is(h1, h2)", timeout=120_000)
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
            page.wait_for_timeout(800)
            main = page.inner_text("[data-testid=stMain]")
            assert "Traceback" not in main and 'File "' not in main, q
            assert page.locator("[data-testid=stException]").count() == 0, q
            assert page.locator("[data-testid=stAlertContentError]").count() == 0, (q, main[:500])
            for src in page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)"):
                r = page.request.get(src)
                assert r.ok, (q, src)
                y, sr = sf.read(io.BytesIO(r.body()))
                assert len(y) > 0.5 * sr, (q, src)
            n_clips = 0
            for src in page.eval_on_selector_all("[data-testid=stMain] img", "els => els.map(e => e.src)"):
                body = page.request.get(src).body()
                if body[:2] == b"\xff\xd8":                     # the clip pictures are the JPEGs
                    n_clips += 1
                    assert _clip_picture_has_axes(body), (q, src)
            if q.startswith("view=unit") or q == "view=compare":
                assert n_clips >= 3, q
            if "conv9" in q:
                assert "unit conv9:99999 does not exist in this model; showing" in main
            page.screenshot(path=str(tmp_path / f"{q.split('&')[0][5:]}-{width}.png"), full_page=True)
