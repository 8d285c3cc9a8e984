"""A monitoring report as one self-contained HTML page: tables plus inline SVG plots.

No JavaScript, no external CSS, fonts or images, so the page opens from S3, an e-mail
attachment or a laptop without network. Every plot has axes with ticks and a unit on each:

- per column, the reference and the window's distributions (share of rows per bin or category);
- model quality: the confusion matrix, ROC and precision-recall curves, per-class metrics and the
  predicted probability's distribution among each class's rows and the others;
- over time, one chart per measure (share of drifted features; each drifting column's effect
  size; model-quality metrics; estimated metrics), from the previous runs' summaries;
- an A/B readout whose badges follow the direction of significant differences.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime

from mlambda.schemas.monitoring import (
    AbSection,
    AlarmBudget,
    ColumnDrift,
    ColumnSummary,
    Curve,
    DataQualitySection,
    DriftSection,
    EstimatedPerformanceSection,
    ModelQualitySection,
    MonitoringReport,
    MonitoringSummary,
    ProbabilityHistogram,
)

REFERENCE_COLOUR = "#5b7c99"
CURRENT_COLOUR = "#e07b39"
LINE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
STATUS_COLOURS = {"ok": "#2e7d32", "drift": "#c62828", "not_enough_data": "#757575", "error": "#6a1b9a"}
DIRECTION_COLOURS = {"better": "#2e7d32", "worse": "#c62828", "none": "#757575"}
MAX_LINES = 6
PLOT_FONT = 10

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right}.badge{color:#fff;padding:2px 8px;border-radius:10px;font-size:12px}
.muted{color:#666}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:6px}.legend span{margin-right:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def badge(status: str, colour: str | None = None) -> str:
    """A coloured status label."""
    background = colour or STATUS_COLOURS.get(status, "#555")
    return f'<span class="badge" style="background:{background}">{_e(status)}</span>'


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:.3g}"


class Frame:
    """A plot area with x and y axes, ticks and unit labels, mapping data to SVG coordinates."""

    def __init__(  # noqa: PLR0917 - a plot's size, ranges and axis labels
        self,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        x_label: str,
        y_label: str,
    ) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 48, 10, 10, 34
        self.x_low, self.x_high = x_range
        self.y_low, self.y_high = y_range
        self.x_label, self.y_label = x_label, y_label
        if self.x_high <= self.x_low:
            self.x_high = self.x_low + 1
        if self.y_high <= self.y_low:
            self.y_high = self.y_low + 1

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, value: float) -> float:
        return self.left + (value - self.x_low) / (self.x_high - self.x_low) * self.plot_width

    def y(self, value: float) -> float:
        return (
            self.top + self.plot_height - (value - self.y_low) / (self.y_high - self.y_low) * self.plot_height
        )

    def axes(self, x_ticks: Sequence[tuple[float, str]] | None = None) -> str:
        """The axis lines, ticks with values, and each axis's label (with its unit)."""
        base_y = self.top + self.plot_height
        parts = [
            f'<line x1="{self.left}" y1="{base_y}" x2="{self.width - self.right}" y2="{base_y}" stroke="#777"/>',
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{base_y}" stroke="#777"/>',
        ]
        for value in _ticks(self.y_low, self.y_high):
            y = self.y(value)
            parts.append(
                f'<line x1="{self.left - 4}" y1="{y:.1f}" x2="{self.left}" y2="{y:.1f}" stroke="#777"/>'
            )
            parts.append(
                f'<text x="{self.left - 6}" y="{y + 3:.1f}" font-size="{PLOT_FONT}" text-anchor="end">'
                f"{_tick_label(value)}</text>"
            )
        ticks = (
            x_ticks if x_ticks is not None else [(v, _tick_label(v)) for v in _ticks(self.x_low, self.x_high)]
        )
        for value, label in ticks:
            x = self.x(value)
            parts.append(f'<line x1="{x:.1f}" y1="{base_y}" x2="{x:.1f}" y2="{base_y + 4}" stroke="#777"/>')
            parts.append(
                f'<text x="{x:.1f}" y="{base_y + 14}" font-size="{PLOT_FONT}" text-anchor="middle">{_e(label)}</text>'
            )
        parts.append(
            f'<text x="{self.left + self.plot_width / 2:.1f}" y="{self.height - 3}" font-size="{PLOT_FONT}" '
            f'text-anchor="middle">{_e(self.x_label)}</text>'
        )
        middle = self.top + self.plot_height / 2
        parts.append(
            f'<text x="10" y="{middle:.1f}" font-size="{PLOT_FONT}" text-anchor="middle" '
            f'transform="rotate(-90 10 {middle:.1f})">{_e(self.y_label)}</text>'
        )
        return "".join(parts)

    def open(self, label: str) -> str:
        return f'<svg width="{self.width}" height="{self.height}" role="img" aria-label="{_e(label)}">'


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span style="color:{c}">&#9632; {_e(n)}</span>' for n, c in entries)
        + "</div>"
    )


