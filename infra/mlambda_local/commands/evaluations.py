"""``mlambda evaluations create|list|show|verdict|complete|cancel|published|require``: human evaluation of a version.

``create`` samples rows (the version's reference sample, a CSV/Parquet file uploaded through the
registry's upload URL, or archived traffic of a time window), scores and explains them with the
version; evaluators (keys with the ``evaluate`` scope) record a ``verdict`` per row; ``complete``
publishes the results to the version in the registry, where the production gate looks for them
when the model says ``require`` on.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlambda.client import Client
from mlambda_local.client import CliError
from mlambda_local.commands import api
from mlambda_local.commands.models import parse_ref
from mlambda_local.output import Outcome, status

DURATION = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _window(args: argparse.Namespace) -> tuple[str, str]:
    """``--last 24h`` or ``--start``/``--end`` as ISO times (UTC)."""
    if args.last:
        match = DURATION.match(args.last)
        if match is None:
            raise CliError(f"--last reads 30m, 24h or 7d, got {args.last!r}")
        end = datetime.now(UTC)
        start = end - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        return start.isoformat(), end.isoformat()
    if not (args.start and args.end):
        raise CliError("traffic needs --last 24h, or --start and --end (ISO times with a zone)")
    return args.start, args.end


def source_of(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """The ``source`` of the create request the flags describe (uploading the file for ``--csv``)."""
    if args.csv:
        key = client.upload(args.model, Path(args.csv), kind="evaluation")
        status(f"uploaded {args.csv}")
        return {"type": "upload", "upload_key": key}
    if args.source == "traffic" or args.last or args.start:
        start, end = _window(args)
        return {"type": "traffic", "start": start, "end": end}
    return {"type": "reference"}


def describe(evaluation: dict[str, Any]) -> list[str]:
    """One evaluation in a few lines."""
    out: list[str] = []
    source = evaluation["source"]
    out.append(
        f"evaluation {evaluation['evaluation_id']}  {evaluation['model']} v{evaluation['version']}  "
        f"{evaluation['status']}  {evaluation['name'] or ''}".rstrip()
    )
    out.append(
        f"  {evaluation['rows']} rows from the {source['type']} ({source['available']} usable, "
        f"{source['skipped']} skipped), explained: {evaluation['explanation_method'] or 'no'}"
    )
    for reason in source.get("skipped_reasons") or []:
        out.append(f"    skipped {reason}")
    judged = evaluation["rows_judged"]
    out.append(
        f"  {judged}/{evaluation['rows']} rows judged, {evaluation['verdicts']} verdicts by "
        f"{', '.join(evaluation['evaluators']) or 'nobody yet'}"
    )
    return out


def show_results(results: dict[str, Any]) -> list[str]:
    """The figures, per class, and the latest comments (as plain text)."""
    out: list[str] = []

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    out.append(
        f"  coverage {pct(results['coverage'])}, agreement with the model {pct(results['agreement'])} "
        f"({results['correct']}/{results['verdicts']} verdicts say correct)"
    )
    if results.get("accuracy") is not None:
        out.append(
            f"  accuracy against evaluators' labels {pct(results['accuracy'])} ({results['labelled_verdicts']} labelled)"
        )
    for figures in results.get("per_class") or []:
        out.append(
            f"    class {figures['label']:>10}: precision {pct(figures['precision'])} "
            f"({figures['confirmed']}/{figures['predicted']}), recall {pct(figures['recall'])} ({figures['actual']} actual)"
        )
    regression = results.get("regression")
    if regression and regression["judged"]:
        out.append(
            f"  MAE {regression['mae']:.4g}, RMSE {regression['rmse']:.4g}, bias {regression['bias']:.4g}"
        )
    shared = results["inter_evaluator"]
    alpha = shared["krippendorff_alpha"]
    out.append(
        f"  between evaluators: {shared['rows']} rows judged twice or more, pairwise agreement "
        f"{pct(shared['pairwise_agreement'])}, Krippendorff's alpha {'-' if alpha is None else f'{alpha:.3f}'}"
    )
    for comment in results.get("comments") or []:
        text = comment["comment"].replace("\n", " ")
        out.append(f"    row {comment['row']} {comment['evaluator']} ({comment['verdict']}): {text}")
    return out


def evaluations_create(args: argparse.Namespace) -> Outcome:
    """Sample rows, score and explain them with the version."""
    client = api(args)
    body: dict[str, Any] = {
        "version": parse_ref(args.version),
        "source": source_of(client, args),
        "rows": args.rows,
        "sampling": "first" if args.first else "random",
        "name": args.name or "",
        "instructions": args.instructions or "",
    }
    if args.no_explain:
        body["explain"] = False
    if args.request_id:
        body["request_id"] = args.request_id
    evaluation = client.request("POST", f"/models/{args.model}/evaluations", body=body)
    return Outcome(evaluation, lambda: describe(evaluation))


def evaluations_list(args: argparse.Namespace) -> Outcome:
    """A model's evaluations, newest first."""
    params: dict[str, Any] = {"limit": args.limit, "status": args.status}
    found = api(args).request("GET", f"/models/{args.model}/evaluations", params=params)["evaluations"]

    def lines() -> list[str]:
        return [
            f"{evaluation['evaluation_id']}  v{evaluation['version']:<4} {evaluation['status']:9} "
            f"{evaluation['created_at'][:19]}  {evaluation['rows_judged']:>4}/{evaluation['rows']:<4} judged  "
            f"{evaluation['name']}"
            for evaluation in found
        ] or [f"{args.model}: no evaluations"]

    return Outcome(found, lines)


