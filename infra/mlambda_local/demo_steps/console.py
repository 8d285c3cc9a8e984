"""The console: its URL, and what it shows of everything the demo did, as screenshots taken in
Chromium (the files stay in the demo's data directory after the cloud stops)."""

from __future__ import annotations

from pathlib import Path

from mlambda_local.browser import VIEWPORT, chromium, chromium_path, sign_in
from mlambda_local.demo import DemoContext, DemoStep, say


def console_screenshots(ctx: DemoContext) -> None:
    """Sign in with the admin key, then photograph the catalog and the demo model's page."""
    console_url = f"{ctx.admin.target.api_url}/console/"
    say(f"  console: {console_url} (sign in with an API key; `make up` keeps one running)")
    if chromium_path() is None:
        say("  no Chromium for the screenshots: apt-get install -y chromium (or set MLAMBDA_CHROMIUM)")
        return
    from playwright.sync_api import expect

    model = ctx.notes["model"]
    folder: Path = ctx.workdir.parent
    with chromium() as browser:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        sign_in(page, console_url, ctx.admin.target.api_key or "")
        expect(page.get_by_role("table", name="Models").get_by_role("link", name=model)).to_be_visible()
        page.screenshot(path=folder / "console-catalog.png", full_page=True)
        page.goto(f"{console_url}#/models/{model}")
        expect(page.get_by_role("table", name="Versions, newest first")).to_be_visible()
        page.screenshot(path=folder / "console-model.png", full_page=True)
    say(f"  screenshots: {folder / 'console-catalog.png'}, {folder / 'console-model.png'}")


STEPS = [DemoStep(900, "Console: the web UI over everything above", console_screenshots)]
