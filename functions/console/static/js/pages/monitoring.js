// Monitoring: the latest status of every production model, and per model the trends across
// runs (drift share, per-feature drift, model quality with intervals, performance estimated
// without labels), the latest alerts and findings, and the run's own HTML report.

import { api, isAbort } from "../api.js";
import { heatmap, lineChart } from "../charts.js";
import { add, badge, definitions, formatNumber, formatPercent, h, notice, replace, route, section, statusBadge, table, time } from "../dom.js";
import { describeError } from "../forms.js";
import { eachLimited } from "./catalog.js";
import { modelPath } from "./model.js";

const HISTORY_LIMIT = 100;

// ---------------------------------------------------------------- overview

async function overview(ctx) {
  ctx.setTitle("Monitoring");
  add(ctx.root, h("h1", {}, "Monitoring"), h("p", { class: "lede" }, "Every production model's latest monitoring run. Runs are scheduled; open a model for its trends."));
  const models = [];
  let token;
  do {
    const page = await api("/models", { query: { limit: 100, next_token: token, stage: "production" }, signal: ctx.signal });
    models.push(...(page.models || []).filter((m) => m.aliases?.production));
    token = page.next_token;
  } while (token && models.length < 500);
  const cells = new Map();
  const cell = (model, kind) => {
    const element = h("span", { class: "muted" }, "loading…");
    cells.set(`${model.name}:${kind}`, element);
    return element;
  };
  add(ctx.root, 
    table(
      [
        { label: "Model", value: (m) => h("a", { href: route("monitoring", m.name) }, m.name) },
        { label: "Production", value: (m) => `v${m.aliases.production}` },
        { label: "Status", value: (m) => cell(m, "status") },
        { label: "Last run", value: (m) => cell(m, "at") },
        { label: "Rows", numeric: true, value: (m) => cell(m, "rows") },
        { label: "Drift share", numeric: true, value: (m) => cell(m, "drift") },
        { label: "Alerts sent", numeric: true, value: (m) => cell(m, "alerts") },
      ],
      models,
      { caption: "Production models", empty: "No model is in production: nothing is monitored yet." },
    ),
  );
  await eachLimited(models, 4, async (m) => {
    const set = (kind, ...content) => replace(cells.get(`${m.name}:${kind}`), ...content);
    try {
      const view = await api(`${modelPath(m.name)}/monitoring`, { query: { limit: 1 }, signal: ctx.signal });
      const run = (view.history || [])[0];
      if (!run) {
        set("status", h("span", { class: "muted" }, "no runs yet"));
        for (const kind of ["at", "rows", "drift", "alerts"]) set(kind, "–");
        return;
      }
      set("status", statusBadge(run.status));
      set("at", time(run.at));
      set("rows", formatNumber(run.rows));
      set("drift", formatPercent(run.drift_share));
      set("alerts", String(run.alerts_sent ?? 0));
    } catch (error) {
      if (isAbort(error)) return;
      set("status", h("span", { class: "muted" }, describeError(error)));
    }
  });
}

// ---------------------------------------------------------------- one model

function intervalOf(metric) {
  if (!metric || typeof metric !== "object") return "";
  return Number.isFinite(metric.low) && Number.isFinite(metric.high) ? `${formatNumber(metric.low)} – ${formatNumber(metric.high)}` : "–";
}

function metricTable(metrics, caption, { realised = false } = {}) {
  const rows = Object.entries(metrics || {});
  const columns = [
    { label: "Metric", value: ([name]) => name },
    { label: "Value", numeric: true, value: ([, m]) => formatNumber(typeof m === "object" ? m.value : m) },
    { label: "95% interval", numeric: true, value: ([, m]) => intervalOf(m) },
    { label: "Reference", numeric: true, value: ([, m]) => formatNumber(m?.reference ?? m?.registered) },
    { label: "Adjusted p", numeric: true, value: ([, m]) => formatNumber(m?.p_value_adjusted) },
    { label: "Verdict", value: ([, m]) => (m?.degraded ? badge("degraded", "bad") : badge("ok", "ok")), header: false },
  ];
  if (realised) {
    columns.splice(4, 0, { label: "Realised (labelled rows)", numeric: true, value: ([, m]) => formatNumber(m?.realised) }, { label: "Estimate's error", numeric: true, value: ([, m]) => formatNumber(m?.error) });
  }
  return table(columns, rows, { caption, empty: "None in the latest run." });
}

