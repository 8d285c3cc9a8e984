// Model: its versions (status, metrics), aliases, the endpoint (variants and weights, shadow,
// rules), the history timeline with "what was in production at T", and, for registry:write
// keys only, promote / split / rollback with the production gate's report.

import { ApiError, api } from "../api.js";
import { add, badge, definitions, formatNumber, h, jsonBlock, notice, replace, route, routeWithQuery, section, table, time } from "../dom.js";
import { describeError, field, form, input, select, setFieldError } from "../forms.js";
import { gateFromError, gateReport, isReady, statusWithReason } from "../views.js";

const ALIAS_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;
const VARIANT_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;
const HISTORY_PAGE = 20;

export const modelPath = (name) => `/models/${encodeURIComponent(name)}`;

/** Every version of a model (newest first), following next_token. */
export async function allVersions(name, signal, cap = 500) {
  const versions = [];
  let token;
  do {
    const page = await api(`${modelPath(name)}/versions`, { query: { limit: 100, next_token: token }, signal });
    versions.push(...(page.versions || []));
    token = page.next_token;
  } while (token && versions.length < cap);
  return versions;
}

/** The endpoint config and its revision (ETag), or null when the model has none. */
export async function endpointOf(name, signal) {
  try {
    const response = await api(`${modelPath(name)}/endpoint`, { signal, as: "response" });
    const config = await response.json();
    return { config, etag: response.headers.get("ETag") };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.code === "no_endpoint_config") return null;
    throw error;
  }
}

function aliasesOf(model) {
  return Object.entries(model.aliases || {}).sort(([a], [b]) => (a === "production" ? -1 : b === "production" ? 1 : a.localeCompare(b)));
}

export async function render(ctx) {
  const name = ctx.params.name;
  ctx.setTitle(name);
  const [model, versions, endpoint] = await Promise.all([
    api(modelPath(name), { signal: ctx.signal }),
    allVersions(name, ctx.signal),
    endpointOf(name, ctx.signal),
  ]);
  const writer = ctx.can("registry:write");
  const reload = () => ctx.navigate(window.location.hash);
  add(ctx.root, 
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, h("a", { href: "#/" }, "Catalog"), " / ", h("span", { "aria-current": "page" }, name)),
    h("h1", {}, name),
    h("p", { class: "lede" }, model.description || h("span", { class: "muted" }, "No description.")),
    definitions([
      ["Owner", model.owner || "–"],
      ["Tags", Object.keys(model.tags || {}).length ? h("ul", { class: "inline-list" }, Object.entries(model.tags).map(([k, v]) => h("li", {}, badge(`${k}:${v}`, "muted")))) : "–"],
      ["Created", time(model.created_at)],
      ["Updated", time(model.updated_at)],
      ["Latest version", model.latest_version ? `v${model.latest_version}` : "none"],
      ["Production needs", model.require_evaluation ? "the gate and a completed human evaluation of the version" : "the gate"],
    ]),
    writer ? evaluationSetting(ctx, name, model, reload) : null,
    h(
      "ul",
      { class: "actions-row" },
      ctx.can("predict") ? h("li", {}, h("a", { class: "button", href: route("try", name) }, "Try it")) : null,
      h("li", {}, h("a", { class: "button", href: route("monitoring", name) }, "Monitoring")),
      ctx.can("predict") ? h("li", {}, h("a", { class: "button", href: routeWithQuery(["jobs"], { model: name }) }, "Batch jobs")) : null,
      ctx.can(["evaluate", "registry:write"]) ? h("li", {}, h("a", { class: "button", href: routeWithQuery(["evaluations"], { model: name }) }, "Evaluations")) : null,
    ),
    aliasSection(ctx, name, model, versions, writer, reload),
    versionsSection(ctx, name, model, versions),
    endpointSection(ctx, name, model, versions, endpoint, writer, reload),
    historySection(ctx, name, model),
  );
}

// ---------------------------------------------------------------- aliases, promote, rollback

