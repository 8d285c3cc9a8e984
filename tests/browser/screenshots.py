"""``make screenshots``: every page of the console, photographed in Chromium against the seeded
world, into ``.github/screenshots/`` (the README shows them).

``--world <world.json>`` uses a world already running (``python -m tests.browser.world <dir>``);
without it one is started in a temporary directory and stopped at the end.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from mlambda_local.browser import VIEWPORT, chromium, sign_in
from tests.browser.world import MODEL, REPO_ROOT, AttachedWorld, World, describe, running_world

SCREENSHOTS = REPO_ROOT / ".github" / "screenshots"


def _signin(page: Page, world: AttachedWorld) -> None:
    page.goto(world.console_url)
    expect(page.get_by_label("API key")).to_be_visible()


def _catalog(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"])
    expect(page.get_by_role("table", name="Models").get_by_role("link", name=MODEL)).to_be_visible()


def _model(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"], f"#/models/{MODEL}")
    expect(page.get_by_role("list", name="History, newest first")).to_be_visible()


def _compare(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"], f"#/models/{MODEL}")
    page.get_by_label("Select v1 to compare").check()
    page.get_by_label("Select v2 to compare").check()
    page.get_by_role("button", name="Compare the two selected versions").click()
    expect(page.get_by_role("table", name="Metrics: v1 and v2")).to_be_visible()


def _try(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"], f"#/try/{MODEL}?version=2")
    page.get_by_role("button", name="Fill with an example row").click()
    page.get_by_role("button", name="Predict and explain").click()
    expect(page.get_by_role("img", name=re.compile("from the baseline to the value"))).to_be_visible()


def _monitoring(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"], "#/monitoring")
    page.get_by_role("table", name="Production models").get_by_role("link", name=MODEL).click()
    expect(page.get_by_role("img", name=re.compile("share of features drifted per run"))).to_be_visible()


def _jobs(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"], "#/jobs")
    finder = page.get_by_role("form", name="Find jobs")
    finder.get_by_label("Model").fill(MODEL)
    finder.get_by_role("button", name="Show").click()
    page.get_by_role("link", name=world.notes["job_id"]).click()
    expect(page.get_by_role("table", name="Rejected rows and why")).to_be_visible()


def _features(page: Page, world: AttachedWorld) -> None:
    sign_in(page, world.console_url, world.keys["admin"], "#/features")
    lookup = page.get_by_role("form", name="Look up an entity")
    lookup.get_by_label("Entity id").fill("patient-17")
    lookup.get_by_role("button", name="Show features").click()
    expect(page.get_by_role("table", name="Latest values of visits")).to_be_visible()


def _evaluation(world: AttachedWorld) -> str:
    """An open evaluation of v2 on the day's traffic with a few verdicts (one with a comment)."""
    from mlambda_local.client import ApiClient, Target

    admin = ApiClient(Target(api_url=world.api_url, api_key=world.keys["admin"]))
    now = datetime.now(UTC) + timedelta(minutes=1)
    evaluator = ApiClient(Target(api_url=world.api_url, api_key=world.keys["evaluator"]))
    created = admin.post(
        f"/models/{MODEL}/evaluations",
        {
            "version": 2,
            "source": {
                "type": "traffic",
                "start": f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
                "end": f"{now:%Y-%m-%dT%H:%M:%SZ}",
            },
            "rows": 12,
            "name": "v2 before launch",
            "instructions": "Judge the diagnosis from the measurements; say which class is right when it is wrong.",
        },
    )
    evaluation_id = str(created["evaluation_id"])
    for index in range(5):
        row = evaluator.get(f"/evaluations/{evaluation_id}/rows/{index}")
        verdict: dict[str, object] = {"verdict": "correct"}
        if index == 3:
            label = row["prediction"]["label"]
            verdict = {
                "verdict": "incorrect",
                "label": 1 - int(label),
                "comment": "Cells this large are malignant.",
            }
        evaluator.request("PUT", f"/evaluations/{evaluation_id}/rows/{index}/verdict", body=verdict)
    return evaluation_id


def _evaluation_row(page: Page, world: AttachedWorld) -> None:
    evaluation_id = world.notes["evaluation_id"]
    sign_in(page, world.console_url, world.keys["evaluator"], f"#/evaluations/{evaluation_id}/rows/5")
    expect(page.get_by_role("heading", name="Row 6 of 12")).to_be_visible()
    expect(page.get_by_role("region", name="Explanation").get_by_role("img")).to_be_visible()


def _evaluation_results(page: Page, world: AttachedWorld) -> None:
    evaluation_id = world.notes["evaluation_id"]
    sign_in(page, world.console_url, world.keys["admin"], f"#/evaluations/{evaluation_id}")
    expect(page.get_by_role("list", name="Comments, newest first")).to_be_visible()


PAGES: dict[str, Callable[[Page, AttachedWorld], None]] = {
    "signin": _signin,
    "catalog": _catalog,
    "model": _model,
    "compare": _compare,
    "try-it": _try,
    "monitoring": _monitoring,
    "batch-job": _jobs,
    "features": _features,
    "evaluation-row": _evaluation_row,
    "evaluation-results": _evaluation_results,
}


@contextmanager
def _world(attach: Path | None) -> Iterator[AttachedWorld]:
    if attach is not None:
        yield AttachedWorld.load(attach)
        return
    with tempfile.TemporaryDirectory(prefix="mlambda-screenshots-") as scratch:
        running: World
        with running_world(Path(scratch)) as running:
            yield AttachedWorld(**describe(running))


def take(world: AttachedWorld, folder: Path) -> list[Path]:
    """One PNG per page (the whole page, at a laptop's width)."""
    folder.mkdir(parents=True, exist_ok=True)
    world.notes.setdefault("evaluation_id", _evaluation(world))
    taken: list[Path] = []
    with chromium() as browser:
        for name, show in PAGES.items():
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            show(page, world)
            page.wait_for_load_state("networkidle")
            path = folder / f"{name}.png"
            page.screenshot(path=path, full_page=True)
            context.close()
            taken.append(path)
    return taken


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="world.json of a running world")
    parser.add_argument("--out", type=Path, default=SCREENSHOTS)
    args = parser.parse_args(argv)
    with _world(args.world) as world:
        for path in take(world, args.out):
            print(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path, flush=True)


if __name__ == "__main__":
    main()