def histogram_svg(column: ColumnDrift, width: int = 300, height: int = 160) -> str:
    """Reference vs window bars for one column: share of rows per bin (numeric) or category."""
    reference, current = column.reference_hist, column.current_hist
    bars = max(len(reference), len(current))
    if bars == 0:
        return '<p class="muted">no distribution</p>'
    top = max([*reference, *current, 1e-9])
    numeric = bool(column.hist_edges) and not column.hist_labels
    if numeric:
        edges = column.hist_edges
        frame = Frame(
            width, height, (edges[0], edges[-1]), (0.0, top), f"{column.name} (value)", "share of rows"
        )
        positions = edges
        x_ticks = None
    else:
        frame = Frame(
            width, height, (0.0, float(bars)), (0.0, top), f"{column.name} (category)", "share of rows"
        )
        positions = [float(i) for i in range(bars + 1)]
        labels = column.hist_labels or [str(i) for i in range(bars)]
        step = max(1, math.ceil(bars / 6))
        x_ticks = [(i + 0.5, labels[i][:8]) for i in range(0, bars, step)]
    parts = [frame.open(column.name)]
    for index in range(bars):
        x0, x1 = frame.x(positions[index]), frame.x(positions[index + 1])
        slot = max(x1 - x0, 1.0)
        for offset, values, colour in ((0.0, reference, REFERENCE_COLOUR), (0.5, current, CURRENT_COLOUR)):
            share = values[index] if index < len(values) else 0.0
            y = frame.y(share)
            parts.append(
                f'<rect x="{x0 + offset * slot:.1f}" y="{y:.1f}" width="{max(slot / 2 - 0.5, 0.5):.1f}" '
                f'height="{frame.y(0) - y:.1f}" fill="{colour}"><title>{share:.3f}</title></rect>'
            )
    parts.append(frame.axes(x_ticks))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    series: Sequence[tuple[str, Sequence[float | None]]],
    x_values: Sequence[float],
    *,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 360,
    height: int = 220,
    label: str = "",
) -> str:
    """Lines (one per named series) on shared axes."""
    values = [v for _, ys in series for v in ys if v is not None and math.isfinite(v)]
    if not values or len(x_values) < 2:
        return '<p class="muted">not enough points to plot</p>'
    low, high = y_range if y_range else (min(0.0, *values), max(values))
    if high <= low:
        high = low + 1
    frame = Frame(width, height, (min(x_values), max(x_values)), (low, high), x_label, y_label)
    parts = [frame.open(label or y_label)]
    legend = []
    for number, (name, ys) in enumerate(series[:MAX_LINES]):
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        points = [
            f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in zip(x_values, ys, strict=False) if y is not None
        ]
        if len(points) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
            )
        for point in points if len(points) <= 1 or len(x_values) <= 60 else []:
            cx, cy = point.split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
        legend.append((name, colour))
    parts.append(frame.axes(x_ticks))
    parts.append("</svg>")
    return "".join(parts) + _legend(legend)


