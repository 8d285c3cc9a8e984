"""``mlambda monitor run [NAME]`` and ``mlambda monitor report NAME [--open]`` and ``mlambda monitor show NAME``."""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path
from typing import Any

from mlambda_local.client import CliError
from mlambda_local.commands import api
from mlambda_local.output import Outcome, status

MONITOR_FUNCTION = "MonitorFunction"


def monitor_run(args: argparse.Namespace) -> Outcome:
    """Run monitoring now on the local cloud: the schedule's trigger, or one model by an on-demand invoke."""
    from mlambda_local.cloud import ControlClient

    control = ControlClient.from_data_dir(Path(args.data_dir), timeout=600)
    if args.name:
        results: list[Any] = [control.invoke(MONITOR_FUNCTION, {"model": args.name})]
    else:
        results = control.trigger(MONITOR_FUNCTION)
    summaries = [summary for result in results for summary in (result or {}).get("results", [])]

    def lines() -> list[str]:
        out = []
        for summary in summaries:
            alerts = f", {summary.get('alerts_sent', 0)} alerts sent" if summary.get("alerts_sent") else ""
            job = f" (batch job {summary['job_id']})" if summary.get("job_id") else ""
            out.append(
                f"{summary['model']:24} {summary['status']:16} {summary.get('reason', '')}{alerts}{job}"
            )
        return out or ["no production model to monitor"]

    return Outcome(summaries, lines)


def monitor_show(args: argparse.Namespace) -> Outcome:
    """The latest summaries of a model (``GET /models/{name}/monitoring``)."""
    view = api(args).monitoring(args.name, limit=args.limit)

    def lines() -> list[str]:
        out = []
        for summary in view["history"]:
            drifted = ",".join(summary.get("drifted_features", [])) or "-"
            source = f"job {summary['job_id']}" if summary.get("job_id") else "traffic"
            out.append(
                f"{summary['at']}  {source:24} {summary['status']:16} rows={summary['rows']:<8} drifted={drifted}"
            )
        return out or [f"{args.name}: not monitored yet"]

    return Outcome(view, lines)


def monitor_report(args: argparse.Namespace) -> Outcome:
    """Write the latest HTML report to a file (and open it in a browser with ``--open``)."""
    html = api(args).monitoring_report(args.name)
    path = Path(args.file or f"{args.name}-monitoring.html").resolve()
    path.write_text(html, encoding="utf-8")
    if args.open and not webbrowser.open(path.as_uri()):
        raise CliError(f"wrote {path}, but no web browser could be started here: open it yourself")
    if args.open:
        status(f"opened {path} in a browser")
    return Outcome({"path": str(path)}, lambda: [str(path)])


def register(groups: Any) -> None:
    """Add ``mlambda monitor ...``."""
    monitor = groups.add_parser("monitor", help="drift, data and model quality").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    run = monitor.add_parser("run", help="run monitoring now (local cloud)")
    run.add_argument("name", nargs="?", help="one model (default: every production model)")
    run.set_defaults(run=monitor_run)
    show = monitor.add_parser("show", help="a model's monitoring history")
    show.add_argument("name")
    show.add_argument("--limit", type=int, default=24)
    show.set_defaults(run=monitor_show)
    report = monitor.add_parser("report", help="write the latest HTML report to a file")
    report.add_argument("name")
    report.add_argument("--file", "-f", help="file to write (default <name>-monitoring.html)")
    report.add_argument("--open", action="store_true", help="open it in a web browser")
    report.set_defaults(run=monitor_report)