def evaluations_show(args: argparse.Namespace) -> Outcome:
    """An evaluation, its results (so far, while open) and optionally its rows."""
    client = api(args)
    evaluation = client.request("GET", f"/evaluations/{args.evaluation_id}")
    results = client.request("GET", f"/evaluations/{args.evaluation_id}/results")
    rows: list[dict[str, Any]] = []
    if args.rows:
        params: dict[str, Any] = {"limit": 100}
        if args.todo:
            params["todo"] = "true"
        while True:
            page = client.request("GET", f"/evaluations/{args.evaluation_id}/rows", params=params)
            rows.extend(page["rows"])
            if not page.get("next_token"):
                break
            params["next_token"] = page["next_token"]

    def lines() -> list[str]:
        out = [*describe(evaluation), *show_results(results)]
        for row in rows:
            prediction = row["prediction"]
            said = prediction.get("label", prediction.get("value"))
            mine = row["mine"]["verdict"] if row.get("mine") else "-"
            out.append(
                f"  row {row['index']:>3}: predicted {said!r:10} verdicts {row['verdict_count']}  mine {mine}"
            )
        return out

    return Outcome({"evaluation": evaluation, "results": results, "rows": rows}, lines)


def evaluations_verdict(args: argparse.Namespace) -> Outcome:
    """The caller's verdict on one row (the same verdict again changes nothing)."""
    body: dict[str, Any] = {"verdict": args.verdict}
    if args.label is not None:
        body["label"] = args.label
    if args.value is not None:
        body["value"] = args.value
    if args.comment is not None:
        body["comment"] = args.comment
    answer = api(args).request("PUT", f"/evaluations/{args.evaluation_id}/rows/{args.row}/verdict", body=body)
    verdict = answer["verdict"]
    state = f"revision {verdict['revision']}" if answer["changed"] else "unchanged"
    return Outcome(
        answer, lambda: [f"row {verdict['row']}: {verdict['verdict']} by {verdict['evaluator']} ({state})"]
    )


def evaluations_complete(args: argparse.Namespace) -> Outcome:
    """Close the evaluation and publish its results to the version."""
    body: dict[str, Any] = {"min_coverage": args.min_coverage}
    if args.note:
        body["note"] = args.note
    evaluation = api(args).request("POST", f"/evaluations/{args.evaluation_id}/complete", body=body)

    def lines() -> list[str]:
        return [
            *describe(evaluation),
            *show_results(evaluation["results"]),
            f"  published to {evaluation['model']} v{evaluation['version']}",
        ]

    return Outcome(evaluation, lines)


def evaluations_cancel(args: argparse.Namespace) -> Outcome:
    """Abandon an open evaluation."""
    body = {"reason": args.reason} if args.reason else {}
    evaluation = api(args).request("POST", f"/evaluations/{args.evaluation_id}/cancel", body=body)
    return Outcome(evaluation, lambda: describe(evaluation))


