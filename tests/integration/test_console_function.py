"""The console function: static files with a strict Content-Security-Policy, revalidated by ETag,
nothing outside its own file list reachable whatever the request names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.console import app
from tests.conftest import load_event


def get(
    path: str, proxy: str | None, headers: dict[str, str] | None = None, method: str = "GET"
) -> dict[str, Any]:
    event = load_event(
        "console_request",
        path=path,
        httpMethod=method,
        pathParameters={"proxy": proxy} if proxy is not None else None,
        headers={"Accept": "*/*", **(headers or {})},
    )
    return app.serve(event)


def test_the_console_root_is_the_index_page_under_a_strict_content_security_policy() -> None:
    # When
    response = get("/console/", None)
    # Then
    assert response["statusCode"] == 200
    headers = response["headers"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert (
        "unsafe-eval" not in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert '<script type="module" src="js/app.js"></script>' in response["body"]


def test_the_root_without_its_slash_redirects_so_relative_urls_resolve_inside_the_console() -> None:
    response = get("/console", None)
    assert response["statusCode"] == 301
    assert response["headers"]["Location"] == "console/"


def test_a_module_is_served_as_javascript_and_revalidates_with_its_etag() -> None:
    # Given
    first = get("/console/js/app.js", "js/app.js")
    etag = first["headers"]["ETag"]
    # When
    again = get("/console/js/app.js", "js/app.js", {"If-None-Match": etag})
    # Then
    assert first["statusCode"] == 200
    assert first["headers"]["Content-Type"] == "text/javascript; charset=utf-8"
    assert first["headers"]["Cache-Control"] == "no-cache"
    assert again["statusCode"] == 304 and again["body"] == ""


@pytest.mark.parametrize(
    "proxy",
    [
        "../app.py",
        "js/../../app.py",
        "..%2fapp.py",
        "/etc/passwd",
        "app.py",
        "static/index.html",
        "js/missing.js",
        "." * 300,
    ],
)
def test_only_listed_console_files_are_served(proxy: str) -> None:
    # When
    response = get(f"/console/{proxy}", proxy)
    # Then
    assert response["statusCode"] == 404
    body = json.loads(response["body"])
    assert body["code"] == "not_found" and set(body) == {"code", "message", "details"}


def test_writes_are_refused() -> None:
    response = get("/console/js/app.js", "js/app.js", method="POST")
    assert response["statusCode"] == 405


def test_the_handler_answers_the_sample_event(lambda_context: Any) -> None:
    response = app.handler(load_event("console_request"), lambda_context)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/javascript; charset=utf-8"