function seriesFrom(runs, field) {
  const names = [...new Set(runs.flatMap((run) => Object.keys(run[field] || {})))].sort();
  return names.map((name) => ({
    name,
    points: runs
      .filter((run) => Number.isFinite(run[field]?.[name]))
      .map((run) => {
        const interval = run[`${field}_intervals`]?.[name] || run.intervals?.[name];
        return { x: run.at, y: run[field][name], low: interval?.[0] ?? interval?.low, high: interval?.[1] ?? interval?.high };
      }),
  }));
}

function reportFrame(ctx, name) {
  const holder = h("div", { class: "report-holder" });
  const show = h("button", { type: "button" }, "Show the HTML report");
  const download = h("button", { type: "button" }, "Download the HTML report");
  const status = h("p", { class: "form-status", role: "status" });
  let cached = null;
  const load = async () => {
    if (cached !== null) return cached;
    status.textContent = "Loading the report…";
    try {
      cached = await api(`${modelPath(name)}/monitoring`, { query: { format: "html" }, as: "text", signal: ctx.signal });
      status.textContent = "";
      return cached;
    } catch (error) {
      status.textContent = describeError(error);
      throw error;
    }
  };
  show.addEventListener("click", async () => {
    const html = await load().catch(() => null);
    if (html === null) return;
    // The report is the platform's own self-contained file (every value in it escaped by the
    // monitor). It is shown in a frame sandboxed with no permissions at all: no script runs in
    // it, it has an opaque origin (no access to this page or its session), and it cannot
    // navigate this page. It inherits this page's Content-Security-Policy too.
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "");
    frame.setAttribute("title", `${name} monitoring report`);
    frame.className = "report-frame";
    frame.srcdoc = html;
    replace(holder, frame);
    show.hidden = true;
  });
  download.addEventListener("click", async () => {
    const html = await load().catch(() => null);
    if (html === null) return;
    const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const link = h("a", { href: url, download: `${name}-monitoring-report.html` }, "report");
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });
  return section("HTML report", h("p", {}, "The latest run's full report: distributions, curves, confusion matrix, per-column summary."), h("div", { class: "actions-row" }, show, download, status), holder);
}