def evaluations_published(args: argparse.Namespace) -> Outcome:
    """The completed evaluations published to a version: what the production gate reads."""
    version = parse_ref(args.version)
    published = api(args).request("GET", f"/models/{args.model}/versions/{version}/evaluations")[
        "evaluations"
    ]

    def lines() -> list[str]:
        if not published:
            return [f"{args.model} v{version} has no completed evaluation"]
        out = []
        for evaluation in published:
            metrics = ", ".join(
                f"{name} {value:.3f}"
                for name, value in (
                    ("coverage", evaluation["coverage"]),
                    ("agreement", evaluation["agreement"]),
                    ("accuracy", evaluation["accuracy"]),
                    ("krippendorff_alpha", evaluation["krippendorff_alpha"]),
                )
                if value is not None
            )
            out.append(
                f"{evaluation['evaluation_id']}  {args.model} v{version}  completed {evaluation['completed_at'][:19]} "
                f"by {evaluation['completed_by']}  {evaluation['name']}".rstrip()
            )
            out.append(
                f"  {evaluation['rows_judged']}/{evaluation['rows']} rows, {evaluation['verdicts']} verdicts by "
                f"{', '.join(evaluation['evaluators'])}: {metrics}"
            )
        return out

    return Outcome(published, lines)


def evaluations_require(args: argparse.Namespace) -> Outcome:
    """Whether production needs a completed evaluation of the version (a model setting)."""
    model = api(args).update_model(args.model, require_evaluation=args.setting == "on")
    state = "requires" if model["require_evaluation"] else "does not require"
    return Outcome(model, lambda: [f"{model['name']} {state} a completed evaluation before production"])


def register(groups: Any) -> None:
    """Add ``mlambda evaluations ...``."""
    evaluations = groups.add_parser("evaluations", help="human evaluation of model versions").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )

    create = evaluations.add_parser("create", help="sample rows, scored and explained by a version")
    create.add_argument("model")
    create.add_argument("--version", required=True, help="v3 or 3 (any version, promoted or not)")
    create.add_argument(
        "--source", choices=("reference", "traffic"), default="reference", help="where rows come from"
    )
    create.add_argument("--csv", help="a CSV or Parquet file to sample from (uploaded first)")
    create.add_argument("--last", help="traffic of the last 30m, 24h, 7d")
    create.add_argument("--start", help="traffic from (ISO time with a zone)")
    create.add_argument("--end", help="traffic until (ISO time with a zone)")
    create.add_argument("--rows", type=int, default=100, help="rows to draw (at most 500)")
    create.add_argument("--first", action="store_true", help="the first rows, not a random sample")
    create.add_argument("--name", help="a title")
    create.add_argument("--instructions", help="what evaluators should judge")
    create.add_argument("--no-explain", action="store_true", help="rows without explanations")
    create.add_argument("--request-id", help="resending with the same id returns the same evaluation")
    create.set_defaults(run=evaluations_create)

    listing = evaluations.add_parser("list", help="a model's evaluations")
    listing.add_argument("model")
    listing.add_argument("--status", choices=("open", "completed", "cancelled"))
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=evaluations_list)

    show = evaluations.add_parser("show", help="an evaluation and its results")
    show.add_argument("evaluation_id")
    show.add_argument("--rows", action="store_true", help="list the rows too")
    show.add_argument("--todo", action="store_true", help="with --rows: only rows you have not judged")
    show.set_defaults(run=evaluations_show)

    verdict = evaluations.add_parser("verdict", help="your verdict on one row")
    verdict.add_argument("evaluation_id")
    verdict.add_argument("row", type=int)
    verdict.add_argument("verdict", choices=("correct", "incorrect"))
    verdict.add_argument("--label", help="classifiers: the right label")
    verdict.add_argument("--value", type=float, help="regressors: the right value")
    verdict.add_argument("--comment")
    verdict.set_defaults(run=evaluations_verdict)

    complete = evaluations.add_parser("complete", help="close it and publish the results to the version")
    complete.add_argument("evaluation_id")
    complete.add_argument(
        "--min-coverage",
        type=float,
        default=1.0,
        help="accept results on this share of rows judged (default 1)",
    )
    complete.add_argument("--note")
    complete.set_defaults(run=evaluations_complete)

    cancel = evaluations.add_parser("cancel", help="abandon an open evaluation")
    cancel.add_argument("evaluation_id")
    cancel.add_argument("--reason")
    cancel.set_defaults(run=evaluations_cancel)

    published = evaluations.add_parser("published", help="the completed evaluations published to a version")
    published.add_argument("model")
    published.add_argument("version", help="v3 or 3")
    published.set_defaults(run=evaluations_published)

    require = evaluations.add_parser("require", help="make production require a completed evaluation")
    require.add_argument("model")
    require.add_argument("setting", choices=("on", "off"))
    require.set_defaults(run=evaluations_require)
