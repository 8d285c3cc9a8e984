// Views several pages share: gate reports, version status, metric tables.

import { badge, formatNumber, h, statusBadge, table } from "./dom.js";

/** A version's status; versions registered before statuses existed are READY. */
export function versionStatus(version) {
  return version?.status || "READY";
}

export function isReady(version) {
  return versionStatus(version) === "READY";
}

/** The status badge with the failure reason beside it, when there is one. */
export function statusWithReason(version) {
  const status = versionStatus(version);
  const failure = version?.failure;
  return h(
    "span",
    { class: "status" },
    statusBadge(status),
    failure ? h("span", { class: "failure" }, ` ${failure.code}: ${failure.message}`) : null,
  );
}

/**
 * The production gate's report: `{passed, checks: [{name, passed, message}]}`, or a list of
 * per-target reports `[{target, version, passed, checks}]` (split and shadow targets).
 */
export function gateReport(report, title = "Production gate") {
  if (!report) return null;
  const reports = Array.isArray(report) ? report : Array.isArray(report.targets) ? report.targets : [report];
  return h(
    "div",
    { class: "gate-report" },
    reports.map((item) =>
      h(
        "div",
        { class: "gate" },
        h(
          "h3",
          {},
          item.target ? `${title}: ${item.target}${item.version ? ` (v${item.version})` : ""} ` : `${title} `,
          item.passed ? badge("passed", "ok") : badge("failed", "bad"),
        ),
        table(
          [
            { label: "Check", value: (c) => c.name.replaceAll("_", " ") },
            { label: "Result", value: (c) => (c.passed ? badge("passed", "ok") : badge("failed", "bad")), header: false },
            { label: "Detail", value: (c) => c.message },
          ],
          item.checks || [],
          { caption: "Gate checks" },
        ),
      ),
    ),
  );
}

/** The gate report inside an API error (422 gate_failed), whatever shape the details take. */
export function gateFromError(error) {
  const details = error?.details;
  if (!details) return null;
  if (Array.isArray(details) && details.every((item) => item && Array.isArray(item.checks))) return details;
  if (Array.isArray(details?.checks)) return details;
  if (Array.isArray(details?.gates)) return details.gates;
  if (Array.isArray(details?.targets)) return details.targets;
  if (details?.gate) return details.gate;
  return null;
}

/** A metrics table, with the interval when the value has one (`{value, low, high}`). */
export function metricsTable(metrics, caption = "Metrics") {
  const rows = Object.entries(metrics || {}).map(([name, value]) => ({ name, value }));
  return table(
    [
      { label: "Metric", value: (r) => r.name },
      {
        label: "Value",
        numeric: true,
        value: (r) =>
          r.value && typeof r.value === "object"
            ? `${formatNumber(r.value.value)}${Number.isFinite(r.value.low) ? ` (95% ${formatNumber(r.value.low)} – ${formatNumber(r.value.high)})` : ""}`
            : formatNumber(r.value),
      },
    ],
    rows,
    { caption, empty: "No metrics recorded." },
  );
}

/** `{key: value}` as a two-column table; object values as compact JSON text. */
export function keyValueTable(values, caption, empty = "None.") {
  return table(
    [
      { label: "Name", value: (r) => r[0] },
      { label: "Value", value: (r) => (r[1] !== null && typeof r[1] === "object" ? JSON.stringify(r[1]) : String(r[1])) },
    ],
    Object.entries(values || {}),
    { caption, empty },
  );
}
