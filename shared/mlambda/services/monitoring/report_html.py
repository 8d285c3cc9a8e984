"""A monitoring report as one self-contained HTML page: tables plus inline SVG plots.

No JavaScript, no external CSS, fonts or images, so the page opens from S3, an e-mail
attachment or a laptop without network. Plots: per column, the reference and the window's
distributions side by side; over time, the share of drifted features and the distance score
(PSI / Jensen-Shannon) of the columns that drifted, from the previous runs' summaries.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from mlambda.schemas.monitoring import (
    AbSection,
    ColumnDrift,
    DataQualitySection,
    DriftSection,
    ModelQualitySection,
    MonitoringReport,
    MonitoringSummary,
)

REFERENCE_COLOUR = "#8aa1b1"
CURRENT_COLOUR = "#e07b39"
LINE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
STATUS_COLOURS = {"ok": "#2e7d32", "drift": "#c62828", "not_enough_data": "#9e9e9e", "error": "#6a1b9a"}
MAX_LINES = 6

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.badge{color:#fff;padding:2px 8px;border-radius:10px;font-size:12px}
.muted{color:#777}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:6px}.legend span{margin-right:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def badge(status: str) -> str:
    """A coloured status label."""
    return f'<span class="badge" style="background:{STATUS_COLOURS.get(status, "#555")}">{_e(status)}</span>'


def histogram_svg(column: ColumnDrift, width: int = 260, height: int = 120) -> str:
    """Reference vs window bars for one column (shares)."""
    reference, current = column.reference_hist, column.current_hist
    bars = max(len(reference), len(current))
    if bars == 0:
        return '<p class="muted">no distribution</p>'
    top = max([*reference, *current, 1e-9])
    slot = (width - 10) / bars
    parts = [f'<svg width="{width}" height="{height + 18}" role="img" aria-label="{_e(column.name)}">']
    for index in range(bars):
        x = 5 + index * slot
        for offset, values, colour in ((0.0, reference, REFERENCE_COLOUR), (0.5, current, CURRENT_COLOUR)):
            share = values[index] if index < len(values) else 0.0
            h = share / top * height
            parts.append(
                f'<rect x="{x + offset * slot:.1f}" y="{height - h:.1f}" width="{max(slot / 2 - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{share:.3f}</title></rect>'
            )
    if column.hist_labels:
        first, last = column.hist_labels[0], column.hist_labels[-1]
    elif column.hist_edges:
        first, last = f"{column.hist_edges[0]:.3g}", f"{column.hist_edges[-1]:.3g}"
    else:
        first = last = ""
    parts.append(f'<text x="5" y="{height + 14}" font-size="10">{_e(first)[:16]}</text>')
    parts.append(
        f'<text x="{width - 5}" y="{height + 14}" font-size="10" text-anchor="end">{_e(last)[:16]}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(history: Sequence[MonitoringSummary], width: int = 760, height: int = 200) -> str:
    """Drift share and the drifting columns' distance scores over the runs in ``history``."""
    runs = sorted(history, key=lambda s: s.at)
    if len(runs) < 2:
        return '<p class="muted">Not enough previous runs to plot a history yet.</p>'
    drifted: list[str] = []
    for summary in reversed(runs):
        for name in summary.drifted_features:
            if name not in drifted:
                drifted.append(name)
    if not drifted:
        latest = runs[-1].feature_scores
        drifted = sorted(latest, key=lambda n: -latest[n])[:3]
    series: list[tuple[str, list[float | None]]] = [("drift share", [s.drift_share for s in runs])]
    series.extend((name, [s.feature_scores.get(name) for s in runs]) for name in drifted[: MAX_LINES - 1])
    top = max([v for _, values in series for v in values if v is not None] + [1e-9])
    left, bottom = 40, 24
    plot_w, plot_h = width - left - 10, height - bottom - 10

    def point(index: int, value: float) -> str:
        x = left + index / (len(runs) - 1) * plot_w
        y = 10 + plot_h - value / top * plot_h
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="drift over time">']
    parts.append(f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" stroke="#999"/>')
    parts.append(f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#999"/>')
    parts.append(f'<text x="{left - 4}" y="14" font-size="10" text-anchor="end">{top:.2g}</text>')
    parts.append(f'<text x="{left - 4}" y="{10 + plot_h}" font-size="10" text-anchor="end">0</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="10">{runs[0].at:%m-%d %H:%M}</text>')
    parts.append(
        f'<text x="{width - 10}" y="{height - 4}" font-size="10" text-anchor="end">{runs[-1].at:%m-%d %H:%M}</text>'
    )
    legend = []
    for number, (name, values) in enumerate(series):
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        points = [point(i, v) for i, v in enumerate(values) if v is not None]
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
            )
        legend.append(f'<span style="color:{colour}">&#9632; {_e(name)}</span>')
    parts.append("</svg>")
    return "".join(parts) + f'<div class="legend">{"".join(legend)}</div>'


def _drift_table(section: DriftSection) -> str:
    rows = []
    for c in section.columns:
        extra = ", ".join(c.unseen[:5]) if c.unseen else ""
        rows.append(
            "<tr>"
            f"<td>{_e(c.name)}</td><td>{_e(c.kind)}</td><td>{badge(c.status)}</td><td>{_e(c.test or '')}</td>"
            f"<td>{_fmt(c.score)}</td><td>{_fmt(c.threshold)}</td><td>{c.count}</td><td>{_fmt(c.psi)}</td>"
            f"<td>{_fmt(c.ks)}</td><td>{_fmt(c.wasserstein)}</td><td>{_fmt(c.jensen_shannon)}</td>"
            f"<td>{_fmt(c.chi_square_p_value)}</td><td>{_e(extra)}</td><td class='muted'>{_e(c.reason)}</td>"
            "</tr>"
        )
    header = (
        "<tr><th>column</th><th>kind</th><th>status</th><th>test</th><th>score</th><th>threshold</th>"
        "<th>rows</th><th>PSI</th><th>KS</th><th>W1/&sigma;</th><th>JS</th><th>&chi;&sup2; p</th><th>unseen</th><th></th></tr>"
    )
    summary = (
        f"<p>{badge(section.status)} {_e(section.reason)}. Drifted share {section.share:.0%} "
        f"(dataset drift at {section.drift_share_threshold:.0%}: <b>{'yes' if section.dataset_drift else 'no'}</b>).</p>"
    )
    cards = "".join(
        f'<div class="card"><b>{_e(c.name)}</b> {badge(c.status)}<br>{histogram_svg(c)}</div>'
        for c in section.columns
    )
    legend = (
        f'<div class="legend"><span style="color:{REFERENCE_COLOUR}">&#9632; reference</span>'
        f'<span style="color:{CURRENT_COLOUR}">&#9632; window</span></div>'
    )
    return f"{summary}<table>{header}{''.join(rows)}</table>{legend}<div class='grid'>{cards}</div>"


def _quality_table(section: DataQualitySection) -> str:
    if not section.violations:
        return f"<p>{badge(section.status)} {_e(section.reason)}</p>"
    rows = "".join(
        f"<tr><td>{_e(v.check)}</td><td>{_e(v.feature)}</td><td>{_fmt(v.value)}</td><td>{_fmt(v.threshold)}</td>"
        f"<td>{_e(v.message)}</td></tr>"
        for v in section.violations
    )
    return (
        f"<p>{badge(section.status)} {_e(section.reason)}</p><table><tr><th>check</th><th>column</th>"
        f"<th>value</th><th>threshold</th><th>message</th></tr>{rows}</table>"
    )


def _model_quality_table(section: ModelQualitySection) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_fmt(m.value)}</td><td>[{_fmt(m.low)}, {_fmt(m.high)}]</td>"
        f"<td>{_fmt(m.registered)}</td><td>{badge('drift') if m.degraded else badge('ok')}</td></tr>"
        for name, m in section.metrics.items()
    )
    table = (
        "<table><tr><th>metric</th><th>window</th><th>95% CI</th><th>registered</th><th></th></tr>"
        f"{rows}</table>"
        if rows
        else ""
    )
    return f"<p>{badge(section.status)} {_e(section.reason)} ({section.labelled} labelled rows)</p>{table}"