function aliasSection(ctx, name, model, versions, writer, reload) {
  const aliases = aliasesOf(model);
  const body = [
    table(
      [
        { label: "Alias", value: ([alias]) => alias },
        { label: "Version", value: ([, v]) => h("a", { href: route("models", name, "versions", v) }, `v${v}`) },
      ],
      aliases,
      { caption: "Aliases", empty: "No alias points at a version yet: predict has nothing to serve." },
    ),
  ];
  if (writer) {
    body.push(promoteForm(ctx, name, model, versions, reload));
    if (aliases.length) body.push(rollbackForm(ctx, name, model, reload));
  }
  return section("Aliases", ...body);
}

function promoteForm(ctx, name, model, versions, reload) {
  const ready = versions.filter(isReady);
  const result = h("div", { class: "result", "aria-live": "polite" });
  const fields = {
    version: field("Version", select(ready.map((v) => [String(v.version), `v${v.version}`])), { name: "version" }),
    alias: field("Alias", input({ value: "production", maxlength: "32" }), { name: "alias", hint: "production runs the gate: integrity, loads, smoke cases, signature compatible with the live version." }),
    reason: field("Reason", input({ maxlength: "1000" }), { name: "reason", hint: "Recorded in the history (needed to force)." }),
    force: field("Force past a failing gate", h("input", { type: "checkbox" }), { name: "force" }),
  };
  const promote = form({
    label: "Move an alias",
    fields,
    submitLabel: "Move alias",
    validate: (values) => {
      const problems = {};
      if (!ready.length) problems.version = "No version is READY: only READY versions can get an alias.";
      if (!ALIAS_PATTERN.test(values.alias)) problems.alias = "An alias is lower-case letters, digits, '-' or '_', starting with a letter (32 at most).";
      if (values.force && !values.reason) problems.reason = "Forcing needs a reason.";
      return problems;
    },
    submit: async (values) => {
      replace(result);
      const body = { version: Number(values.version), force: values.force };
      if (values.reason) body.reason = values.reason;
      try {
        const moved = await api(`${modelPath(name)}/aliases/${encodeURIComponent(values.alias)}`, { method: "PUT", body, signal: ctx.signal });
        replace(
          result,
          notice("ok", `${moved.alias} now points at v${moved.version}${moved.previous_version ? ` (was v${moved.previous_version})` : ""}${moved.forced ? ", forced past the gate" : ""}.`),
          gateReport(moved.gate),
          h("p", {}, h("a", { href: window.location.hash, on: { click: (e) => { e.preventDefault(); reload(); } } }, "Refresh the page")),
        );
        ctx.announce(`Alias ${moved.alias} moved to v${moved.version}`);
      } catch (error) {
        const report = gateFromError(error);
        if (report) replace(result, gateReport(report));
        throw error;
      }
    },
    extra: [],
  });
  if (model.aliases?.production) fields.version.control.value = String(ready[0]?.version ?? "");
  return h("div", { class: "subpanel" }, h("h3", {}, "Promote"), promote.form, result);
}

function rollbackForm(ctx, name, model, reload) {
  const result = h("div", { class: "result", "aria-live": "polite" });
  const fields = {
    alias: field("Alias", select(aliasesOf(model).map(([alias, v]) => [alias, `${alias} (v${v})`])), { name: "alias" }),
    reason: field("Reason", input({ maxlength: "1000" }), { name: "reason" }),
  };
  const rollback = form({
    label: "Roll back an alias",
    fields,
    submitLabel: "Roll back",
    submit: async (values) => {
      const body = { alias: values.alias };
      if (values.reason) body.reason = values.reason;
      const moved = await api(`${modelPath(name)}/rollback`, { method: "POST", body, signal: ctx.signal });
      replace(
        result,
        notice("ok", `${moved.alias} rolled back to v${moved.version} (was v${moved.previous_version}).`),
        h("p", {}, h("a", { href: window.location.hash, on: { click: (e) => { e.preventDefault(); reload(); } } }, "Refresh the page")),
      );
      ctx.announce(`Alias ${moved.alias} rolled back to v${moved.version}`);
    },
  });
  return h("div", { class: "subpanel" }, h("h3", {}, "Roll back"), h("p", { class: "hint" }, "Moves the alias back to the version it pointed at before (no gate: it served before)."), rollback.form, result);
}

