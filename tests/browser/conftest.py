"""The console in a real browser: Debian's Chromium driven by Playwright, against a local cloud
with real models (``world.py``).

Every page a test opens is watched: an uncaught script error, a dialog (``alert`` from injected
markup) or a request from the page to any origin but the console's own fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

from mlambda_local import browser as console_browser
from tests.browser.world import AttachedWorld, World, running_world


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World | AttachedWorld]:
    """The seeded cloud; ``MLAMBDA_CONSOLE_WORLD=<world.json>`` attaches to one already running
    (``python -m tests.browser.world <dir>`` starts one), to rerun browser tests in seconds.

    Stopped when this package's tests are done, never kept for the session: its triggers are
    threads of this process calling botocore, and a later test file's ``mock_aws()`` in the same
    xdist worker would hand them that test's queues and buckets."""
    attached = os.environ.get("MLAMBDA_CONSOLE_WORLD")
    if attached:
        yield AttachedWorld.load(Path(attached))
        return
    with running_world(tmp_path_factory.mktemp("console-cloud")) as running:
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if console_browser.chromium_path() is None:
        pytest.fail("no Chromium: apt-get install -y chromium (or set MLAMBDA_CHROMIUM to one)")
    with console_browser.chromium() as chromium:
        yield chromium


class Watched:
    """What a page did that a test must not allow."""

    def __init__(self, page: Page, origin: str) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)
        page.on("request", lambda request: self._request(request, origin))

    def _dialog(self, dialog: object) -> None:
        self.dialogs.append(getattr(dialog, "message", "?"))
        dialog.dismiss()  # type: ignore[attr-defined]

    def _request(self, request: object, origin: str) -> None:
        url = getattr(request, "url", "")
        navigation = getattr(request, "is_navigation_request", lambda: False)()
        parts = urlsplit(url)
        if parts.scheme in ("blob", "data", "about"):
            return
        # A download the user starts (a presigned link of the batch bucket) is a navigation;
        # anything the page fetches or loads itself must stay on the console's origin.
        if f"{parts.scheme}://{parts.netloc}" != origin and not navigation:
            self.foreign.append(url)


def watch(page: Page, world: World | AttachedWorld) -> Watched:
    """Start recording what ``page`` does that a test must not allow."""
    parts = urlsplit(world.console_url)
    return Watched(page, f"{parts.scheme}://{parts.netloc}")


@pytest.fixture
def page(browser: Browser, world: World | AttachedWorld) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) on a laptop-sized screen, watched."""
    context = browser.new_context(
        viewport=console_browser.VIEWPORT,
        accept_downloads=True,
    )
    tab = context.new_page()
    watched = watch(tab, world)
    yield tab
    context.close()
    assert watched.errors == [], f"script errors: {watched.errors}"
    assert watched.dialogs == [], f"dialogs opened: {watched.dialogs}"
    assert watched.foreign == [], f"requests to other origins: {watched.foreign}"


def sign_in(page: Page, world: World | AttachedWorld, role: str, route: str = "") -> None:
    """Open the console, sign in with ``role``'s key, then go to ``route`` (a ``#/...`` hash)."""
    console_browser.sign_in(page, world.console_url, world.keys[role], route)