def _ab_table(section: AbSection) -> str:
    variants = "".join(
        f"<tr><td>{_e(v.variant)}</td><td>{_e(v.target or '')}</td><td>{_e(v.versions)}</td>"
        f"<td>{_fmt(v.weight)}</td><td>{v.rows}</td><td>{v.share:.1%}</td><td>{v.labelled}</td>"
        f"<td>{_e(', '.join(f'{k}={val:.4g}' for k, val in v.metrics.items()))}</td></tr>"
        for v in section.variants
    )
    comparisons = "".join(
        f"<tr><td>{_e(c.variant)} vs {_e(c.control)}</td><td>{_e(c.metric)}</td><td>{_fmt(c.difference)}</td>"
        f"<td>{_fmt(c.p_value)}</td><td>{'yes' if c.significant else 'no'}</td><td>{_e(c.test)}</td></tr>"
        for c in section.comparisons
    )
    srm = (
        f"<p>Sample ratio: &chi;&sup2;={_fmt(section.srm_chi_square)}, p={_fmt(section.srm_p_value)}, "
        f"mismatch: <b>{'yes' if section.sample_ratio_mismatch else 'no'}</b></p>"
    )
    return (
        f"<p>{badge(section.status)} {_e(section.reason)}</p><table><tr><th>variant</th><th>target</th>"
        f"<th>versions</th><th>weight %</th><th>rows</th><th>share</th><th>labelled</th><th>metrics</th></tr>"
        f"{variants}</table>"
        + (
            "<table><tr><th>comparison</th><th>metric</th><th>difference</th><th>p</th><th>significant</th>"
            f"<th>test</th></tr>{comparisons}</table>"
            if comparisons
            else ""
        )
        + srm
    )