// ---------------------------------------------------------------- versions and compare

function versionsSection(ctx, name, model, versions) {
  const pointing = {};
  for (const [alias, v] of Object.entries(model.aliases || {})) (pointing[v] ||= []).push(alias);
  const chosen = new Set();
  const compareButton = h("button", { type: "button", disabled: true }, "Compare the two selected versions");
  const compareHint = h("p", { class: "hint", id: "compare-hint" }, "Select two versions to compare them side by side.");
  compareButton.setAttribute("aria-describedby", "compare-hint");
  const update = () => {
    compareButton.disabled = chosen.size !== 2;
    compareHint.textContent = chosen.size === 2 ? `Ready to compare v${[...chosen].join(" and v")}.` : "Select two versions to compare them side by side.";
  };
  compareButton.addEventListener("click", () => {
    const [a, b] = [...chosen].sort((x, y) => x - y);
    ctx.navigate(routeWithQuery(["models", name, "compare"], { a, b }));
  });
  const checkbox = (v) => {
    const box = h("input", { type: "checkbox", "aria-label": `Select v${v.version} to compare` });
    box.addEventListener("change", () => {
      if (box.checked) chosen.add(v.version);
      else chosen.delete(v.version);
      update();
    });
    return box;
  };
  const metrics = (v) => {
    const entries = Object.entries(v.metrics || {});
    if (!entries.length) return h("span", { class: "muted" }, "–");
    return h("ul", { class: "inline-list" }, entries.slice(0, 4).map(([k, value]) => h("li", {}, h("span", { class: "metric-name" }, k), " ", formatNumber(value, 3))));
  };
  return section(
    "Versions",
    table(
      [
        { label: "Version", value: (v) => h("a", { href: route("models", name, "versions", v.version) }, `v${v.version}`) },
        { label: "Compare", value: checkbox, header: false },
        { label: "Status", value: statusWithReason },
        { label: "Aliases", value: (v) => (pointing[v.version] || []).map((alias) => badge(alias, alias === "production" ? "ok" : "info")) },
        { label: "Metrics", value: metrics },
        { label: "Registered", value: (v) => time(v.created_at) },
        { label: "By", value: (v) => v.created_by || "–" },
      ],
      versions,
      { caption: "Versions, newest first", empty: "No version registered yet." },
    ),
    h("div", { class: "actions-row" }, compareButton),
    compareHint,
  );
}

// ---------------------------------------------------------------- the evaluation requirement

/** Whether production requires a completed human evaluation: one button flips it (PATCH). */
function evaluationSetting(ctx, name, model, reload) {
  const required = Boolean(model.require_evaluation);
  const toggle = form({
    label: "Evaluation requirement",
    fields: {},
    submitLabel: required ? "Stop requiring a human evaluation for production" : "Require a human evaluation for production",
    className: "inline-form",
    submit: async () => {
      await api(modelPath(name), { method: "PATCH", body: { require_evaluation: !required }, signal: ctx.signal });
      ctx.announce(required ? "Production no longer requires an evaluation" : "Production now requires a completed evaluation");
      reload();
    },
  });
  return toggle.form;
}

// ---------------------------------------------------------------- endpoint and split

