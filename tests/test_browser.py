"""A real browser on the page: `streamlit run` on a free port, headless Debian Chromium driven by Playwright.

Opens a unit view by URL, checks one audio player per clip and that every player's source is decodable audio
of the clip's length, and saves a screenshot (to a tmp dir, and to $AUDIOVIS_SCREENSHOT when set).
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from _browser import CHROMIUM, CHROMIUM_ARGS, open_and_wait, serve_app
from _browser import need_browser as _need_browser

pytestmark = pytest.mark.slow


def test_unit_view_in_a_real_browser(built_ws, tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright
    ws_path = built_ws[0]
    n = 3
    with serve_app(ws_path) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_and_wait(page, f"{base}/?view=unit&unit=conv2:1&n={n}&bottom=0", n)
            assert "Unit conv2:1" in page.inner_text("[data-testid=stMain] h1")
            srcs = page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)")
            assert len(srcs) == n
            assert len(set(srcs)) == n                      # three different clips
            for src in srcs:
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
            if os.environ.get("AUDIOVIS_SCREENSHOT"):
                out = Path(os.environ["AUDIOVIS_SCREENSHOT"])
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, out)
        finally:
            browser.close()