def _time_axis(runs: Sequence[MonitoringSummary]) -> tuple[list[float], list[tuple[float, str]]]:
    start = runs[0].at
    hours = [(r.at - start).total_seconds() / 3600 for r in runs]
    picks = sorted({0, len(runs) // 2, len(runs) - 1})
    ticks = [(hours[i], f"{runs[i].at:%m-%d %H:%M}") for i in picks]
    return hours, ticks


def timeline(history: Sequence[MonitoringSummary]) -> str:
    """Drift over time: one chart per measure, each on its own axis and unit."""
    runs = sorted(history, key=lambda s: s.at)
    if len(runs) < 2:
        return '<p class="muted">Not enough previous runs to plot a history yet.</p>'
    hours, ticks = _time_axis(runs)
    charts = [
        line_chart(
            [("drifted features", [s.drift_share * 100 for s in runs])],
            hours,
            x_label="run time (UTC)",
            y_label="drifted features (%)",
            x_ticks=ticks,
            y_range=(0.0, 100.0),
            label="share of drifted features over time",
        )
    ]
    watched: list[str] = []
    for summary in reversed(runs):
        for name in summary.drifted_features:
            if name not in watched:
                watched.append(name)
    if not watched:
        latest = runs[-1].feature_scores
        watched = sorted(latest, key=lambda n: -latest[n])[:3]
    if watched:
        charts.append(
            line_chart(
                [(name, [s.feature_scores.get(name) for s in runs]) for name in watched[:MAX_LINES]],
                hours,
                x_label="run time (UTC)",
                y_label="effect size (W1/sd or total variation)",
                x_ticks=ticks,
                label="effect size per column over time",
            )
        )
    metric_names = sorted({n for s in runs for n in s.metrics})
    if metric_names:
        charts.append(
            line_chart(
                [(n, [s.metrics.get(n) for s in runs]) for n in metric_names],
                hours,
                x_label="run time (UTC)",
                y_label="metric on labelled rows",
                x_ticks=ticks,
                label="model quality over time",
            )
        )
    estimated = sorted({n for s in runs for n in s.estimated})
    if estimated:
        charts.append(
            line_chart(
                [(n, [s.estimated.get(n) for s in runs]) for n in estimated],
                hours,
                x_label="run time (UTC)",
                y_label="estimated metric (CBPE)",
                x_ticks=ticks,
                label="estimated performance over time",
            )
        )
    return '<div class="grid">' + "".join(f'<div class="card">{c}</div>' for c in charts) + "</div>"


def _drift_table(section: DriftSection) -> str:
    rows = []
    for c in section.columns:
        extra = ", ".join(c.unseen[:5]) if c.unseen else ""
        rows.append(
            "<tr>"
            f"<td>{_e(c.name)}</td><td>{_e(c.kind)}</td><td>{badge(c.status)}</td><td>{_e(c.test or '')}</td>"
            f"<td class=num>{_fmt(c.p_value)}</td><td class=num>{_fmt(c.p_value_adjusted)}</td>"
            f"<td>{_e(c.effect_measure or '')}</td><td class=num>{_fmt(c.effect)}</td><td class=num>{_fmt(c.effect_floor)}</td>"
            f"<td class=num>{c.count}</td><td class=num>{_fmt(c.psi)}</td><td>{_e(extra)}</td>"
            f"<td class='muted'>{_e(c.reason)}</td></tr>"
        )
    header = (
        "<tr><th>column</th><th>kind</th><th>status</th><th>test</th><th>p</th><th>p adjusted</th>"
        "<th>effect</th><th>size</th><th>floor</th><th>rows</th><th>PSI</th><th>unseen</th><th></th></tr>"
    )
    summary = (
        f"<p>{badge(section.status)} {_e(section.reason)}. Drifted share {section.share:.0%} "
        f"(dataset drift at {section.drift_share_threshold:.0%}: <b>{'yes' if section.dataset_drift else 'no'}</b>).</p>"
    )
    cards = "".join(
        f'<div class="card"><b>{_e(c.name)}</b> {badge(c.status)}<br>{histogram_svg(c)}</div>'
        for c in section.columns
    )
    legend = _legend([("reference", REFERENCE_COLOUR), ("window", CURRENT_COLOUR)])
    return f"{summary}<table>{header}{''.join(rows)}</table>{legend}<div class='grid'>{cards}</div>"


def _columns_table(columns: Sequence[ColumnSummary]) -> str:
    rows = "".join(
        f"<tr><td>{_e(c.name)}</td><td>{_e(c.source)}</td><td>{_e(c.kind)}</td><td class=num>{c.rows}</td>"
        f"<td class=num>{c.missing_rate:.2%}</td><td class=num>{'-' if c.reference_missing_rate is None else f'{c.reference_missing_rate:.2%}'}</td>"
        f"<td class=num>{_fmt(c.mean)}</td><td class=num>{_fmt(c.reference_mean)}</td><td class=num>{_fmt(c.std)}</td>"
        f"<td class=num>{_fmt(c.min)}</td><td class=num>{_fmt(c.max)}</td>"
        f"<td class=num>{'-' if c.unique is None else c.unique}</td>"
        f"<td>{_e(', '.join(f'{name} {share:.0%}' for name, share in c.top))}</td></tr>"
        for c in columns
    )
    return (
        "<table><tr><th>column</th><th>source</th><th>kind</th><th>rows</th><th>missing</th><th>missing (ref)</th>"
        "<th>mean</th><th>mean (ref)</th><th>sd</th><th>min</th><th>max</th><th>unique</th><th>top values</th></tr>"
        f"{rows}</table>"
    )


def _quality_table(section: DataQualitySection) -> str:
    shown = [*section.violations, *(f for f in section.findings if not f.violated)]
    if not shown:
        return f"<p>{badge(section.status)} {_e(section.reason)}</p>"
    rows = "".join(
        f"<tr><td>{badge('violated' if v.violated else 'within chance', STATUS_COLOURS['drift' if v.violated else 'ok'])}</td>"
        f"<td>{_e(v.check)}</td><td>{_e(v.feature)}</td><td class=num>{_fmt(v.value)}</td>"
        f"<td class=num>{_fmt(v.threshold)}</td><td class=num>{_fmt(v.p_value)}</td><td class=num>{_fmt(v.p_value_adjusted)}</td>"
        f"<td>{_e(v.message)}</td></tr>"
        for v in shown
    )
    return (
        f"<p>{badge(section.status)} {_e(section.reason)}</p><table><tr><th></th><th>check</th><th>column</th>"
        f"<th>value</th><th>floor</th><th>p</th><th>p adjusted</th><th>message</th></tr>{rows}</table>"
    )


def confusion_table(section: ModelQualitySection) -> str:
    """The confusion matrix as a shaded table (rows: true class, columns: predicted)."""
    if not section.confusion:
        return ""
    top = max(max(row) for row in section.confusion) or 1
    header = "".join(f"<th>pred {_e(c)}</th>" for c in section.classes)
    body = ""
    for name, row in zip(section.classes, section.confusion, strict=False):
        cells = "".join(
            f'<td class=num style="background:rgba(31,119,180,{0.08 + 0.6 * count / top:.2f})">{count}</td>'
            for count in row
        )
        body += f"<tr><th>true {_e(name)}</th>{cells}</tr>"
    return f"<h3>Confusion matrix (rows)</h3><table><tr><th></th>{header}</tr>{body}</table>"


def curve_svg(curves: Sequence[Curve], kind: str) -> str:
    """ROC (false vs true positive rate) or precision-recall curves, one line per class."""
    chosen = [c for c in curves if c.kind == kind]
    if not chosen:
        return ""
    x_label, y_label = (
        ("false positive rate", "true positive rate") if kind == "roc" else ("recall", "precision")
    )
    frame = Frame(320, 240, (0.0, 1.0), (0.0, 1.0), x_label, y_label)
    parts = [frame.open("ROC curve" if kind == "roc" else "precision-recall curve")]
    if kind == "roc":
        parts.append(
            f'<line x1="{frame.x(0)}" y1="{frame.y(0)}" x2="{frame.x(1)}" y2="{frame.y(1)}" stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    legend = []
    for number, curve in enumerate(chosen):
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        points = " ".join(
            f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in zip(curve.x, curve.y, strict=False)
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        area = "AUC" if kind == "roc" else "AP"
        legend.append((f"{curve.name} ({area} {_fmt(curve.area, 3)})", colour))
    parts.append(frame.axes())
    parts.append("</svg>")
    return "".join(parts) + _legend(legend)


def probability_svg(histogram: ProbabilityHistogram) -> str:
    """Predicted probability of a class among its rows and among the others (share of each group)."""
    edges = histogram.edges
    pos_total = sum(histogram.positives) or 1
    neg_total = sum(histogram.negatives) or 1
    positives = [c / pos_total for c in histogram.positives]
    negatives = [c / neg_total for c in histogram.negatives]
    top = max([*positives, *negatives, 1e-9])
    frame = Frame(
        320,
        200,
        (edges[0], edges[-1]),
        (0.0, top),
        f"predicted probability of {histogram.name}",
        "share of rows",
    )
    parts = [frame.open(f"probability of {histogram.name} by true class")]
    for index in range(len(edges) - 1):
        x0, x1 = frame.x(edges[index]), frame.x(edges[index + 1])
        slot = max(x1 - x0, 1.0)
        for offset, values, colour in ((0.0, negatives, REFERENCE_COLOUR), (0.5, positives, CURRENT_COLOUR)):
            y = frame.y(values[index])
            parts.append(
                f'<rect x="{x0 + offset * slot:.1f}" y="{y:.1f}" width="{max(slot / 2 - 0.5, 0.5):.1f}" '
                f'height="{frame.y(0) - y:.1f}" fill="{colour}"/>'
            )
    parts.append(frame.axes())
    parts.append("</svg>")
    legend = _legend([(f"true class {histogram.name}", CURRENT_COLOUR), ("other classes", REFERENCE_COLOUR)])
    return "".join(parts) + legend


def _model_quality(section: ModelQualitySection) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td class=num>{_fmt(m.value)}</td><td class=num>[{_fmt(m.low)}, {_fmt(m.high)}]</td>"
        f"<td>{_e(m.method)}</td><td class=num>{_fmt(m.reference)}</td><td class=num>{_fmt(m.registered)}</td>"
        f"<td class=num>{_fmt(m.p_value)}</td><td class=num>{_fmt(m.p_value_adjusted)}</td>"
        f"<td>{badge('degraded') if m.degraded else badge('ok')}</td></tr>"
        for name, m in section.metrics.items()
    )
    table = (
        "<table><tr><th>metric</th><th>window</th><th>95% interval</th><th>interval</th><th>reference</th>"
        f"<th>registered</th><th>p (worse)</th><th>p adjusted</th><th></th></tr>{rows}</table>"
        if rows
        else ""
    )
    per_class = ""
    if section.per_class:
        body = "".join(
            f"<tr><td>{_e(name)}</td><td class=num>{m.precision:.3f}</td><td class=num>{m.recall:.3f}</td>"
            f"<td class=num>{m.f1:.3f}</td><td class=num>{m.support}</td></tr>"
            for name, m in section.per_class.items()
        )
        per_class = (
            "<h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
            f"<th>support (rows)</th></tr>{body}</table>"
        )
    plots = [curve_svg(section.curves, "roc"), curve_svg(section.curves, "pr")]
    plots += [probability_svg(h) for h in section.probability_histograms]
    grid = '<div class="grid">' + "".join(f'<div class="card">{p}</div>' for p in plots if p) + "</div>"
    return (
        f"<p>{badge(section.status)} {_e(section.reason)} ({section.labelled} labelled rows; baseline: "
        f"{_e(section.baseline or 'none')})</p>{table}{confusion_table(section)}{per_class}{grid}"
    )


def _estimated(section: EstimatedPerformanceSection) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td class=num>{_fmt(m.value)}</td><td class=num>[{_fmt(m.low)}, {_fmt(m.high)}]</td>"
        f"<td class=num>{_fmt(m.reference)}</td><td class=num>{_fmt(m.p_value_adjusted)}</td>"
        f"<td class=num>{_fmt(m.labelled_estimate)}</td><td class=num>{_fmt(m.realised)}</td>"
        f"<td class=num>{_fmt(m.error)}</td><td>{badge('degraded') if m.degraded else badge('ok')}</td></tr>"
        for name, m in section.metrics.items()
    )
    return (
        f"<p>{badge(section.status)} {_e(section.reason)}; {section.labelled} of the rows have labels.</p>"
        "<table><tr><th>metric</th><th>estimated</th><th>95% interval (realised)</th><th>reference</th>"
        "<th>p adjusted</th><th>estimated on labelled rows</th><th>realised</th><th>error</th><th></th></tr>"
        f"{rows}</table>"
    )


def _ab_table(section: AbSection) -> str:
    variants = "".join(
        f"<tr><td>{_e(v.variant)}</td><td>{_e(v.target or '')}</td><td>{_e(v.versions)}</td>"
        f"<td class=num>{_fmt(v.weight)}</td><td class=num>{v.rows}</td><td class=num>{v.share:.1%}</td><td class=num>{v.labelled}</td>"
        f"<td>{_e(', '.join(f'{k}={val:.4g}' for k, val in v.metrics.items()))}</td></tr>"
        for v in section.variants
    )
    comparisons = "".join(
        f"<tr><td>{_e(c.variant)} vs {_e(c.control)}</td><td>{_e(c.metric)}</td><td class=num>{_fmt(c.difference)}</td>"
        f"<td class=num>{_fmt(c.p_value)}</td><td>{badge(c.direction if c.significant else 'no difference', DIRECTION_COLOURS[c.direction])}</td>"
        f"<td>{_e(c.test)}</td></tr>"
        for c in section.comparisons
    )
    srm = (
        f"<p>Sample ratio: &chi;&sup2;={_fmt(section.srm_chi_square)}, p={_fmt(section.srm_p_value)} "
        f"(adjusted {_fmt(section.srm_p_value_adjusted)}), mismatch: <b>{'yes' if section.sample_ratio_mismatch else 'no'}</b></p>"
    )
    return (
        f"<p>{badge(section.status)} {_e(section.reason)}</p><table><tr><th>variant</th><th>target</th>"
        f"<th>versions</th><th>weight %</th><th>rows</th><th>share</th><th>labelled</th><th>metrics</th></tr>"
        f"{variants}</table>"
        + (
            "<table><tr><th>comparison</th><th>metric</th><th>difference</th><th>p</th><th>verdict</th>"
            f"<th>test</th></tr>{comparisons}</table>"
            if comparisons
            else ""
        )
        + srm
    )


def _budget(budget: AlarmBudget) -> str:
    return (
        f"<p class='muted'>Alarm budget: {budget.tests} p-values in one {budget.method.replace('_', '-')} "
        f"control at q = {budget.q:g} (on unchanged data a run alarms at most {budget.q:.0%} of the time); "
        f"{budget.significant} significant, {budget.alarms} beyond their effect floor.</p>"
    )


def _stamp(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M}"


def render_report(report: MonitoringReport, history: Sequence[MonitoringSummary]) -> str:
    """The whole page."""
    source = f"batch job {report.job_id}" if report.source == "batch" else "served traffic"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(report.model)} monitoring {_stamp(report.at)} UTC</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(report.model)} v{_e(report.version)} {badge(report.status)}</h1>",
        f"<p>{_e(report.reason)}</p>",
        f"<p class='muted'>{_e(source)}: {_stamp(report.window_start)} to {_stamp(report.window_end)} UTC, "
        f"{report.rows} rows scored by the version, {report.labelled} labelled"
        + (
            f", {report.fallback_rows} fallback answers (not the model's, left out)"
            if report.fallback_rows
            else ""
        )
        + "</p>",
    ]
    if report.budget:
        parts.append(_budget(report.budget))
    if report.alerts:
        items = "".join(
            f"<li>{'<b>sent</b>' if a.sent else '<span class=muted>within cooldown</span>'} "
            f"{_e(a.check)} / {_e(a.feature)}: {_e(a.message)}</li>"
            for a in report.alerts
        )
        parts.append(f"<h2>Alerts</h2><ul>{items}</ul>")
    parts.append(f"<h2>Over time</h2>{timeline(history)}")
    if report.columns:
        parts.append(f"<h2>Columns</h2>{_columns_table(report.columns)}")
    if report.feature_drift:
        parts.append(f"<h2>Feature drift</h2>{_drift_table(report.feature_drift)}")
    if report.prediction_drift:
        parts.append(f"<h2>Prediction drift</h2>{_drift_table(report.prediction_drift)}")
    if report.label_drift:
        parts.append(f"<h2>Label drift</h2>{_drift_table(report.label_drift)}")
    if report.data_quality:
        parts.append(f"<h2>Data quality</h2>{_quality_table(report.data_quality)}")
    if report.model_quality:
        parts.append(f"<h2>Model quality</h2>{_model_quality(report.model_quality)}")
    if report.estimated_performance:
        parts.append(
            f"<h2>Estimated performance (no labels needed)</h2>{_estimated(report.estimated_performance)}"
        )
    if report.ab:
        parts.append(f"<h2>A/B readout</h2>{_ab_table(report.ab)}")
    if report.notes or report.corrupt_objects:
        notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
        notes += "".join(f"<li>unreadable: {_e(k)}</li>" for k in report.corrupt_objects)
        parts.append(f"<h2>Notes</h2><ul>{notes}</ul>")
    parts.append("</body></html>")
    return "".join(parts)