function endpointSection(ctx, name, model, versions, endpoint, writer, reload) {
  const body = [];
  if (!endpoint) {
    body.push(h("p", {}, model.aliases?.production ? `No endpoint config: predict serves the production alias (v${model.aliases.production}).` : "No endpoint config, and no production alias: predict has nothing to serve."));
  } else {
    const config = endpoint.config;
    const total = (config.variants || []).reduce((sum, v) => sum + v.weight, 0) || 1;
    body.push(
      table(
        [
          { label: "Variant", value: (v) => v.name },
          { label: "Target", value: (v) => v.target },
          { label: "Weight", numeric: true, value: (v) => h("span", { class: "weight" }, h("span", { class: "weight-bar", "aria-hidden": "true" }, h("span", { class: "weight-fill", dataset: { share: String(v.weight / total) } })), `${v.weight}%`) },
        ],
        config.variants || [],
        { caption: "Traffic split" },
      ),
      definitions([
        ["Shadow", config.shadow ? `${config.shadow.target} on ${formatNumber(config.shadow.sample_percent)}% of requests (logged, never returned)` : "none"],
        ["Sticky key", config.sticky_key || "none (each request is split at random)"],
        ["Prediction cache", config.cache?.enabled ? `on, ${config.cache.ttl_seconds} s` : "off"],
        ["Revision", config.revision !== undefined ? String(config.revision) : null],
        ["Changed", config.updated_at ? h("span", {}, time(config.updated_at), config.updated_by ? ` by ${config.updated_by}` : "") : null],
      ]),
      h("h3", {}, "Serving rules"),
      rulesView(config.rules || {}),
    );
  }
  if (writer) body.push(splitEditor(ctx, name, model, versions, endpoint, reload));
  const element = section("Endpoint", ...body);
  // Weight bars are sized through CSSOM (allowed by the style policy, unlike style attributes).
  for (const fill of element.querySelectorAll(".weight-fill")) fill.style.width = `${Math.round(Number(fill.dataset.share) * 100)}%`;
  return element;
}

function rulesView(rules) {
  const entries = Object.entries(rules).filter(([, value]) => value !== null && value !== undefined);
  if (!entries.length) return h("p", { class: "muted" }, "No serving rules.");
  return h(
    "dl",
    { class: "definitions" },
    entries.map(([key, value]) => [h("dt", {}, key.replaceAll("_", " ")), h("dd", {}, typeof value === "object" ? jsonBlock(value, key) : String(value))]),
  );
}

