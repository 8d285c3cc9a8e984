"""``mlambda monitor run [NAME]`` and ``mlambda monitor report NAME [--open]`` and ``mlambda monitor show NAME``."""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path
from typing import Any

import requests

from mlambda_local.client import CliError
from mlambda_local.commands import api, print_json

MONITOR_FUNCTION = "MonitorFunction"


def monitor_run(args: argparse.Namespace) -> int:
    """Run monitoring now on the local cloud: the schedule's trigger, or one model by an on-demand invoke."""
    from mlambda_local.cloud import ControlClient
    from mlambda_local.cloud.errors import MlambdaLocalError

    try:
        control = ControlClient.from_data_dir(Path(args.data_dir), timeout=600)
        if args.name:
            results: list[Any] = [control.invoke(MONITOR_FUNCTION, {"model": args.name})]
        else:
            results = control.trigger(MONITOR_FUNCTION)
    except MlambdaLocalError as exc:
        raise CliError(str(exc)) from exc
    for result in results:
        for summary in (result or {}).get("results", []):
            alerts = f", {summary.get('alerts_sent', 0)} alerts sent" if summary.get("alerts_sent") else ""
            job = f" (batch job {summary['job_id']})" if summary.get("job_id") else ""
            print(f"{summary['model']:24} {summary['status']:16} {summary.get('reason', '')}{alerts}{job}")
    return 0


def monitor_show(args: argparse.Namespace) -> int:
    """The latest summaries of a model (``GET /models/{name}/monitoring``)."""
    view = api(args).get(f"/models/{args.name}/monitoring", params={"limit": args.limit})
    if args.json:
        print_json(view)
        return 0
    for summary in view["history"]:
        drifted = ",".join(summary.get("drifted_features", [])) or "-"
        source = f"job {summary['job_id']}" if summary.get("job_id") else "traffic"
        print(
            f"{summary['at']}  {source:24} {summary['status']:16} rows={summary['rows']:<8} drifted={drifted}"
        )
    return 0


def monitor_report(args: argparse.Namespace) -> int:
    """Write the latest HTML report to a file (and open it in a browser with ``--open``)."""
    target = api(args).target
    headers = {"x-api-key": target.api_key} if target.api_key else {}
    response = requests.get(
        f"{target.api_url}/models/{args.name}/monitoring",
        params={"format": "html"},
        headers=headers,
        timeout=60,
    )
    if response.status_code != 200:
        try:
            message = response.json().get("message", response.reason)
        except ValueError:
            message = response.reason
        raise CliError(f"HTTP {response.status_code}: {message}")
    path = Path(args.output or f"{args.name}-monitoring.html").resolve()
    path.write_text(response.text, encoding="utf-8")
    print(path)
    if args.open:
        webbrowser.open(path.as_uri())
    return 0


def register(groups: Any) -> None:
    """Add ``mlambda monitor ...``."""
    monitor = groups.add_parser("monitor", help="drift, data and model quality").add_subparsers(
        dest="command", required=True
    )
    run = monitor.add_parser("run", help="run monitoring now (local cloud)")
    run.add_argument("name", nargs="?", help="one model (default: every production model)")
    run.set_defaults(run=monitor_run)
    show = monitor.add_parser("show", help="a model's monitoring history")
    show.add_argument("name")
    show.add_argument("--limit", type=int, default=24)
    show.add_argument("--json", action="store_true", help="the whole response, latest report included")
    show.set_defaults(run=monitor_show)
    report = monitor.add_parser("report", help="write the latest HTML report to a file")
    report.add_argument("name")
    report.add_argument("--output", "-o", help="file to write (default <name>-monitoring.html)")
    report.add_argument("--open", action="store_true", help="open it in a web browser")
    report.set_defaults(run=monitor_report)
