// Catalog: every model, searchable by name and filtered by tag, owner and stage, each with its
// live version, that version's latest metrics and the latest monitoring status.

import { api, isAbort } from "../api.js";
import { add, badge, formatNumber, h, replace, route, routeWithQuery, statusBadge, table, time } from "../dom.js";
import { field, form, input, select } from "../forms.js";

const PAGE_SIZE = 20;
const DETAIL_CONCURRENCY = 4;
const STAGES = [["", "any stage"], ["production", "production"], ["staging", "staging"]];

export function liveVersion(model) {
  const aliases = model.aliases || {};
  return aliases.production ?? null;
}

/** Run `task` over `items`, at most `limit` at a time (the API throttles per key). */
export async function eachLimited(items, limit, task) {
  const queue = [...items];
  const workers = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) await task(queue.shift());
  });
  await Promise.all(workers);
}

function metricsSummary(metrics) {
  const entries = Object.entries(metrics || {}).slice(0, 3);
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h(
    "ul",
    { class: "inline-list" },
    entries.map(([name, value]) => h("li", {}, h("span", { class: "metric-name" }, name), " ", formatNumber(value, 3))),
  );
}

function tags(model) {
  const entries = Object.entries(model.tags || {});
  if (!entries.length) return h("span", { class: "muted" }, "–");
  return h("ul", { class: "inline-list" }, entries.map(([key, value]) => h("li", {}, badge(`${key}:${value}`, "muted"))));
}

export async function render(ctx) {
  ctx.setTitle("Catalog");
  const query = ctx.query;
  const fields = {
    name: field("Name contains", input({ value: query.name || "", maxlength: "63", type: "search" }), { name: "name" }),
    tag: field("Tag", input({ value: query.tag || "", maxlength: "400", placeholder: "team:growth" }), { name: "tag", hint: "key:value" }),
    owner: field("Owner", input({ value: query.owner || "", maxlength: "128" }), { name: "owner" }),
    stage: field("Stage", select(STAGES, { value: query.stage || "" }), { name: "stage" }),
  };
  fields.stage.control.value = query.stage || "";
  const filters = form({
    label: "Filter models",
    fields,
    submitLabel: "Filter",
    className: "filters",
    validate: (values) => {
      const problems = {};
      if (values.name && !/^[a-z0-9_-]+$/.test(values.name.toLowerCase())) problems.name = "Model names hold only a-z, 0-9, '-' and '_'.";
      if (values.tag && !/^[^:]+:.*$/.test(values.tag)) problems.tag = "Write a tag filter as key:value.";
      return problems;
    },
    submit: async (values) => {
      ctx.navigate(routeWithQuery([], { ...values, name: values.name.toLowerCase() }));
    },
  });
  const results = h("div", { class: "results", "aria-live": "polite" });
  add(ctx.root, 
    h("h1", {}, "Model catalog"),
    h("p", { class: "lede" }, "Registered models, where production points, their metrics and monitoring."),
    filters.form,
    results,
  );
  const page = await api("/models", {
    query: { limit: PAGE_SIZE, next_token: query.next_token, name: query.name, tag: query.tag, owner: query.owner, stage: query.stage },
    signal: ctx.signal,
  });
  const models = page.models || [];
  const cells = new Map();
  const columns = [
    { label: "Model", value: (m) => h("a", { href: route("models", m.name) }, m.name) },
    { label: "Description", value: (m) => m.description || h("span", { class: "muted" }, "–") },
    { label: "Owner", value: (m) => m.owner || "–" },
    { label: "Tags", value: tags },
    {
      label: "Stages",
      value: (m) => {
        const aliases = Object.entries(m.aliases || {});
        if (!aliases.length) return h("span", { class: "muted" }, "none");
        return h("ul", { class: "inline-list" }, aliases.map(([alias, v]) => h("li", {}, badge(`${alias}: v${v}`, alias === "production" ? "ok" : "info"))));
      },
    },
    { label: "Live version", value: (m) => (liveVersion(m) ? h("a", { href: route("models", m.name, "versions", liveVersion(m)) }, `v${liveVersion(m)}`) : h("span", { class: "muted" }, "not live")) },
    { label: "Latest metrics", value: (m) => cell(cells, m.name, "metrics") },
    { label: "Monitoring", value: (m) => cell(cells, m.name, "monitoring") },
  ];
  const pager = h("nav", { class: "pager", "aria-label": "Catalog pages" });
  if (query.next_token) pager.append(h("a", { href: routeWithQuery([], { ...query, next_token: undefined }) }, "First page"));
  if (page.next_token) pager.append(h("a", { href: routeWithQuery([], { ...query, next_token: page.next_token }), rel: "next" }, "Next page"));
  const anyFilter = query.name || query.tag || query.owner || query.stage;
  replace(
    results,
    h("p", { class: "count" }, `${models.length} model${models.length === 1 ? "" : "s"}${anyFilter ? " matching the filters" : ""}${page.next_token ? " on this page" : ""}.`),
    table(columns, models, { caption: "Models", empty: anyFilter ? "No model matches these filters." : "No model is registered yet." }),
    pager,
  );
  // Per-model details: the live (else latest) version's metrics and the latest monitoring run.
  eachLimited(models, DETAIL_CONCURRENCY, async (m) => {
    const versionRef = liveVersion(m) ?? (m.latest_version || null);
    const metricsCell = cells.get(`${m.name}:metrics`);
    const monitoringCell = cells.get(`${m.name}:monitoring`);
    try {
      if (versionRef) {
        const v = await api(`/models/${encodeURIComponent(m.name)}/versions/${versionRef}`, { signal: ctx.signal });
        replace(metricsCell, h("span", { class: "muted small" }, `v${versionRef} `), metricsSummary(v.metrics));
      } else replace(metricsCell, h("span", { class: "muted" }, "no version"));
    } catch (error) {
      if (isAbort(error)) return;
      replace(metricsCell, h("span", { class: "muted" }, `unavailable (${error.code || error.message})`));
    }
    try {
      const view = await api(`/models/${encodeURIComponent(m.name)}/monitoring`, { query: { limit: 1 }, signal: ctx.signal });
      const latest = view.latest || (view.history || [])[0];
      replace(
        monitoringCell,
        latest ? h("a", { href: route("monitoring", m.name) }, statusBadge(latest.status), " ", time(latest.at)) : h("span", { class: "muted" }, "no runs yet"),
      );
    } catch (error) {
      if (isAbort(error)) return;
      replace(monitoringCell, h("span", { class: "muted" }, error.status === 404 ? "no runs yet" : `unavailable (${error.code || error.message})`));
    }
  }).catch(() => {});
}

function cell(cells, name, kind) {
  const element = h("span", { class: "muted" }, "loading…");
  cells.set(`${name}:${kind}`, element);
  return element;
}