async function detail(ctx) {
  const name = ctx.params.name;
  ctx.setTitle(`${name} monitoring`);
  add(ctx.root, 
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, h("a", { href: "#/monitoring" }, "Monitoring"), " / ", h("span", { "aria-current": "page" }, name)),
    h("h1", {}, `Monitoring: ${name}`),
  );
  const view = await api(`${modelPath(name)}/monitoring`, { query: { limit: HISTORY_LIMIT }, signal: ctx.signal });
  const history = view.history || [];
  const latest = view.latest;
  if (!history.length) {
    add(ctx.root, notice("info", `${name} has not been monitored yet. Monitoring runs on its schedule for production models with served traffic.`), h("p", {}, h("a", { href: route("models", name) }, "Back to the model")));
    return;
  }
  const traffic = history.filter((run) => (run.source || "traffic") === "traffic").slice().reverse();
  const batchRuns = history.filter((run) => run.source === "batch");
  const threshold = latest?.feature_drift?.drift_share_threshold ?? 0.5;
  const features = [...new Set(traffic.flatMap((run) => Object.keys(run.feature_scores || {})))].sort();
  const runTimes = traffic.map((run) => run.at);
  const byTime = new Map(traffic.map((run) => [run.at, run]));
  const qualitySeries = seriesFrom(traffic, "metrics");
  const estimatedSeries = seriesFrom(traffic, "estimated");

  add(ctx.root, 
    section(
      "Latest run",
      h("p", {}, statusBadge(latest?.status || history[0].status), " ", latest?.reason || history[0].reason || ""),
      definitions([
        ["Run at", time(history[0].at)],
        ["Version", history[0].version ? h("a", { href: route("models", name, "versions", history[0].version) }, `v${history[0].version}`) : "–"],
        ["Window", latest ? h("span", {}, time(latest.window_start), " to ", time(latest.window_end)) : null],
        ["Rows", formatNumber(history[0].rows)],
        ["Labelled rows", formatNumber(history[0].labelled)],
        ["Fallback answers (left out)", history[0].fallback_rows ? formatNumber(history[0].fallback_rows) : null],
        ["Drift share", formatPercent(history[0].drift_share)],
        ["Drifted features", (history[0].drifted_features || []).join(", ") || "none"],
        ["Alarm budget", latest?.budget ? `${latest.budget.alarms} alarms from ${latest.budget.tests} tests (Benjamini-Hochberg at q = ${latest.budget.q})` : null],
      ]),
    ),
    section(
      "Alerts",
      table(
        [
          { label: "Check", value: (a) => a.check },
          { label: "Feature", value: (a) => a.feature || "–" },
          { label: "Message", value: (a) => a.message },
          { label: "Value", numeric: true, value: (a) => formatNumber(a.value) },
          { label: "Threshold", numeric: true, value: (a) => formatNumber(a.threshold) },
          { label: "Sent", value: (a) => (a.sent ? badge("sent", "bad") : badge("within cooldown", "muted")), header: false },
        ],
        latest?.alerts || [],
        { caption: "Alerts of the latest run", empty: "The latest run raised no alert." },
      ),
      h("p", { class: "hint" }, `Alerts sent over the last ${history.length} runs: ${history.reduce((sum, run) => sum + (run.alerts_sent || 0), 0)}.`),
    ),
    section(
      "Drift share over runs",
      h(
        "figure",
        { class: "chart-figure" },
        lineChart({
          title: `${name}: share of features drifted per run`,
          description: `Latest drift share ${formatPercent(history[0].drift_share)}; dataset drift when it reaches ${formatPercent(threshold)}.`,
          series: [{ name: "drift share", points: traffic.map((run) => ({ x: run.at, y: run.drift_share ?? 0 })) }],
          yMin: 0,
          yMax: 1,
          percent: true,
          yLabel: "features drifted",
          thresholds: [{ y: threshold, label: "dataset drift" }],
        }),
      ),
    ),
    section(
      "Per-feature drift",
      features.length
        ? h(
            "figure",
            { class: "chart-figure" },
            heatmap({
              title: `${name}: drift effect size per feature and run`,
              description: "Darker cells are larger shifts (W1 over the reference standard deviation for numbers, total variation for categories); outlined cells were flagged as drifted.",
              rows: features,
              columns: runTimes,
              value: (feature, at) => byTime.get(at)?.feature_scores?.[feature],
              max: Math.max(0.2, ...traffic.flatMap((run) => Object.values(run.feature_scores || {}).filter(Number.isFinite))),
              marked: (feature, at) => (byTime.get(at)?.drifted_features || []).includes(feature),
            }),
            h("figcaption", {}, "Each column is a run, oldest on the left; hover a cell for its value."),
          )
        : h("p", { class: "muted" }, "No per-feature scores recorded yet."),
      latest?.feature_drift ? driftTable(latest.feature_drift) : null,
    ),
    section(
      "Model quality",
      qualitySeries.length
        ? h("figure", { class: "chart-figure" }, lineChart({ title: `${name}: model quality on labelled rows per run`, description: qualitySeries.map((s) => `${s.name} latest ${formatNumber(s.points[s.points.length - 1]?.y)}`).join("; "), series: qualitySeries, yLabel: "metric" }))
        : h("p", { class: "muted" }, "No run had labelled rows yet: send labels (events of type label) to measure quality."),
      latest?.model_quality ? metricTable(latest.model_quality.metrics, "Latest run: quality with 95% intervals, against the reference") : null,
    ),
    section(
      "Estimated performance (no labels needed)",
      estimatedSeries.length
        ? h("figure", { class: "chart-figure" }, lineChart({ title: `${name}: performance estimated from the model's calibrated confidence`, description: estimatedSeries.map((s) => `${s.name} latest ${formatNumber(s.points[s.points.length - 1]?.y)}`).join("; "), series: estimatedSeries, yLabel: "estimated metric" }))
        : h("p", { class: "muted" }, "No estimate yet (classifiers with probabilities and a reference with its target get one every run)."),
      latest?.estimated_performance ? metricTable(latest.estimated_performance.metrics, "Latest run: estimates with 95% intervals, and their error once labels came", { realised: true }) : null,
    ),
    latest?.data_quality
      ? section(
          "Data quality",
          table(
            [
              { label: "Check", value: (v) => v.check.replaceAll("_", " ") },
              { label: "Column", value: (v) => v.feature },
              { label: "Finding", value: (v) => v.message },
              { label: "Adjusted p", numeric: true, value: (v) => formatNumber(v.p_value_adjusted) },
            ],
            latest.data_quality.violations || [],
            { caption: "Violations in the latest run", empty: "No data-quality violation in the latest run." },
          ),
        )
      : null,
    batchRuns.length
      ? section(
          "Batch jobs monitored",
          table(
            [
              { label: "Run", value: (run) => time(run.at) },
              { label: "Job", value: (run) => (run.job_id ? h("a", { href: route("jobs", run.job_id) }, run.job_id) : "–") },
              { label: "Status", value: (run) => statusBadge(run.status), header: false },
              { label: "Rows", numeric: true, value: (run) => formatNumber(run.rows) },
              { label: "Drift share", numeric: true, value: (run) => formatPercent(run.drift_share) },
            ],
            batchRuns,
            { caption: "Monitoring runs over completed batch jobs" },
          ),
        )
      : null,
    reportFrame(ctx, name),
    section(
      "Runs",
      table(
        [
          { label: "Run", value: (run) => time(run.at) },
          { label: "Source", value: (run) => run.source || "traffic" },
          { label: "Status", value: (run) => statusBadge(run.status), header: false },
          { label: "Version", value: (run) => (run.version ? `v${run.version}` : "–") },
          { label: "Rows", numeric: true, value: (run) => formatNumber(run.rows) },
          { label: "Drift share", numeric: true, value: (run) => formatPercent(run.drift_share) },
          { label: "Quality violations", numeric: true, value: (run) => String(run.quality_violations ?? 0) },
          { label: "Alerts sent", numeric: true, value: (run) => String(run.alerts_sent ?? 0) },
        ],
        history,
        { caption: `The last ${history.length} runs, newest first` },
      ),
    ),
  );
}

function driftTable(section_) {
  const columns = (section_.columns || []).slice().sort((a, b) => Number(b.drifted) - Number(a.drifted) || (b.effect ?? b.distance ?? 0) - (a.effect ?? a.distance ?? 0));
  return table(
    [
      { label: "Feature", value: (c) => c.name },
      { label: "Test", value: (c) => c.test || c.method || "–" },
      { label: "Adjusted p", numeric: true, value: (c) => formatNumber(c.p_value_adjusted) },
      { label: "Effect", numeric: true, value: (c) => `${formatNumber(c.effect ?? c.distance)}${c.effect_measure ? ` (${c.effect_measure.replaceAll("_", " ")})` : ""}` },
      { label: "Floor", numeric: true, value: (c) => formatNumber(c.effect_floor) },
      { label: "Verdict", value: (c) => (c.drifted ? badge("drifted", "bad") : c.status === "not_enough_data" ? statusBadge(c.status) : badge("stable", "ok")), header: false },
    ],
    columns,
    { caption: "Latest run: drift per feature, drifted first" },
  );
}

export async function render(ctx) {
  if (ctx.params.name) return detail(ctx);
  return overview(ctx);
}

