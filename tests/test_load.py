"""Load: one `streamlit run` server, 8 browser sessions at once on 8 different units; all render without errors.

Each session is its own browser context (own cookies, own websocket, own Streamlit session). All 8 are
navigated before any is waited on, so the server handles them concurrently. Bounded: every wait has a timeout.
"""
from __future__ import annotations

import time

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS, need_browser, serve_app

pytestmark = pytest.mark.slow

N_SESSIONS = 8
N_CLIPS = 3
N_AUDIO = N_CLIPS + 1          # the unit's clips played in sequence, then one player per clip
UNITS = ["conv1:0", "conv1:5", "conv2:1", "conv2:7", "conv3:2", "conv3:9", "dense1:4", "output:1"]
ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"


def test_eight_concurrent_sessions_on_different_units(built_ws):
    need_browser()
    from playwright.sync_api import sync_playwright
    assert len(UNITS) == N_SESSIONS
    with serve_app(built_ws[0]) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages, console_errors = [], []
            for unit in UNITS:
                ctx = browser.new_context(viewport={"width": 1200, "height": 900})
                page = ctx.new_page()
                page.on("pageerror", lambda e, u=unit: console_errors.append((u, str(e))))
                pages.append(page)
            t0 = time.time()
            for page, unit in zip(pages, UNITS):                 # all sessions start before any is awaited
                page.goto(f"{base}/?view=unit&unit={unit}&n={N_CLIPS}&bottom=0", wait_until="commit")
            deadline = t0 + 240
            for page in pages:
                left_ms = max(1000, int((deadline - time.time()) * 1000))
                page.wait_for_function(f"document.querySelectorAll('audio').length >= {N_AUDIO}",
                                       timeout=left_ms)
                page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=max(1000, int((deadline - time.time()) * 1000)))
            for page, unit in zip(pages, UNITS):
                assert f"Unit {unit}" in page.inner_text("[data-testid=stMain] h1"), unit
                assert page.locator(ERRORS).count() == 0, (unit, page.inner_text("[data-testid=stMain]")[:2000])
                srcs = page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)")
                assert len(srcs) == N_AUDIO and all(srcs), unit
                r = page.request.get(srcs[0])
                assert r.ok and r.headers.get("content-type", "").startswith("audio/"), unit
            assert not console_errors, console_errors
            # the 8 views are different units: their first clips are not all the same
            firsts = {pg.eval_on_selector("audio", "e => e.currentSrc || e.src") for pg in pages}
            assert len(firsts) > 1
        finally:
            browser.close()
