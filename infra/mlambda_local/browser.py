"""The console in a real browser: Debian's Chromium driven by Playwright, for the browser tests,
``make screenshots`` and the screenshot ``make demo`` leaves.

Playwright's own browser download is never used (it is not reachable everywhere): the system's
``chromium`` package is (``apt-get install -y chromium``; ``MLAMBDA_CHROMIUM`` names another).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1366, "height": 900}  # a laptop screen
PATIENCE_MS = 30_000
"""How long an expectation waits for the page (cold functions on a loaded machine take seconds)."""


def chromium_path() -> str | None:
    """The Chromium to drive, or None when there is none."""
    wanted = os.environ.get("MLAMBDA_CHROMIUM", "/usr/bin/chromium")
    if Path(wanted).is_file():
        return wanted
    return shutil.which(wanted)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block (expectations wait up to PATIENCE_MS)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium: apt-get install -y chromium (or set MLAMBDA_CHROMIUM to one)")
    from playwright.sync_api import expect

    expect.set_options(timeout=PATIENCE_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, console_url: str, api_key: str, route: str = "") -> None:
    """Open the console's sign-in page, sign in with ``api_key`` and land on ``route`` (a ``#/...``
    hash; the key's first page without one), as a bookmarked link followed while signed out does."""
    from playwright.sync_api import expect

    page.goto(console_url + (f"#/signin?{urlencode({'next': route})}" if route else ""))
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
