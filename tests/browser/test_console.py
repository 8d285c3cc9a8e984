"""The console in Chromium against a local cloud with real models: sign in, browse, compare, try
a prediction and read its explanation, promote through the gate, read monitoring, download a
batch result; keys without a scope see no controls for it and get 403 when they try anyway;
nothing the API returns becomes markup.

Locators are roles and labels, as a person (or a screen reader) finds things, not CSS paths.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, Page, expect

from mlambda_local.browser import VIEWPORT
from tests.browser.conftest import sign_in, watch
from tests.browser.world import MODEL, XSS, XSS_MODEL, World

pytestmark = pytest.mark.browser

API_CALL = re.compile(r"/v1/(models|jobs|entities|feature-groups|me)")


def main(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("main")


def api_status(page: Page, method: str, path: str, body: object = None) -> int:
    """What the API answers the signed-in key for ``method path`` (fetch from the page itself)."""
    return int(
        page.evaluate(
            """async ([method, path, body]) => {
                const base = location.pathname.replace(/\\/console(\\/.*)?$/, "");
                const response = await fetch(base + path, {
                    method,
                    headers: {"x-api-key": sessionStorage.getItem("mlambda.apiKey"), "Content-Type": "application/json"},
                    body: body === null ? undefined : JSON.stringify(body),
                });
                return response.status;
            }""",
            [method, path, body],
        )
    )


# ---------------------------------------------------------------- signing in


def test_sign_in_keeps_the_key_in_this_tab_only(page: Page, world: World) -> None:
    # When
    sign_in(page, world, "reader")
    # Then the navigation holds what registry:read allows, and nothing else
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Catalog")).to_be_visible()
    expect(navigation.get_by_role("link", name="Monitoring")).to_be_visible()
    for hidden in ("Try it", "Batch jobs", "Features"):
        expect(navigation.get_by_role("link", name=hidden)).to_have_count(0)
    # And the key is in sessionStorage, not in localStorage or a cookie
    assert page.evaluate("sessionStorage.getItem('mlambda.apiKey')") == world.keys["reader"]
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    # And a reload keeps the session, while another tab starts signed out
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    other = page.context.new_page()
    other.goto(world.console_url)
    expect(other.get_by_label("API key")).to_be_visible()
    other.close()
    # And signing out forgets the key
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_bad_key_is_refused_next_to_its_field(page: Page, world: World) -> None:
    # Given
    page.goto(world.console_url)
    key = page.get_by_label("API key")
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url) if API_CALL.search(request.url) else None)
    # When a value that is not a key is submitted
    key.fill("hunter2")
    page.get_by_role("button", name="Sign in").click()
    # Then it is refused before anything is sent
    expect(page.get_by_text("This is not an mlambda API key")).to_be_visible()
    expect(key).to_have_attribute("aria-invalid", "true")
    assert calls == []
    # When a well-formed key the API does not know is submitted
    key.fill("mlk.0123456789ab.unknownsecretunknownsecretunknownsecret12")
    page.get_by_role("button", name="Sign in").click()
    # Then the API's answer is shown by the field
    expect(page.get_by_text("unauthorized: The API refused this key")).to_be_visible()


# ---------------------------------------------------------------- catalog and model


def test_the_catalog_searches_and_filters_and_shows_what_is_live(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "reader")
    models = main(page).get_by_role("table", name="Models")
    row = models.get_by_role("row").filter(has=page.get_by_role("link", name=MODEL, exact=True))
    # Then each model shows its live version, that version's metrics and its monitoring status
    expect(row.get_by_role("link", name="v1", exact=True)).to_be_visible()
    expect(row).to_contain_text("auc")
    expect(row).to_contain_text("drift")
    # When filtering by stage, then by tag, then by a part of the name
    filters = page.get_by_role("form", name="Filter models")
    filters.get_by_label("Stage").select_option("production")
    filters.get_by_role("button", name="Filter").click()
    expect(models.get_by_role("link", name=re.compile("^(churn|xss-probe)$"))).to_have_count(0)
    expect(models.get_by_role("link", name=MODEL, exact=True)).to_be_visible()
    filters.get_by_label("Stage").select_option("")
    filters.get_by_label("Tag", exact=True).fill("team:growth")
    filters.get_by_role("button", name="Filter").click()
    expect(models.get_by_role("link", name="churn", exact=True)).to_be_visible()
    expect(models.get_by_role("link", name=MODEL, exact=True)).to_have_count(0)
    filters.get_by_label("Tag", exact=True).fill("")
    filters.get_by_label("Name contains").fill("CANC")
    filters.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("1 model matching the filters")).to_be_visible()
    # And a filter that cannot be sent is refused by its field
    filters.get_by_label("Tag", exact=True).fill("no-colon")
    filters.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("Write a tag filter as key:value.")).to_be_visible()


def test_two_versions_compare_side_by_side(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "reader", f"#/models/{MODEL}")
    versions = page.get_by_role("table", name="Versions, newest first")
    expect(versions.get_by_role("row")).to_have_count(4)
    expect(versions).to_contain_text("READY")
    # When
    page.get_by_label("Select v1 to compare").check()
    page.get_by_label("Select v2 to compare").check()
    page.get_by_role("button", name="Compare the two selected versions").click()
    # Then
    expect(page.get_by_role("heading", name=f"{MODEL}: v1 and v2 side by side")).to_be_visible()
    parameters = page.get_by_role("table", name="Parameters: v1 and v2")
    estimator = parameters.get_by_role("row", name=re.compile("^estimator"))
    expect(estimator).to_contain_text("logistic regression")
    expect(estimator).to_contain_text("gradient boosting")
    expect(estimator).to_contain_text("differs")
    code = page.get_by_role("table", name="Overview: v1 and v2").get_by_role(
        "row", name=re.compile("^Code version")
    )
    expect(code).to_contain_text("git:0000001")
    expect(code).to_contain_text("git:0000002")
    expect(
        page.get_by_role("table", name="Metrics: v1 and v2").get_by_role("row", name=re.compile("^auc"))
    ).to_be_visible()


def test_the_history_says_what_was_in_production_at_a_time(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "reader", f"#/models/{MODEL}")
    timeline = page.get_by_role("list", name="History, newest first")
    expect(timeline).to_contain_text("alias moved")
    expect(timeline).to_contain_text("gate passed")
    # When
    lookup = page.get_by_role("form", name="What did an alias point at, at a time")
    lookup.get_by_label("Time (UTC)").fill(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    lookup.get_by_role("button", name="Look up").click()
    # Then
    expect(main(page).get_by_text(re.compile(r"production pointed at"))).to_contain_text("v1")
    # And before the model existed, nothing
    lookup.get_by_label("Time (UTC)").fill("2020-01-01T00:00:00")
    lookup.get_by_role("button", name="Look up").click()
    expect(page.get_by_text("production pointed at no version")).to_be_visible()


def test_nothing_the_api_returns_becomes_markup(page: Page, world: World) -> None:
    # When a model whose description, owner and tag are markup is listed and opened
    sign_in(page, world, "xss")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=XSS_MODEL))
    # Then the markup shows as text, and no element was made from it (the page fixture also
    # fails the test on any dialog, i.e. if the onerror handler ran)
    expect(row.get_by_text(XSS, exact=True).first).to_be_visible()
    assert page.locator("img").count() == 0
    row.get_by_role("link", name=XSS_MODEL).click()
    expect(main(page).get_by_text(XSS).first).to_be_visible()
    assert page.locator("img").count() == 0


# ---------------------------------------------------------------- writes and scopes


def test_promotion_runs_the_gate_shows_its_report_and_rolls_back(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "writer", f"#/models/{MODEL}")
    # When v2 is promoted to production
    promote = page.get_by_role("form", name="Move an alias")
    promote.get_by_label("Version").select_option("2")
    promote.get_by_label("Alias").fill("production")
    promote.get_by_label("Reason").fill("canary looked fine")
    promote.get_by_role("button", name="Move alias").click()
    # Then the gate's report is shown, every check passed
    expect(page.get_by_text("production now points at v2 (was v1)")).to_be_visible()
    checks = page.get_by_role("table", name="Gate checks")
    expect(checks.get_by_role("row", name=re.compile("artifact integrity"))).to_contain_text("passed")
    expect(checks.get_by_role("row", name=re.compile("smoke cases"))).to_contain_text("passed")
    # When it is rolled back
    page.get_by_role("link", name="Refresh the page").click()
    rollback = page.get_by_role("form", name="Roll back an alias")
    rollback.get_by_label("Alias").select_option("production")
    rollback.get_by_role("button", name="Roll back").click()
    # Then
    expect(page.get_by_text("production rolled back to v1 (was v2)")).to_be_visible()
    page.get_by_role("link", name="Refresh the page").click()
    expect(page.get_by_role("list", name="History, newest first")).to_contain_text("rollback")


def test_a_key_without_registry_write_sees_no_controls_and_is_refused_anyway(
    page: Page, world: World
) -> None:
    # Given a key with registry:read only
    sign_in(page, world, "reader", f"#/models/{MODEL}")
    expect(page.get_by_role("heading", name="Versions")).to_be_visible()
    # Then no write control is on the page
    for name in ("Move alias", "Roll back", "Save the split"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("heading", name="Promote")).to_have_count(0)
    # And the API refuses the write when the key tries it anyway
    assert api_status(page, "PUT", f"/models/{MODEL}/aliases/production", {"version": 2}) == 403
    assert api_status(page, "POST", f"/models/{MODEL}/rollback", {}) == 403


def test_a_predict_only_key_gets_only_its_pages(page: Page, world: World) -> None:
    # When
    sign_in(page, world, "predictor")
    # Then it lands on its first page, and the registry's pages are not offered
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Try it")).to_be_visible()
    expect(navigation.get_by_role("link", name="Catalog")).to_have_count(0)
    page.goto(world.console_url + f"#/models/{MODEL}")
    expect(page.get_by_role("heading", name="Not available with this key")).to_be_visible()
    assert api_status(page, "GET", f"/models/{MODEL}") == 403


# ---------------------------------------------------------------- try it


def test_try_it_predicts_and_explains_with_a_waterfall(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "writer", f"#/try/{MODEL}?version=2")
    expect(page.get_by_text("Scoring v2 through variant canary.")).to_be_visible()
    # When an example row of the reference is scored
    page.get_by_role("button", name="Fill with an example row").click()
    page.get_by_role("button", name="Predict and explain").click()
    # Then the prediction and its exact explanation, on the log-odds scale, are shown
    prediction = page.get_by_role("region", name="Prediction")
    expect(prediction).to_contain_text("v2")
    expect(prediction).to_contain_text("canary")
    explanation = page.get_by_role("region", name="Explanation")
    expect(explanation.get_by_text("tree_shap_path_dependent")).to_be_visible()
    expect(explanation.get_by_text("exact", exact=True)).to_be_visible()
    expect(explanation.get_by_text(re.compile("add up in log-odds.*a probability of"))).to_be_visible()
    expect(explanation.get_by_role("img", name=re.compile("from the baseline to the value"))).to_be_visible()
    # When another class is explained
    predicted = explanation.get_by_text(re.compile(r"Explaining class \d")).inner_text()
    other = "1" if "class 0" in predicted else "0"
    explanation.get_by_label("Explain the class").select_option(other)
    # Then
    expect(
        page.get_by_role("region", name="Explanation").get_by_text(f"Explaining class {other}.")
    ).to_be_visible()


def test_a_version_without_a_reference_still_predicts_and_says_why_it_cannot_explain(
    page: Page, world: World
) -> None:
    # Given v3 (registered without a reference, so without smoke cases or an explainer)
    sign_in(page, world, "writer", f"#/try/{MODEL}?version=3")
    expect(page.get_by_role("button", name="Fill with an example row")).to_have_count(0)
    # When its features come from an entity's online features instead of the form
    page.get_by_label("Entity id (optional)").fill("patient-17")
    page.get_by_role("button", name="Predict and explain").click()
    # Then
    expect(page.get_by_role("region", name="Prediction")).to_contain_text("v3")
    expect(page.get_by_text(re.compile("needs a reference sample to explain"))).to_be_visible()


def test_try_it_checks_every_field_before_sending(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "writer", f"#/try/{MODEL}")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.url.endswith("/predict") else None)
    # When one field is not a number and the others are empty
    page.get_by_label("mean_radius (float)").fill("twelve")
    page.get_by_role("button", name="Predict and explain").click()
    # Then each is named, focus goes to the first, and nothing was sent
    expect(page.get_by_text("Enter a number (e.g. 3 or 0.25).")).to_be_visible()
    expect(
        page.get_by_text("Required (or give an entity id to fill it from the store).").first
    ).to_be_visible()
    expect(page.get_by_label("mean_radius (float)")).to_be_focused()
    assert sent == []


# ---------------------------------------------------------------- monitoring, jobs, features


def test_monitoring_shows_status_trends_alerts_and_the_report(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "reader", "#/monitoring")
    overview = page.get_by_role("table", name="Production models")
    expect(overview.get_by_role("row", name=re.compile(MODEL))).to_contain_text("drift")
    # When
    overview.get_by_role("link", name=MODEL).click()
    # Then
    expect(page.get_by_role("img", name=re.compile("share of features drifted per run"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("drift effect size per feature and run"))).to_be_visible()
    expect(page.get_by_role("table", name="Alerts of the latest run")).to_contain_text("mean_radius")
    expect(page.get_by_role("table", name=re.compile("^The last 3 runs"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("model quality on labelled rows"))).to_be_visible()
    # When the HTML report is shown, then downloaded
    page.get_by_role("button", name="Show the HTML report").click()
    report = page.frame_locator(f"iframe[title='{MODEL} monitoring report']")
    expect(report.get_by_role("heading").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the HTML report").click()
    assert download.value.suggested_filename == f"{MODEL}-monitoring-report.html"


def test_a_batch_job_shows_its_rejected_rows_and_its_results_download(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "predictor", "#/jobs")
    finder = page.get_by_role("form", name="Find jobs")
    finder.get_by_label("Model").fill(MODEL)
    finder.get_by_role("button", name="Show").click()
    jobs = page.get_by_role("table", name=f"Jobs of {MODEL}, newest first")
    expect(jobs).to_contain_text("completed")
    # When
    jobs.get_by_role("link", name=world.notes["job_id"]).click()
    # Then progress, counts and the rejected rows with their reasons
    expect(page.get_by_role("region", name="Progress")).to_contain_text("completed")
    rejected = page.get_by_role("table", name="Rejected rows and why")
    expect(rejected.get_by_role("row")).to_have_count(3)
    expect(rejected).to_contain_text("not-a-number")
    # And the results download as Parquet
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"^Results, chunk 0")).click()
    saved = download.value.path()
    assert download.value.suggested_filename.endswith("part-00000.parquet")
    assert saved is not None and saved.read_bytes()[:4] == b"PAR1"


def test_features_show_an_entity_and_the_groups_seen(page: Page, world: World) -> None:
    # Given
    sign_in(page, world, "analyst", "#/features")
    groups = page.get_by_role("table", name="Feature groups seen by the store")
    expect(groups.get_by_role("row", name=re.compile("^measurements"))).to_contain_text("mean_radius")
    expect(groups.get_by_role("row", name=re.compile("^visits"))).to_contain_text("clinic")
    # When
    lookup = page.get_by_role("form", name="Look up an entity")
    lookup.get_by_label("Entity id").fill("patient-17")
    lookup.get_by_role("button", name="Show features").click()
    # Then
    expect(page.get_by_role("table", name="Latest values of visits")).to_contain_text("north")
    expect(page.get_by_role("table", name=re.compile("^Counts, sums"))).to_contain_text("sum_spend")
    # And an entity id the API would refuse is refused by its field
    lookup.get_by_label("Entity id").fill("no spaces allowed")
    lookup.get_by_role("button", name="Show features").click()
    expect(page.get_by_text(re.compile("Entity ids are 1-256"))).to_be_visible()


# ---------------------------------------------------------------- evaluations


def test_an_evaluation_is_created_judged_from_the_keyboard_completed_and_required_by_the_gate(
    page: Page, world: World, browser: Browser
) -> None:
    # Given a registry:write key creates an evaluation of v2 on the traffic v1 served today
    sign_in(page, world, "writer", f"#/evaluations?model={MODEL}")
    create = page.get_by_role("form", name="Create an evaluation")
    create.get_by_label("Version").select_option("2")
    create.get_by_label("Rows from").select_option("traffic")
    create.get_by_label("Traffic of the last (hours)").fill("999")
    create.get_by_role("button", name="Create the evaluation").click()
    expect(create.get_by_text("Enter a whole number of hours from 1 to 168.")).to_be_visible()
    create.get_by_label("Traffic of the last (hours)").fill("24")
    create.get_by_label("Rows to judge").fill("3")
    create.get_by_label("Sampling").select_option("first")
    create.get_by_label("Title").fill("pre-launch check")
    create.get_by_role("button", name="Create the evaluation").click()
    expect(page.get_by_role("heading", name="pre-launch check", level=1)).to_be_visible()
    evaluation_url = page.url

    # When an evaluator (evaluate scope only) judges every row from the keyboard
    context = browser.new_context(viewport=VIEWPORT)
    judge = context.new_page()
    watched = watch(judge, world)
    sign_in(judge, world, "evaluator")
    navigation = judge.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Evaluations")).to_be_visible()
    expect(navigation.get_by_role("link", name="Catalog")).to_have_count(0)
    judge.goto(evaluation_url)
    expect(judge.get_by_role("button", name="Complete and publish")).to_have_count(0)
    judge.get_by_role("link", name="Evaluate row by row").click()
    expect(judge.get_by_role("heading", name="Row 1 of 3")).to_be_visible()
    expect(judge.get_by_role("region", name="Explanation").get_by_role("img")).to_be_visible()
    judge.keyboard.press("c")
    expect(judge.get_by_role("heading", name="Row 2 of 3")).to_be_visible()
    predicted = judge.get_by_role("region", name="Prediction").locator("strong").inner_text()
    judge.keyboard.press("i")
    right_label = judge.get_by_label("The right label")
    expect(right_label).to_be_focused()
    right_label.select_option("1" if predicted == "0" else "0")
    judge.get_by_label("Comment").fill(XSS)
    judge.get_by_label("Comment").press("Control+Enter")
    expect(judge.get_by_role("heading", name="Row 3 of 3")).to_be_visible()
    judge.keyboard.press("c")
    expect(judge.get_by_text("You have judged every row of this evaluation.")).to_be_visible()
    # And the evaluator may not complete it, even by calling the API
    evaluation_id = evaluation_url.rsplit("/", 1)[-1]
    assert api_status(judge, "POST", f"/evaluations/{evaluation_id}/complete", {}) == 403
    context.close()
    assert (watched.errors, watched.dialogs, watched.foreign) == ([], [], [])

    # Then the manager completes it and reads the results, the comment as text
    page.reload()
    page.get_by_role("form", name="Complete the evaluation").get_by_role(
        "button", name="Complete and publish"
    ).click()
    expect(page.get_by_text(f"Completed and published to {MODEL} v2")).to_be_visible()
    expect(main(page).get_by_text("66.7% of verdicts say correct")).to_be_visible()
    comments = page.get_by_role("list", name="Comments, newest first")
    expect(comments.get_by_text(XSS, exact=True)).to_be_visible()
    assert page.locator("img").count() == 0
    # And the version shows the published evaluation
    page.get_by_role("link", name="see it on the version").click()
    published = page.get_by_role("table", name="Evaluations published to this version, newest first")
    expect(published.get_by_role("row", name=re.compile("pre-launch check"))).to_contain_text("66.7%")
    expect(published).to_contain_text("evaluator-key")

    # When the model's owner makes production require a completed evaluation
    page.goto(world.console_url + f"#/models/{MODEL}")
    page.get_by_role("button", name="Require a human evaluation for production").click()
    expect(page.get_by_text("the gate and a completed human evaluation of the version")).to_be_visible()
    promote = page.get_by_role("form", name="Move an alias")
    # Then v3, never evaluated, is refused whatever the technical checks say
    promote.get_by_label("Version").select_option("3")
    promote.get_by_label("Alias").fill("production")
    promote.get_by_role("button", name="Move alias").click()
    expect(promote.get_by_text(re.compile("^evaluation_required: "))).to_be_visible()
    # And v2 passes the gate with its evaluation as one of the checks
    promote.get_by_label("Version").select_option("2")
    promote.get_by_role("button", name="Move alias").click()
    expect(page.get_by_text("production now points at v2 (was v1)")).to_be_visible()
    checks = page.get_by_role("table", name="Gate checks")
    expect(checks.get_by_role("row", name=re.compile("evaluation completed"))).to_contain_text("passed")
