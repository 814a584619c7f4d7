"""Re-take the README's screenshots of the page: `streamlit run` on the demo workspace, headless Debian Chromium.

    python scripts/screenshots.py -w WS_AUTO --unit conv3:89 --layer conv3    # a workspace of --preset auto
    python scripts/screenshots.py -w /tmp/ws_crepe --unit pitch:229 --layer pitch --name screenshot-crepe --clips 6
    python scripts/screenshots.py -w workspaces/demo --unit tags:guitar --layer tags --song S0002   # + NAME-song.png

Needs the dev extras (playwright) and Debian chromium, as the browser test does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _browser import CHROMIUM, CHROMIUM_ARGS, open_and_wait, serve_app  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-w", "--workspace", default="workspaces/demo")
    ap.add_argument("--unit", default="tags:guitar")
    ap.add_argument("--layer", default="tags")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--name", default="screenshot", help="file names: NAME-unit.png, NAME-layer.png")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--song", help="also the song view of this song (with its taggram): NAME-song.png")
    ap.add_argument("--why", action="store_true", help="also the unit view with the first clip's 'why?' open: "
                                                       "NAME-why.png")
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright
    a.out.mkdir(parents=True, exist_ok=True)
    with serve_app(Path(a.workspace).resolve()) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            open_and_wait(page, f"{base}/?view=unit&unit={a.unit}&n={a.clips}&bottom=0", a.clips)
            page.screenshot(path=str(a.out / f"{a.name}-unit.png"))
            if a.why:
                page.get_by_text("why?", exact=True).first.click()
                page.wait_for_function(f"document.querySelectorAll('audio').length >= {a.clips + 3}",
                                       timeout=600_000)
                page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=600_000)
                page.get_by_text("why?", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(1000)
                page.screenshot(path=str(a.out / f"{a.name}-why.png"))
            page.goto(f"{base}/?view=layer&layer={a.layer}")
            page.wait_for_selector("img", timeout=120_000)
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(a.out / f"{a.name}-layer.png"))
            if a.song:
                page.goto(f"{base}/?view=song&song={a.song}")
                page.wait_for_function("document.querySelectorAll('[data-testid=stMain] img').length >= 2",
                                       timeout=120_000)
                page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=120_000)
                page.wait_for_timeout(1000)
                page.screenshot(path=str(a.out / f"{a.name}-song.png"), full_page=True)
        finally:
            browser.close()
    print(f"wrote {a.out / (a.name + '-unit.png')} and {a.out / (a.name + '-layer.png')}")


if __name__ == "__main__":
    main()