function splitEditor(ctx, name, model, versions, endpoint, reload) {
  const targets = [
    ...Object.keys(model.aliases || {}),
    ...versions.filter(isReady).map((v) => `v${v.version}`),
  ];
  const current = endpoint?.config;
  const rows = h("tbody");
  const result = h("div", { class: "result", "aria-live": "polite" });
  const status = h("p", { class: "form-status", role: "status" });
  const formError = h("p", { class: "form-error", role: "alert", hidden: true });
  let rowCount = 0;
  const addRow = (variant = { name: "", target: targets[0] || "", weight: 0 }) => {
    rowCount += 1;
    const index = rowCount;
    const nameInput = input({ value: variant.name, maxlength: "32", "aria-label": `Variant ${index} name` });
    const targetSelect = select(targets.map((t) => [t, t]), { "aria-label": `Variant ${index} target` });
    if (variant.target && !targets.includes(variant.target)) targetSelect.append(h("option", { value: variant.target }, variant.target));
    targetSelect.value = variant.target;
    const weightInput = input({ type: "number", min: "0", max: "100", step: "1", value: String(variant.weight), "aria-label": `Variant ${index} weight (%)`, inputmode: "numeric" });
    const remove = h("button", { type: "button", class: "link-button" }, `Remove variant ${index}`);
    const row = h("tr", {}, h("td", {}, nameInput), h("td", {}, targetSelect), h("td", {}, weightInput), h("td", {}, remove));
    remove.addEventListener("click", () => row.remove());
    rows.append(row);
  };
  for (const variant of current?.variants || [{ name: "main", target: model.aliases?.production ? "production" : targets[0] || "", weight: 100 }]) addRow(variant);
  const addButton = h("button", { type: "button" }, "Add a variant");
  addButton.addEventListener("click", () => addRow());
  const shadowTarget = field("Shadow target", select([["", "no shadow"], ...targets.map((t) => [t, t])]), { name: "shadow_target" });
  shadowTarget.control.value = current?.shadow?.target || "";
  const shadowPercent = field("Shadow sample (%)", input({ type: "number", min: "0.01", max: "100", step: "any", value: String(current?.shadow?.sample_percent ?? 10), inputmode: "decimal" }), { name: "shadow_percent" });
  const submit = h("button", { type: "submit", class: "primary" }, "Save the split");
  const element = h(
    "form",
    { class: "form", "aria-label": "Traffic split", novalidate: true },
    h("div", { class: "table-wrap" }, h("table", {}, h("caption", {}, "Variants"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Target"), h("th", { scope: "col" }, "Weight (%)"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Remove")))), rows)),
    h("div", { class: "actions-row" }, addButton),
    shadowTarget.row,
    shadowPercent.row,
    h("div", { class: "form-actions" }, submit, status),
    formError,
  );
  const setError = (message) => {
    formError.textContent = message || "";
    formError.hidden = !message;
  };
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    setError("");
    setFieldError(shadowPercent, "");
    replace(result);
    const variants = [...rows.querySelectorAll("tr")].map((row) => {
      const [nameInput, targetSelect, weightInput] = row.querySelectorAll("input, select");
      return { name: nameInput.value.trim(), target: targetSelect.value, weight: Number(weightInput.value), weightText: weightInput.value.trim(), inputs: [nameInput, targetSelect, weightInput] };
    });
    const problems = [];
    if (!variants.length) problems.push("Add at least one variant.");
    const names = new Set();
    for (const v of variants) {
      if (!VARIANT_PATTERN.test(v.name)) problems.push(`Variant name '${v.name}': letters, digits, '-' or '_' (1-32).`);
      if (names.has(v.name)) problems.push(`Variant name '${v.name}' is used twice.`);
      names.add(v.name);
      if (!v.target) problems.push(`Variant '${v.name}' needs a target.`);
      if (!/^\d+$/.test(v.weightText) || v.weight > 100) problems.push(`Variant '${v.name}': the weight is a whole number 0-100.`);
    }
    const total = variants.reduce((sum, v) => sum + (Number.isFinite(v.weight) ? v.weight : 0), 0);
    if (variants.length && total !== 100) problems.push(`The weights sum to ${total}; they must sum to 100.`);
    const percent = Number(shadowPercent.control.value);
    if (shadowTarget.control.value && !(percent > 0 && percent <= 100)) setFieldError(shadowPercent, "A shadow samples more than 0% and at most 100% of requests.");
    if (problems.length || shadowPercent.control.getAttribute("aria-invalid")) {
      if (problems.length) setError(problems.join(" "));
      return;
    }
    const change = {
      variants: variants.map(({ name: n, target, weight }) => ({ name: n, target, weight })),
      shadow: shadowTarget.control.value ? { target: shadowTarget.control.value, sample_percent: percent } : null,
    };
    submit.disabled = true;
    status.textContent = "Saving…";
    try {
      const saved = await saveSplit(name, endpoint, change, ctx.signal);
      replace(result, notice("ok", `Split saved: ${saved.variants.map((v) => `${v.name} → ${v.target} ${v.weight}%`).join(", ")}${saved.shadow ? `; shadow ${saved.shadow.target} ${saved.shadow.sample_percent}%` : ""}.`), h("p", {}, h("a", { href: window.location.hash, on: { click: (e) => { e.preventDefault(); reload(); } } }, "Refresh the page")));
      ctx.announce("Traffic split saved");
    } catch (error) {
      const report = gateFromError(error);
      if (report) replace(result, gateReport(report, "Gate"));
      if (error instanceof ApiError && error.status === 409) setError(`${describeError(error)} Someone changed the endpoint since this page loaded: refresh to see it, then edit again.`);
      else setError(describeError(error));
    } finally {
      submit.disabled = false;
      status.textContent = "";
    }
  });
  return h("div", { class: "subpanel" }, h("h3", {}, current ? "Change the split" : "Create the endpoint"), h("p", { class: "hint" }, "Every version that gets traffic, as a variant or shadow, must pass the production gate. Serving rules and the cache are kept as they are."), element, result);
}

/**
 * Change only variants and shadow: a JSON merge patch conditional on the revision this page
 * read (If-Match), so rules and cache stay and a concurrent change is a 409, not overwritten.
 * With no endpoint yet, the config is created whole.
 */
async function saveSplit(name, endpoint, change, signal) {
  if (!endpoint) {
    const body = { variants: change.variants };
    if (change.shadow) body.shadow = change.shadow;
    return api(`${modelPath(name)}/endpoint`, { method: "PUT", body, signal });
  }
  const headers = endpoint.etag ? { "If-Match": endpoint.etag } : {};
  return api(`${modelPath(name)}/endpoint`, { method: "PATCH", body: change, headers, signal });
}

