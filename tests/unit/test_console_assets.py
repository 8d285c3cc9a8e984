"""The console's files, read as text: no way for API data to become markup or script, nothing
loaded from elsewhere, and the key kept in sessionStorage only.

The browser tests show the behaviour; these keep the rules from being broken by a later edit
in a page the browser tests do not visit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

STATIC = REPO_ROOT / "functions" / "console" / "static"
SCRIPTS = sorted(STATIC.rglob("*.js"))
ASSETS = sorted(p for p in STATIC.rglob("*") if p.is_file())
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_the_console_has_its_pages() -> None:
    names = {p.relative_to(STATIC).as_posix() for p in ASSETS}
    assert {"index.html", "css/console.css", "js/app.js", "js/api.js", "js/dom.js"} <= names
    assert {
        f"js/pages/{page}.js" for page in ("catalog", "model", "try", "monitoring", "jobs", "features")
    } <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(STATIC).as_posix())
def test_no_script_turns_text_into_markup_or_code(script: Path) -> None:
    text = script.read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "createContextualFragment",
        "DOMParser",
    ):
        assert sink not in text, f"{script.name} uses {sink}"
    assert not re.search(r"setTimeout\(\s*[\"'`]", text), f"{script.name} passes a string to setTimeout"


def test_the_only_frame_content_is_the_monitoring_report_in_a_sandbox_with_no_permissions() -> None:
    users = [p.name for p in SCRIPTS if re.search(r"\.srcdoc\s*=", p.read_text())]
    assert users == ["monitoring.js"]
    text = (STATIC / "js" / "pages" / "monitoring.js").read_text()
    assert 'frame.setAttribute("sandbox", "");' in text


@pytest.mark.parametrize("asset", ASSETS, ids=lambda p: p.relative_to(STATIC).as_posix())
def test_nothing_is_loaded_from_another_origin(asset: Path) -> None:
    text = asset.read_text().replace(SVG_NAMESPACE, "")
    assert not re.search(r"https?://", text), f"{asset.name} names another origin"
    assert "//cdn" not in text and "@import" not in text


def test_the_page_has_no_inline_script_or_handler() -> None:
    index = (STATIC / "index.html").read_text()
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", index))
    assert not re.search(r"<script[^>]*>\s*[^<\s]", index)
    assert not re.search(r"\son[a-z]+=", index)


def test_the_key_lives_in_session_storage_only() -> None:
    for script in SCRIPTS:
        text = script.read_text()
        assert "localStorage." not in text and "document.cookie" not in text, script.name
        if "sessionStorage." in text:
            assert script.name == "api.js"