def render_report(report: MonitoringReport, history: Sequence[MonitoringSummary]) -> str:
    """The whole page."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(report.model)} monitoring {report.at:%Y-%m-%d %H:%M} UTC</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(report.model)} v{_e(report.version)} {badge(report.status)}</h1>",
        f"<p>{_e(report.reason)}</p>",
        f"<p class='muted'>Window {report.window_start:%Y-%m-%d %H:%M} to {report.window_end:%Y-%m-%d %H:%M} UTC, "
        f"{report.rows} rows served by the production version, {report.labelled} labelled</p>",
    ]
    if report.alerts:
        items = "".join(
            f"<li>{'<b>sent</b>' if a.sent else '<span class=muted>within cooldown</span>'} "
            f"{_e(a.check)} / {_e(a.feature)}: {_e(a.message)}</li>"
            for a in report.alerts
        )
        parts.append(f"<h2>Alerts</h2><ul>{items}</ul>")
    parts.append(f"<h2>Drift over time</h2>{timeline_svg(history)}")
    if report.feature_drift:
        parts.append(f"<h2>Feature drift</h2>{_drift_table(report.feature_drift)}")
    if report.prediction_drift:
        parts.append(f"<h2>Prediction drift</h2>{_drift_table(report.prediction_drift)}")
    if report.data_quality:
        parts.append(f"<h2>Data quality</h2>{_quality_table(report.data_quality)}")
    if report.model_quality:
        parts.append(f"<h2>Model quality</h2>{_model_quality_table(report.model_quality)}")
    if report.ab:
        parts.append(f"<h2>A/B readout</h2>{_ab_table(report.ab)}")
    if report.notes or report.corrupt_objects:
        notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
        notes += "".join(f"<li>unreadable: {_e(k)}</li>" for k in report.corrupt_objects)
        parts.append(f"<h2>Notes</h2><ul>{notes}</ul>")
    parts.append("</body></html>")
    return "".join(parts)
