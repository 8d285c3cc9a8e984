// Compare two versions side by side: lineage, signature, features, every metric (with the
// difference) and every parameter; rows that differ are marked.

import { api } from "../api.js";
import { add, formatBytes, formatNumber, h, route, routeWithQuery, section, time } from "../dom.js";
import { field, form, select } from "../forms.js";
import { versionStatus } from "../views.js";
import { allVersions, modelPath } from "./model.js";

function display(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "number") return formatNumber(value, 5);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function row(label, a, b, { delta = false, render = display } = {}) {
  const same = JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  let difference = null;
  if (delta && typeof a === "number" && typeof b === "number") {
    const d = b - a;
    difference = d === 0 ? "0" : `${d > 0 ? "+" : "−"}${formatNumber(Math.abs(d), 4)}`;
  }
  return h(
    "tr",
    { class: same ? null : "differs" },
    h("th", { scope: "row" }, label, same ? null : h("span", { class: "visually-hidden" }, " (differs)")),
    h("td", {}, render(a)),
    h("td", {}, render(b)),
    h("td", { class: "num" }, difference ?? (same ? "same" : "differs")),
  );
}

function group(title, headA, headB, rows) {
  return section(
    title,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "compare" },
        h("caption", {}, `${title}: ${headA} and ${headB}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, headA), h("th", { scope: "col" }, headB), h("th", { scope: "col", class: "num" }, "Difference"))),
        h("tbody", {}, rows),
      ),
    ),
  );
}

export async function render(ctx) {
  const { name } = ctx.params;
  ctx.setTitle(`${name}: compare versions`);
  const versions = await allVersions(name, ctx.signal);
  const numbers = versions.map((v) => v.version).sort((x, y) => x - y);
  const a = Number(ctx.query.a) || numbers[numbers.length - 2] || numbers[0];
  const b = Number(ctx.query.b) || numbers[numbers.length - 1];
  const options = numbers.map((n) => [String(n), `v${n}`]);
  const fields = {
    a: field("Left version", select(options), { name: "a" }),
    b: field("Right version", select(options), { name: "b" }),
  };
  fields.a.control.value = String(a);
  fields.b.control.value = String(b);
  const picker = form({
    label: "Versions to compare",
    fields,
    submitLabel: "Compare",
    className: "filters",
    validate: (values) => (values.a === values.b ? { b: "Pick two different versions." } : {}),
    submit: async (values) => ctx.navigate(routeWithQuery(["models", name, "compare"], values)),
  });
  add(ctx.root, 
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, h("a", { href: "#/" }, "Catalog"), " / ", h("a", { href: route("models", name) }, name), " / ", h("span", { "aria-current": "page" }, "compare")),
    h("h1", {}, `${name}: v${a} and v${b} side by side`),
    picker.form,
  );
  if (!numbers.includes(a) || !numbers.includes(b)) {
    add(ctx.root, h("p", { role: "alert" }, `This model has versions ${numbers.map((n) => `v${n}`).join(", ") || "none"}.`));
    return;
  }
  const [left, right] = await Promise.all(
    [a, b].map((n) => api(`${modelPath(name)}/versions/${n}`, { signal: ctx.signal })),
  );
  const headA = `v${left.version}`;
  const headB = `v${right.version}`;
  const featuresOf = (v) => (v.feature_schema?.features || []).map((f) => `${f.name}:${f.dtype}`);
  const fa = featuresOf(left);
  const fb = featuresOf(right);
  const added = fb.filter((f) => !fa.includes(f));
  const removed = fa.filter((f) => !fb.includes(f));
  const metricNames = [...new Set([...Object.keys(left.metrics || {}), ...Object.keys(right.metrics || {})])].sort();
  const paramNames = [...new Set([...Object.keys(left.params || {}), ...Object.keys(right.params || {})])].sort();
  add(ctx.root, 
    group("Overview", headA, headB, [
      row("Status", versionStatus(left), versionStatus(right)),
      row("Registered", left.created_at, right.created_at, { render: time }),
      row("Registered by", left.created_by, right.created_by),
      row("Owner", left.owner, right.owner),
      row("Training data", left.training_data_uri, right.training_data_uri),
      row("Training data version", left.training_data_version, right.training_data_version),
      row("Code version", left.source_code_version, right.source_code_version),
      row("sha256", left.artifact_sha256, right.artifact_sha256, { render: (v) => (v ? h("code", {}, v.slice(0, 16) + "…") : "–") }),
      row("Size", left.size_bytes, right.size_bytes, { render: (v) => (v ? formatBytes(v) : "–") }),
      row("Task", left.signature?.task, right.signature?.task),
      row("Classes", left.signature?.class_labels, right.signature?.class_labels),
      row("Features", fa.length, fb.length, { delta: true }),
    ]),
    added.length || removed.length
      ? section(
          "Feature changes",
          h("p", {}, `From ${headA} to ${headB}:`),
          h("ul", {}, added.map((f) => h("li", {}, `added ${f}`)), removed.map((f) => h("li", {}, `removed ${f}`))),
        )
      : section("Feature changes", h("p", {}, "Both versions take the same features, in any order.")),
    group("Metrics", headA, headB, metricNames.length ? metricNames.map((m) => row(m, left.metrics?.[m], right.metrics?.[m], { delta: true })) : [h("tr", {}, h("td", { colspan: "4" }, "Neither version has metrics."))]),
    group("Parameters", headA, headB, paramNames.length ? paramNames.map((p) => row(p, left.params?.[p], right.params?.[p])) : [h("tr", {}, h("td", { colspan: "4" }, "Neither version has parameters."))]),
  );
}