// ---------------------------------------------------------------- history

const ACTION_LABELS = {
  model_created: "model created",
  model_updated: "model updated",
  version_registered: "version registered",
  version_ready: "version ready",
  version_failed: "version failed",
  alias_moved: "alias moved",
  alias_deleted: "alias deleted",
  rollback: "rollback",
  endpoint_changed: "endpoint changed",
};

function historyEntry(entry) {
  const moved = entry.from_version || entry.to_version;
  const gate = entry.details?.gate;
  return h(
    "li",
    { class: "timeline-entry" },
    h("div", { class: "timeline-when" }, time(entry.at)),
    h(
      "div",
      { class: "timeline-what" },
      badge(ACTION_LABELS[entry.action] || entry.action, entry.action === "rollback" || entry.action === "version_failed" ? "warn" : "info"),
      entry.alias ? ` ${entry.alias}` : "",
      moved ? ` ${entry.from_version ? `v${entry.from_version}` : "–"} → ${entry.to_version ? `v${entry.to_version}` : "–"}` : "",
      ` by ${entry.actor}`,
      entry.details?.forced ? [" ", badge("forced", "bad")] : null,
      gate ? [" ", badge(gate.passed ? "gate passed" : "gate failed", gate.passed ? "ok" : "bad")] : null,
      entry.reason ? h("p", { class: "timeline-reason" }, `Reason: ${entry.reason}`) : null,
    ),
  );
}

function historySection(ctx, name, model) {
  const list = h("ol", { class: "timeline", "aria-label": "History, newest first" });
  const more = h("button", { type: "button", hidden: true }, "Show older entries");
  let token;
  const load = async () => {
    more.disabled = true;
    const page = await api(`${modelPath(name)}/history`, { query: { limit: HISTORY_PAGE, next_token: token }, signal: ctx.signal });
    list.append(...(page.entries || []).map(historyEntry));
    token = page.next_token;
    more.hidden = !token;
    more.disabled = false;
  };
  more.addEventListener("click", () => load().catch((error) => list.append(h("li", { role: "alert" }, describeError(error)))));
  load().catch((error) => list.append(h("li", { role: "alert" }, describeError(error))));

  const answer = h("div", { class: "result", "aria-live": "polite" });
  const aliases = Object.keys(model.aliases || {});
  const fields = {
    alias: field("Alias", input({ value: "production", maxlength: "32", list: "alias-options" }), { name: "alias" }),
    at: field("Time (UTC)", input({ type: "datetime-local", step: "1" }), { name: "at" }),
  };
  const aliasOptions = h("datalist", { id: "alias-options" }, [...new Set(["production", "staging", ...aliases])].map((a) => h("option", { value: a })));
  const atForm = form({
    label: "What did an alias point at, at a time",
    fields,
    submitLabel: "Look up",
    extra: [aliasOptions],
    validate: (values) => {
      const problems = {};
      if (!ALIAS_PATTERN.test(values.alias)) problems.alias = "An alias is lower-case letters, digits, '-' or '_', starting with a letter.";
      if (!values.at) problems.at = "Choose a date and time.";
      else if (Number.isNaN(new Date(`${values.at}Z`).getTime())) problems.at = "Not a date and time.";
      return problems;
    },
    submit: async (values) => {
      const at = new Date(`${values.at}Z`).toISOString();
      const found = await api(`${modelPath(name)}/history`, { query: { alias: values.alias, at }, signal: ctx.signal });
      replace(
        answer,
        found.version
          ? notice("info", `At ${at.replace("T", " ").replace(".000Z", "Z")}, ${found.alias} pointed at `, h("a", { href: route("models", name, "versions", found.version) }, `v${found.version}`), found.since ? [" (since ", time(found.since), found.entry ? `, moved by ${found.entry.actor}` : "", ")"] : "", ".")
          : notice("info", `At ${at.replace("T", " ").replace(".000Z", "Z")}, ${found.alias} pointed at no version.`),
      );
    },
  });
  return section("History", h("div", { class: "subpanel" }, h("h3", {}, "What was live at a time"), atForm.form, answer), list, more);
}
