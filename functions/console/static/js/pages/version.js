// One version: status (with the failure's reason), metrics, params, lineage, feature schema,
// signature, reference sample, warnings and the validation report.

import { api } from "../api.js";
import { add, badge, definitions, formatBytes, formatNumber, formatPercent, h, notice, route, routeWithQuery, section, table, time } from "../dom.js";
import { keyValueTable, metricsTable, statusWithReason, versionStatus } from "../views.js";
import { modelPath } from "./model.js";

export function lineage(v) {
  return [
    ["Training data", v.training_data_uri || v.request?.training_data_uri || "–"],
    ["Training data version", v.training_data_version || v.request?.training_data_version || "–"],
    ["Code version", v.source_code_version || v.request?.source_code_version || "–"],
    ["Owner", v.owner || "–"],
    ["Registered by", v.created_by || "–"],
    ["Registered", time(v.created_at)],
  ];
}

export function featureTable(v) {
  return table(
    [
      { label: "Feature", value: (f) => f.name },
      { label: "Type", value: (f) => f.dtype },
    ],
    v.feature_schema?.features || [],
    { caption: "Feature schema (in order)", empty: "No feature schema (the version is not READY)." },
  );
}

export async function render(ctx) {
  const { name } = ctx.params;
  const number = String(ctx.params.version).replace(/^v/, "");
  ctx.setTitle(`${name} v${number}`);
  const [v, published] = await Promise.all([
    api(`${modelPath(name)}/versions/${encodeURIComponent(number)}`, { signal: ctx.signal }),
    api(`${modelPath(name)}/versions/${encodeURIComponent(number)}/evaluations`, { signal: ctx.signal }),
  ]);
  const status = versionStatus(v);
  const signature = v.signature || {};
  add(ctx.root, 
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, h("a", { href: "#/" }, "Catalog"), " / ", h("a", { href: route("models", name) }, name), " / ", h("span", { "aria-current": "page" }, `v${v.version}`)),
    h("h1", {}, `${name} v${v.version}`),
    h("p", { class: "lede" }, statusWithReason(v)),
    status === "PENDING_VALIDATION" ? notice("info", "The validator has not finished with this version yet: reload in a moment.") : null,
    status === "FAILED" ? notice("bad", `Validation failed: ${v.failure?.code || "failed"}: ${v.failure?.message || "no reason recorded"}. This version can never serve.`) : null,
    v.description ? h("p", {}, v.description) : null,
    h(
      "ul",
      { class: "actions-row" },
      status === "READY" && ctx.can("predict") ? h("li", {}, h("a", { class: "button", href: routeWithQuery(["try", name], { version: v.version }) }, "Try this version")) : null,
      h("li", {}, h("a", { class: "button", href: routeWithQuery(["models", name, "compare"], { a: Math.max(1, v.version - 1), b: v.version }) }, "Compare with another version")),
    ),
    section("Lineage", definitions(lineage(v))),
    section("Metrics", metricsTable(v.metrics, "Registered metrics"), v.reference?.metrics ? metricsTable(v.reference.metrics, `Quality on the reference sample (${v.reference.labelled_rows ?? "?"} labelled rows)`) : null),
    evaluationsSection(ctx, name, published.evaluations || []),
    section("Parameters", keyValueTable(v.params, "Training parameters", "No parameters recorded.")),
    status === "READY"
      ? section(
          "Signature",
          definitions([
            ["Task", signature.task],
            ["Classes", signature.class_labels ? signature.class_labels.join(", ") : null],
            ["Artifact", v.artifact_key],
            ["sha256", h("code", {}, v.artifact_sha256 || "–")],
            ["Size", formatBytes(v.size_bytes)],
            ["Explanations", v.explainer_key ? "available" : "not available (registered without a reference sample)"],
            ["Smoke cases", String((v.smoke_cases || []).length)],
          ]),
          featureTable(v),
        )
      : null,
    v.reference
      ? section(
          "Reference sample",
          definitions([
            ["Rows", String(v.reference.rows)],
            ["Scored rows", String(v.reference.scored_rows)],
            ["Target column", v.reference.target || "none"],
            ["Excluded columns", (v.reference.excluded || []).join(", ") || "none"],
          ]),
        )
      : null,
    (v.warnings || []).length ? section("Warnings", h("ul", {}, v.warnings.map((w) => h("li", {}, badge(w.code, "warn"), " ", w.message)))) : null,
    v.validation
      ? section(
          "Validation",
          definitions([
            ["Started", time(v.validation.started_at)],
            ["Took", `${Math.round(v.validation.duration_ms)} ms`],
            ["Attempts", String(v.validation.attempts)],
          ]),
          table(
            [
              { label: "Check", value: (c) => c.name },
              { label: "Result", value: (c) => badge(c.passed ? "passed" : "failed", c.passed ? "ok" : "bad"), header: false },
              { label: "Detail", value: (c) => c.message },
            ],
            v.validation.checks || [],
            { caption: "Validation checks" },
          ),
        )
      : null,
  );
}

/** Completed human evaluations published to the version: what the production gate reads. */
function evaluationsSection(ctx, name, evaluations) {
  const readsEvaluations = ctx.can(["evaluate", "registry:write"]);
  return section(
    "Human evaluations",
    table(
      [
        { label: "Evaluation", value: (e) => (readsEvaluations ? h("a", { href: route("evaluations", e.evaluation_id) }, e.name || e.evaluation_id) : e.name || e.evaluation_id) },
        { label: "Agreement", numeric: true, value: (e) => formatPercent(e.agreement) },
        { label: "Accuracy", numeric: true, value: (e) => formatPercent(e.accuracy) },
        { label: "Coverage", numeric: true, value: (e) => `${formatPercent(e.coverage, 0)} of ${e.rows}` },
        { label: "Verdicts", numeric: true, value: (e) => String(e.verdicts) },
        { label: "Krippendorff's alpha", numeric: true, value: (e) => formatNumber(e.krippendorff_alpha, 3) },
        { label: "Evaluators", value: (e) => e.evaluators.join(", ") },
        { label: "Completed", value: (e) => [time(e.completed_at), ` by ${e.completed_by}`] },
      ],
      evaluations,
      { caption: "Evaluations published to this version, newest first", empty: "No completed human evaluation." },
    ),
    readsEvaluations ? h("p", {}, h("a", { href: routeWithQuery(["evaluations"], { model: name }) }, "Evaluations of this model")) : null,
  );
}
