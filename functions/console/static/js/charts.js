// Charts as hand-written SVG: a line chart with interval bands, an explanation waterfall,
// horizontal bars and a heatmap. Each is an <svg role="img"> with a title and description, and
// each caller also shows its numbers as a table, so nothing is conveyed by the picture alone.

import { formatNumber, formatTime, h, s, uid } from "./dom.js";

// Colour-blind-safe (Okabe-Ito) series colours, all at least 3:1 against white.
export const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#7a6a00", "#56b4e9", "#000000"];
const POSITIVE = "#b3261e";
const NEGATIVE = "#0b57d0";
const AXIS = "#5f6368";

function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= raw) ?? raw;
  const ticks = [];
  for (let value = Math.floor(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/** A tick label for a time: the date and minute, or the time with seconds when runs are close. */
function timeTick(ms, rangeMs) {
  const text = formatTime(new Date(ms).toISOString());
  return rangeMs < 3 * 3600e3 ? text.slice(11, 19).replace(/Z$/, "") : text.slice(5, 16);
}

function frame(width, height, title, description) {
  const titleId = uid("chart-title");
  const descId = uid("chart-desc");
  const svg = s(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": titleId,
      "aria-describedby": descId,
      class: "chart",
      preserveAspectRatio: "xMinYMin meet",
    },
    s("title", { id: titleId }, title),
    s("desc", { id: descId }, description || title),
  );
  return svg;
}

/**
 * A line chart over time. `series`: [{name, points: [{x: Date|ISO, y, low?, high?}]}].
 * Options: yLabel, yMin, yMax, thresholds: [{y, label}], percent (format y as %).
 */
export function lineChart({ title, description, series, yLabel = "", yMin, yMax, thresholds = [], percent = false }) {
  const width = 720;
  const height = 260;
  const margin = { top: 16, right: 150, bottom: 40, left: 64 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const all = series.flatMap((item) => item.points.map((p) => ({ ...p, x: new Date(p.x).getTime() })));
  const svg = frame(width, height, title, description);
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, "No runs yet"));
    return svg;
  }
  const xs = all.map((p) => p.x);
  const ys = all.flatMap((p) => [p.y, p.low, p.high]).filter((v) => Number.isFinite(v));
  ys.push(...thresholds.map((t) => t.y));
  let xMin = Math.min(...xs);
  let xMax = Math.max(...xs);
  if (xMin === xMax) {
    xMin -= 3600e3;
    xMax += 3600e3;
  }
  const ticks = niceTicks(yMin ?? Math.min(...ys), yMax ?? Math.max(...ys));
  const lo = yMin ?? ticks[0];
  const hi = yMax ?? ticks[ticks.length - 1];
  const x = (value) => margin.left + ((value - xMin) / (xMax - xMin)) * innerW;
  const y = (value) => margin.top + innerH - ((value - lo) / (hi - lo || 1)) * innerH;
  const fmt = (value) => (percent ? `${formatNumber(value * 100, 3)}%` : formatNumber(value, 3));
  const axes = s("g", { class: "axes" });
  for (const tick of ticks.filter((t) => t >= lo && t <= hi)) {
    axes.append(
      s("line", { x1: margin.left, x2: margin.left + innerW, y1: y(tick), y2: y(tick), class: "grid" }),
      s("text", { x: margin.left - 8, y: y(tick) + 4, "text-anchor": "end" }, fmt(tick)),
    );
  }
  const xTicks = 4;
  for (let i = 0; i <= xTicks; i += 1) {
    const value = xMin + ((xMax - xMin) * i) / xTicks;
    axes.append(
      s("line", { x1: x(value), x2: x(value), y1: margin.top + innerH, y2: margin.top + innerH + 5, stroke: AXIS }),
      s("text", { x: x(value), y: margin.top + innerH + 18, "text-anchor": "middle" }, timeTick(value, xMax - xMin)),
    );
  }
  axes.append(
    s("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + innerH, stroke: AXIS }),
    s("line", { x1: margin.left, x2: margin.left + innerW, y1: margin.top + innerH, y2: margin.top + innerH, stroke: AXIS }),
    s("text", { x: margin.left + innerW / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, "run time (UTC)"),
    s("text", { x: 14, y: margin.top + innerH / 2, "text-anchor": "middle", class: "axis-label", transform: `rotate(-90 14 ${margin.top + innerH / 2})` }, yLabel),
  );
  svg.append(axes);
  for (const threshold of thresholds) {
    svg.append(
      s("line", { x1: margin.left, x2: margin.left + innerW, y1: y(threshold.y), y2: y(threshold.y), class: "threshold" }),
      s("text", { x: margin.left + innerW + 6, y: y(threshold.y) + 4, class: "threshold-label" }, threshold.label),
    );
  }
  series.forEach((item, index) => {
    const colour = item.colour || PALETTE[index % PALETTE.length];
    const points = item.points
      .map((p) => ({ ...p, x: new Date(p.x).getTime() }))
      .filter((p) => Number.isFinite(p.y))
      .sort((a, b) => a.x - b.x);
    const banded = points.filter((p) => Number.isFinite(p.low) && Number.isFinite(p.high));
    if (banded.length > 1) {
      const upper = banded.map((p) => `${x(p.x)},${y(p.high)}`);
      const lower = banded.map((p) => `${x(p.x)},${y(p.low)}`).reverse();
      svg.append(s("polygon", { points: [...upper, ...lower].join(" "), fill: colour, "fill-opacity": "0.15" }));
    }
    for (const p of banded) {
      svg.append(s("line", { x1: x(p.x), x2: x(p.x), y1: y(p.low), y2: y(p.high), stroke: colour, "stroke-width": 1.5 }));
    }
    if (points.length > 1) {
      svg.append(s("polyline", { points: points.map((p) => `${x(p.x)},${y(p.y)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    }
    for (const p of points) {
      const label = `${item.name} ${formatTime(new Date(p.x).toISOString())}: ${fmt(p.y)}${banded.includes(p) ? ` (95% ${fmt(p.low)} – ${fmt(p.high)})` : ""}`;
      svg.append(s("circle", { cx: x(p.x), cy: y(p.y), r: 3.5, fill: colour }, s("title", {}, label)));
    }
    const last = points[points.length - 1];
    if (last) {
      svg.append(s("text", { x: margin.left + innerW + 6, y: y(last.y) + 4 + index * 0, fill: colour, class: "series-label" }, item.name));
    }
  });
  return svg;
}

/**
 * The explanation waterfall: from `baseline`, each feature's attribution (largest magnitude
 * first) moves the running total until it reaches `value`. Attributions beyond `limit` are
 * summed into one "N other features" step so the chart stays readable.
 */
export function waterfall({ title, description, baseline, value, attributions, limit = 12, format = (v) => formatNumber(v, 3) }) {
  const entries = Object.entries(attributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const shown = entries.slice(0, limit);
  const rest = entries.slice(limit);
  if (rest.length) shown.push([`${rest.length} other features`, rest.reduce((sum, [, v]) => sum + v, 0)]);
  const rowH = 26;
  const width = 720;
  const margin = { top: 12, right: 90, bottom: 36, left: 200 };
  const rows = shown.length + 2;
  const height = margin.top + rows * rowH + margin.bottom;
  const innerW = width - margin.left - margin.right;
  let running = baseline;
  const steps = shown.map(([name, delta]) => {
    const start = running;
    running += delta;
    return { name, delta, start, end: running };
  });
  const extent = [baseline, value, ...steps.flatMap((step) => [step.start, step.end])];
  const ticks = niceTicks(Math.min(...extent), Math.max(...extent), 6);
  const lo = ticks[0];
  const hi = ticks[ticks.length - 1];
  const x = (v) => margin.left + ((v - lo) / (hi - lo || 1)) * innerW;
  const svg = frame(width, height, title, description);
  const axisY = margin.top + rows * rowH;
  for (const tick of ticks) {
    svg.append(
      s("line", { x1: x(tick), x2: x(tick), y1: margin.top, y2: axisY, class: "grid" }),
      s("text", { x: x(tick), y: axisY + 16, "text-anchor": "middle", class: "tick" }, format(tick)),
    );
  }
  const barRow = (index, label, from, to, colour, text, bold = false) => {
    const top = margin.top + index * rowH;
    const left = Math.min(x(from), x(to));
    const barWidth = Math.max(Math.abs(x(to) - x(from)), 1.5);
    svg.append(
      s("text", { x: margin.left - 8, y: top + rowH / 2 + 4, "text-anchor": "end", class: bold ? "bar-label strong" : "bar-label" }, label.length > 28 ? `${label.slice(0, 27)}…` : label, s("title", {}, label)),
      s("rect", { x: left, y: top + 4, width: barWidth, height: rowH - 8, fill: colour, rx: 2 }, s("title", {}, `${label}: ${text}`)),
      s("text", { x: Math.max(x(from), x(to)) + 6, y: top + rowH / 2 + 4, class: "bar-value" }, text),
    );
  };
  barRow(0, "baseline (expected output)", lo <= 0 && hi >= 0 ? 0 : lo, baseline, "#80868b", format(baseline), true);
  steps.forEach((step, index) => {
    barRow(index + 1, step.name, step.start, step.end, step.delta >= 0 ? POSITIVE : NEGATIVE, `${step.delta >= 0 ? "+" : "−"}${format(Math.abs(step.delta))}`);
    if (index + 1 < rows - 1) {
      const top = margin.top + (index + 1) * rowH;
      svg.append(s("line", { x1: x(step.end), x2: x(step.end), y1: top + rowH - 4, y2: top + rowH + 4, class: "connector" }));
    }
  });
  barRow(rows - 1, "prediction (value)", lo <= 0 && hi >= 0 ? 0 : lo, value, "#3c4043", format(value), true);
  return svg;
}

/** Horizontal bars: `items` [{label, value}], values in [0, max]. */
export function bars({ title, description, items, max = 1, format = (v) => formatNumber(v, 3), highlight }) {
  const rowH = 24;
  const width = 520;
  const margin = { top: 6, right: 70, bottom: 6, left: 150 };
  const height = margin.top + items.length * rowH + margin.bottom;
  const innerW = width - margin.left - margin.right;
  const svg = frame(width, height, title, description);
  items.forEach((item, index) => {
    const top = margin.top + index * rowH;
    const w = Math.max((Math.min(Math.max(item.value, 0), max) / (max || 1)) * innerW, 1);
    const colour = item.label === highlight ? POSITIVE : PALETTE[0];
    svg.append(
      s("text", { x: margin.left - 8, y: top + rowH / 2 + 4, "text-anchor": "end", class: "bar-label" }, item.label),
      s("rect", { x: margin.left, y: top + 4, width: innerW, height: rowH - 8, fill: "#eef1f4", rx: 2 }),
      s("rect", { x: margin.left, y: top + 4, width: w, height: rowH - 8, fill: colour, rx: 2 }, s("title", {}, `${item.label}: ${format(item.value)}`)),
      s("text", { x: margin.left + innerW + 6, y: top + rowH / 2 + 4, class: "bar-value" }, format(item.value)),
    );
  });
  return svg;
}

/**
 * A heatmap of rows (features) by columns (runs): cell value in [0, max], darker is larger;
 * `marked(row, col)` draws an outline (e.g. drifted).
 */
export function heatmap({ title, description, rows, columns, value, max = 0.5, marked = () => false, format = (v) => formatNumber(v, 3) }) {
  const cell = Math.max(8, Math.min(56, Math.floor(520 / Math.max(columns.length, 1))));
  const rowH = 20;
  const margin = { top: 10, right: 20, bottom: 44, left: 170 };
  const width = margin.left + columns.length * cell + margin.right;
  const height = margin.top + rows.length * rowH + margin.bottom;
  const svg = frame(Math.max(width, 420), height, title, description);
  // Never scaled up past its natural size (CSSOM, allowed by the style policy): text stays 11px.
  svg.style.maxWidth = `${Math.max(width, 420)}px`;
  rows.forEach((row, r) => {
    const top = margin.top + r * rowH;
    svg.append(s("text", { x: margin.left - 8, y: top + rowH / 2 + 4, "text-anchor": "end", class: "bar-label" }, row.length > 24 ? `${row.slice(0, 23)}…` : row, s("title", {}, row)));
    columns.forEach((column, c) => {
      const v = value(row, column);
      const left = margin.left + c * cell;
      if (!Number.isFinite(v)) {
        svg.append(s("rect", { x: left + 1, y: top + 1, width: cell - 2, height: rowH - 2, fill: "#f1f3f4" }, s("title", {}, `${row} at ${formatTime(column)}: no value`)));
        return;
      }
      const t = Math.min(Math.max(v / (max || 1), 0), 1);
      const lightness = 96 - t * 60;
      svg.append(
        s(
          "rect",
          {
            x: left + 1,
            y: top + 1,
            width: cell - 2,
            height: rowH - 2,
            fill: `hsl(22 90% ${lightness}%)`,
            stroke: marked(row, column) ? "#202124" : "none",
            "stroke-width": marked(row, column) ? 2 : 0,
          },
          s("title", {}, `${row} at ${formatTime(column)}: ${format(v)}${marked(row, column) ? " (drifted)" : ""}`),
        ),
      );
    });
  });
  const axisY = margin.top + rows.length * rowH + 14;
  if (columns.length) {
    const first = new Date(columns[0]).getTime();
    const last = new Date(columns[columns.length - 1]).getTime();
    svg.append(s("text", { x: margin.left, y: axisY, class: "tick" }, timeTick(first, last - first)));
    if (columns.length > 2) {
      svg.append(s("text", { x: margin.left + columns.length * cell, y: axisY, "text-anchor": "end", class: "tick" }, timeTick(last, last - first)));
    }
    svg.append(s("text", { x: margin.left, y: axisY + 18, class: "axis-label" }, "runs, oldest to newest (outlined: drifted)"));
  }
  return svg;
}

/** A labelled progress bar (the native element: announced by screen readers). */
export function progress(label, done, total) {
  const id = uid("progress");
  const share = total ? done / total : 0;
  return h(
    "div",
    { class: "progress-row" },
    h("label", { for: id }, label),
    h("progress", { id, max: String(Math.max(total, 1)), value: String(Math.min(done, Math.max(total, 1))) }),
    h("span", { class: "progress-text" }, `${done} / ${total} (${Math.round(share * 100)}%)`),
  );
}
