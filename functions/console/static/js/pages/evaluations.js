// Human evaluations: a model's evaluations and a form to create one (registry:write); one
// evaluation's progress, results and comments, with complete / cancel (registry:write); and row
// by row judging (evaluate), driven from the keyboard: C correct, I incorrect, ← → rows.
//
// Evaluators see only their own verdicts while an evaluation is open (the API enforces it);
// comments are people's free text and, like everything else, reach the page as text.

import { api } from "../api.js";
import { explanationView, probabilityBars } from "../explanation.js";
import { add, badge, definitions, formatNumber, formatPercent, h, notice, route, routeWithQuery, section, shortestFloat32, statusBadge, table, time } from "../dom.js";
import { field, form, input, select, setFieldError } from "../forms.js";
import { progress } from "../charts.js";
import { isReady } from "../views.js";
import { modelPath } from "./model.js";

const MODEL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const EVALUATION_ID = /^[0-9a-f]{20}$/;
const MAX_ROWS = 500;
const MAX_TEXT = 2000;
const MAX_TRAFFIC_HOURS = 24 * 7;

const evaluationPath = (id) => `/evaluations/${encodeURIComponent(id)}`;

export async function render(ctx) {
  const { id, index } = ctx.params;
  if (id !== undefined && !EVALUATION_ID.test(id)) {
    add(ctx.root, h("h1", {}, "No such evaluation"), h("p", {}, "Evaluation ids are 20 lower-case hexadecimal characters."));
    return;
  }
  if (index !== undefined) return judge(ctx, id, index);
  if (id !== undefined) return overview(ctx, id);
  return list(ctx);
}

// ---------------------------------------------------------------- a model's evaluations

async function list(ctx) {
  ctx.setTitle("Evaluations");
  const model = ctx.query.model || "";
  const options = h("datalist", { id: "evaluation-models" });
  const finder = form({
    label: "Find evaluations",
    fields: { model: field("Model", input({ value: model, maxlength: "63", list: "evaluation-models" }), { name: "model" }) },
    submitLabel: "Show",
    className: "filters",
    extra: [options],
    validate: (values) => (MODEL_NAME.test(values.model) ? {} : { model: "Enter a model name (lower-case letters, digits, '-' and '_')." }),
    submit: async (values) => ctx.navigate(routeWithQuery(["evaluations"], { model: values.model })),
  });
  add(
    ctx.root,
    h("h1", {}, "Evaluations"),
    h("p", { class: "lede" }, "People judge a version's predictions row by row before it ships; the results are published to the version, where the production gate can require them."),
    finder.form,
  );
  if (ctx.can("registry:read")) {
    api("/models", { query: { limit: 100 }, signal: ctx.signal })
      .then((page) => options.append(...(page.models || []).map((m) => h("option", { value: m.name }))))
      .catch(() => {});
  }
  if (!model) return;
  const page = await api(`${modelPath(model)}/evaluations`, { query: { limit: 50, next_token: ctx.query.next_token }, signal: ctx.signal });
  add(
    ctx.root,
    table(
      [
        { label: "Evaluation", value: (e) => h("a", { href: route("evaluations", e.evaluation_id) }, e.name || e.evaluation_id) },
        { label: "Version", value: (e) => `v${e.version}` },
        { label: "Status", value: (e) => statusBadge(e.status), header: false },
        { label: "Rows judged", value: (e) => progress(`Rows judged of ${e.name || e.evaluation_id}`, e.rows_judged, e.rows) },
        { label: "Evaluators", value: (e) => (e.evaluators || []).join(", ") || "none yet" },
        { label: "Source", value: (e) => e.source?.type },
        { label: "Created", value: (e) => [time(e.created_at), ` by ${e.created_by}`] },
      ],
      page.evaluations || [],
      { caption: `Evaluations of ${model}, newest first`, empty: `${model} has no evaluation yet.` },
    ),
    page.next_token ? h("nav", { class: "pager", "aria-label": "Evaluation pages" }, h("a", { href: routeWithQuery(["evaluations"], { model, next_token: page.next_token }) }, "Older evaluations")) : null,
  );
  if (ctx.can("registry:write")) add(ctx.root, await createForm(ctx, model));
}

async function createForm(ctx, model) {
  const versions = await api(`${modelPath(model)}/versions`, { query: { limit: 100 }, signal: ctx.signal });
  const ready = (versions.versions || []).filter(isReady);
  const requestId = `console-${crypto.randomUUID()}`; // a resent form creates nothing twice
  const fields = {
    version: field("Version", select(ready.map((v) => [String(v.version), `v${v.version}`])), { name: "version", hint: "Any READY version, promoted or not." }),
    source: field("Rows from", select([["reference", "the version's reference sample"], ["traffic", "traffic the model served"]]), { name: "source" }),
    hours: field("Traffic of the last (hours)", input({ inputmode: "numeric", value: "24", maxlength: "3" }), { name: "hours", hint: `Only with traffic; 1-${MAX_TRAFFIC_HOURS}.` }),
    rows: field("Rows to judge", input({ inputmode: "numeric", value: "20", maxlength: "3" }), { name: "rows", hint: `1-${MAX_ROWS}, drawn from the source.` }),
    sampling: field("Sampling", select([["random", "a random sample"], ["first", "the first rows"]]), { name: "sampling" }),
    name: field("Title", input({ maxlength: "200" }), { name: "name" }),
    instructions: field("Instructions for evaluators", h("textarea", { rows: "3", maxlength: String(MAX_TEXT * 2) }), { name: "instructions" }),
    explain: field("Show each prediction's explanation", h("input", { type: "checkbox", checked: true }), { name: "explain" }),
  };
  const creator = form({
    label: "Create an evaluation",
    fields,
    submitLabel: "Create the evaluation",
    validate: (values) => {
      const problems = {};
      if (!values.version) problems.version = `${model} has no READY version to evaluate.`;
      const rows = Number(values.rows);
      if (!Number.isInteger(rows) || rows < 1 || rows > MAX_ROWS) problems.rows = `Enter a whole number from 1 to ${MAX_ROWS}.`;
      const hours = Number(values.hours);
      if (values.source === "traffic" && (!Number.isInteger(hours) || hours < 1 || hours > MAX_TRAFFIC_HOURS)) problems.hours = `Enter a whole number of hours from 1 to ${MAX_TRAFFIC_HOURS}.`;
      return problems;
    },
    submit: async (values) => {
      const end = new Date();
      const source =
        values.source === "traffic"
          ? { type: "traffic", start: new Date(end.getTime() - Number(values.hours) * 3600 * 1000).toISOString(), end: end.toISOString() }
          : { type: "reference" };
      const created = await api(`${modelPath(model)}/evaluations`, {
        method: "POST",
        body: {
          version: Number(values.version),
          source,
          rows: Number(values.rows),
          sampling: values.sampling,
          name: values.name,
          instructions: values.instructions,
          explain: values.explain,
          request_id: requestId,
        },
        signal: ctx.signal,
      });
      ctx.announce(`Evaluation created with ${created.rows} rows`);
      ctx.navigate(route("evaluations", created.evaluation_id));
    },
  });
  return section("Create an evaluation", h("p", { class: "hint" }, "The version scores (and explains) the rows now; evaluators then judge each one."), creator.form);
}

// ---------------------------------------------------------------- one evaluation

async function overview(ctx, id) {
  const evaluation = await api(evaluationPath(id), { signal: ctx.signal });
  const title = evaluation.name || `Evaluation ${id}`;
  ctx.setTitle(title);
  const open = evaluation.status === "open";
  const judging = open && ctx.can("evaluate");
  const firstTodo = judging ? await api(`${evaluationPath(id)}/rows`, { query: { todo: true, limit: 1 }, signal: ctx.signal }) : null;
  const nextRow = firstTodo?.rows?.[0]?.index;
  add(
    ctx.root,
    breadcrumbs(evaluation),
    h("h1", {}, title),
    h("p", { class: "lede" }, statusBadge(evaluation.status), ` ${evaluation.model} v${evaluation.version}: ${evaluation.rows_judged} of ${evaluation.rows} rows judged.`),
    ctx.query.done ? notice("ok", "You have judged every row of this evaluation.") : null,
    judging
      ? h(
          "p",
          { class: "actions-row" },
          nextRow !== undefined
            ? h("a", { class: "button primary", href: route("evaluations", id, "rows", nextRow) }, "Evaluate row by row")
            : h("a", { class: "button", href: route("evaluations", id, "rows", 0) }, "Review your verdicts"),
        )
      : null,
    evaluation.instructions ? section("Instructions", h("p", { class: "prewrap" }, evaluation.instructions)) : null,
    section(
      "About",
      definitions([
        ["Model", ctx.can("registry:read") ? h("a", { href: route("models", evaluation.model) }, evaluation.model) : evaluation.model],
        ["Version", ctx.can("registry:read") ? h("a", { href: route("models", evaluation.model, "versions", evaluation.version) }, `v${evaluation.version}`) : `v${evaluation.version}`],
        ["Task", evaluation.task],
        ["Classes", evaluation.class_labels ? evaluation.class_labels.join(", ") : null],
        ["Rows from", sourceText(evaluation.source)],
        ["Explanations", evaluation.explained ? evaluation.explanation_method || "yes" : "not explained"],
        ["Progress", progress("Rows judged", evaluation.rows_judged, evaluation.rows)],
        ["Evaluators", (evaluation.evaluators || []).join(", ") || "none yet"],
        ["Created", [time(evaluation.created_at), ` by ${evaluation.created_by}`]],
        ["Completed", evaluation.completed_at ? [time(evaluation.completed_at), ` by ${evaluation.completed_by}`, evaluation.min_coverage < 1 ? ` (accepting ${formatPercent(evaluation.min_coverage, 0)} coverage)` : ""] : null],
        ["Cancelled", evaluation.cancelled_at ? [time(evaluation.cancelled_at), ` by ${evaluation.cancelled_by}`] : null],
        ["Note", evaluation.note],
      ]),
    ),
  );
  if (evaluation.status === "completed") {
    add(ctx.root, notice("ok", `Completed and published to ${evaluation.model} v${evaluation.version}`, ctx.can("registry:read") ? [": ", h("a", { href: route("models", evaluation.model, "versions", evaluation.version) }, "see it on the version")] : "."));
  }
  if (evaluation.status !== "cancelled") {
    const results = evaluation.results || (await api(`${evaluationPath(id)}/results`, { signal: ctx.signal }));
    add(ctx.root, resultsView(results, evaluation, !open));
  }
  if (open && ctx.can("registry:write")) add(ctx.root, manage(ctx, evaluation));
}

function breadcrumbs(evaluation) {
  return h(
    "nav",
    { class: "breadcrumbs", "aria-label": "Breadcrumbs" },
    h("a", { href: routeWithQuery(["evaluations"], { model: evaluation.model }) }, "Evaluations"),
    " / ",
    h("a", { href: route("evaluations", evaluation.evaluation_id), "aria-current": "page" }, evaluation.name || evaluation.evaluation_id),
  );
}

function sourceText(source) {
  if (!source) return null;
  const skipped = source.skipped ? `; ${source.skipped} rows skipped (${(source.skipped_reasons || []).join("; ")})` : "";
  const what = { reference: "the version's reference sample", upload: "an uploaded file", rows: "rows sent with the request", traffic: "served traffic" }[source.type] || source.type;
  const window = source.type === "traffic" ? ` from ${source.start} to ${source.end}` : "";
  return `${what}${window}: ${source.sampling === "first" ? "the first rows" : "a random sample"} of ${source.available} usable${skipped}`;
}

function resultsView(results, evaluation, final) {
  const perClass = results.per_class || [];
  const confusionLabels = Object.keys(results.confusion || {});
  const predicted = [...new Set(confusionLabels.flatMap((label) => Object.keys(results.confusion[label])))];
  const inter = results.inter_evaluator || {};
  return section(
    final ? "Results" : "Results so far",
    final ? null : h("p", { class: "hint" }, "While the evaluation is open an evaluator's figures cover the verdicts this key may see."),
    definitions([
      ["Coverage", `${formatPercent(results.coverage)} (${results.rows_judged} of ${results.rows} rows)`],
      ["Verdicts", String(results.verdicts)],
      ["Agreement with the model", results.agreement === null ? "–" : `${formatPercent(results.agreement)} of verdicts say correct`],
      ["Accuracy by evaluators' labels", results.accuracy === null || results.accuracy === undefined ? null : `${formatPercent(results.accuracy)} (${results.labelled_verdicts} labelled verdicts)`],
      ["Rows", `${results.rows_correct} correct, ${results.rows_incorrect} incorrect, ${results.rows_split} split`],
      ["Evaluators agree", inter.rows ? `${formatPercent(inter.pairwise_agreement)} of ${inter.pairs} pairs on ${inter.rows} rows; Krippendorff's alpha ${formatNumber(inter.krippendorff_alpha, 3)}` : "no row has two verdicts yet"],
    ]),
    perClass.length
      ? table(
          [
            { label: "Class", value: (c) => c.label },
            { label: "Predicted", numeric: true, value: (c) => formatNumber(c.predicted) },
            { label: "Confirmed", numeric: true, value: (c) => formatNumber(c.confirmed) },
            { label: "Precision", numeric: true, value: (c) => formatPercent(c.precision) },
            { label: "Actual", numeric: true, value: (c) => formatNumber(c.actual) },
            { label: "Recall", numeric: true, value: (c) => formatPercent(c.recall) },
            { label: "F1", numeric: true, value: (c) => formatNumber(c.f1, 3) },
          ],
          perClass,
          { caption: "Per class: the model against the evaluators" },
        )
      : null,
    confusionLabels.length
      ? table(
          [{ label: "Right label", value: (label) => label }, ...predicted.map((p) => ({ label: `predicted ${p}`, numeric: true, value: (label) => formatNumber(results.confusion[label][p] || 0) }))],
          confusionLabels,
          { caption: "Confusion: right label by predicted label (verdicts)" },
        )
      : null,
    results.regression
      ? definitions([
          ["Judged values", String(results.regression.judged)],
          ["MAE", formatNumber(results.regression.mae)],
          ["RMSE", formatNumber(results.regression.rmse)],
          ["Bias (prediction - right value)", formatNumber(results.regression.bias)],
        ])
      : null,
    table(
      [
        { label: "Evaluator", value: (e) => e.name },
        { label: "Verdicts", numeric: true, value: (e) => formatNumber(e.verdicts) },
        { label: "Correct", numeric: true, value: (e) => formatNumber(e.correct) },
        { label: "Agreement", numeric: true, value: (e) => formatPercent(e.agreement) },
      ],
      results.evaluators || [],
      { caption: "Evaluators", empty: "No verdict yet." },
    ),
    h("h3", {}, `Comments (${results.comments_total ?? (results.comments || []).length})`),
    (results.comments || []).length
      ? h(
          "ul",
          { class: "comments", "aria-label": "Comments, newest first" },
          results.comments.map((c) =>
            h(
              "li",
              {},
              h("p", { class: "comment-meta" }, h("a", { href: route("evaluations", evaluation.evaluation_id, "rows", c.row) }, `Row ${c.row + 1}`), ` · ${c.evaluator} · `, verdictBadge(c.verdict), " · ", time(c.at)),
              h("p", { class: "comment-text prewrap" }, c.comment),
            ),
          ),
        )
      : h("p", { class: "empty" }, "No comment yet."),
  );
}

function verdictBadge(verdict) {
  return verdict === "correct" ? badge("correct", "ok") : badge("incorrect", "bad");
}

function manage(ctx, evaluation) {
  const id = evaluation.evaluation_id;
  const complete = form({
    label: "Complete the evaluation",
    fields: {
      min_coverage: field("Complete with at least this coverage (%)", input({ inputmode: "decimal", value: "100", maxlength: "5" }), { name: "min_coverage", hint: "100: every row judged. Less states that the results stand on partial coverage." }),
      note: field("Note", input({ maxlength: String(MAX_TEXT) }), { name: "note", hint: "Why, for the record." }),
    },
    submitLabel: "Complete and publish",
    validate: (values) => {
      const percent = Number(values.min_coverage);
      return Number.isFinite(percent) && percent > 0 && percent <= 100 ? {} : { min_coverage: "Enter a percentage above 0 and at most 100." };
    },
    submit: async (values) => {
      await api(`${evaluationPath(id)}/complete`, { method: "POST", body: { min_coverage: Number(values.min_coverage) / 100, note: values.note || null }, signal: ctx.signal });
      ctx.announce("Evaluation completed and published");
      ctx.navigate(route("evaluations", id));
    },
  });
  const cancel = form({
    label: "Cancel the evaluation",
    fields: { reason: field("Reason", input({ maxlength: String(MAX_TEXT) }), { name: "reason" }) },
    submitLabel: "Cancel the evaluation",
    submit: async (values) => {
      await api(`${evaluationPath(id)}/cancel`, { method: "POST", body: { reason: values.reason || null }, signal: ctx.signal });
      ctx.announce("Evaluation cancelled");
      ctx.navigate(route("evaluations", id));
    },
  });
  return section(
    "Complete or cancel",
    h("p", { class: "hint" }, "Completing closes the evaluation and publishes its results to the version, where the production gate reads them. Cancelling publishes nothing."),
    h("div", { class: "subpanel" }, h("h3", {}, "Complete"), complete.form),
    h("div", { class: "subpanel" }, h("h3", {}, "Cancel"), cancel.form),
  );
}

// ---------------------------------------------------------------- judging row by row

async function judge(ctx, id, indexText) {
  if (!/^\d{1,6}$/.test(indexText)) {
    add(ctx.root, h("h1", {}, "No such row"), h("p", {}, "Rows are numbered from 0."));
    return;
  }
  const index = Number(indexText);
  const [evaluation, row] = await Promise.all([api(evaluationPath(id), { signal: ctx.signal }), api(`${evaluationPath(id)}/rows/${index}`, { signal: ctx.signal })]);
  const title = `Row ${index + 1} of ${evaluation.rows}`;
  ctx.setTitle(`${title} · ${evaluation.name || id}`);
  const canJudge = evaluation.status === "open" && ctx.can("evaluate");
  const go = (to) => ctx.navigate(route("evaluations", id, "rows", to));
  const previous = index > 0 ? h("a", { href: route("evaluations", id, "rows", index - 1), rel: "prev" }, "← Previous row") : null;
  const next = index + 1 < evaluation.rows ? h("a", { href: route("evaluations", id, "rows", index + 1), rel: "next" }, "Next row →") : null;
  add(
    ctx.root,
    breadcrumbs(evaluation),
    h("h1", {}, title),
    h("p", { class: "lede" }, `${evaluation.model} v${evaluation.version} · `, progress("Rows judged", evaluation.rows_judged, evaluation.rows)),
    evaluation.instructions ? notice("info", h("span", { class: "prewrap" }, evaluation.instructions)) : null,
    canJudge ? h("p", { class: "hint", id: "judge-keys" }, "Keyboard: ", h("kbd", {}, "C"), " correct (saves, then the next row), ", h("kbd", {}, "I"), " incorrect (then the right label, a comment, and Enter; Ctrl+Enter from the comment), ", h("kbd", {}, "←"), " ", h("kbd", {}, "→"), " previous and next row.") : null,
    !canJudge && evaluation.status !== "open" ? notice("info", `This evaluation is ${evaluation.status}: verdicts can no longer change.`) : null,
    !canJudge && evaluation.status === "open" ? notice("info", "This key reads the evaluation; judging needs the 'evaluate' scope.") : null,
  );
  const prediction = row.prediction || {};
  const verdictPanel = canJudge ? verdictForm(ctx, evaluation, row, go) : row.mine ? section("Your verdict", mineText(row.mine)) : null;
  add(
    ctx.root,
    h(
      "div",
      { class: "try-layout" },
      h(
        "div",
        {},
        section(
          "Input",
          table(
            [
              { label: "Feature", value: ([name]) => name },
              { label: "Value", value: ([, value]) => (value === null ? "missing" : shortestFloat32(value)) },
            ],
            Object.entries(row.inputs || {}),
            { caption: `The row's features (${row.source?.row !== undefined && row.source?.row !== null ? `row ${row.source.row} of the source` : "from the source"})` },
          ),
          Object.keys(row.context || {}).length
            ? table(
                [
                  { label: "Column", value: ([name]) => name },
                  { label: "Value", value: ([, value]) => String(value) },
                ],
                Object.entries(row.context),
                { caption: "Context" },
              )
            : null,
        ),
        verdictPanel,
      ),
      h(
        "div",
        {},
        section(
          "Prediction",
          definitions([
            ["Label", prediction.label !== undefined ? h("strong", { class: "prediction-label" }, String(prediction.label)) : null],
            ["Value", prediction.value !== undefined ? h("strong", { class: "prediction-label" }, formatNumber(prediction.value, 6)) : null],
            ["Verdicts on this row", String(row.verdict_count ?? 0)],
          ]),
          probabilityBars(prediction),
        ),
        row.explanation ? explanationView(row.explanation) : section("Explanation", h("p", { class: "empty" }, "This row was not explained.")),
      ),
    ),
    h("nav", { class: "pager", "aria-label": "Rows" }, previous, " ", next),
  );
  const onKey = (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName) || (target.tagName === "INPUT" && !["radio", "checkbox"].includes(target.type)));
    if (event.key === "ArrowLeft" && !typing && index > 0) go(index - 1);
    else if (event.key === "ArrowRight" && !typing && index + 1 < evaluation.rows) go(index + 1);
    else if (canJudge && !typing && (event.key === "c" || event.key === "C")) verdictPanel.choose("correct", true);
    else if (canJudge && !typing && (event.key === "i" || event.key === "I")) verdictPanel.choose("incorrect", false);
    else return;
    event.preventDefault();
  };
  document.addEventListener("keydown", onKey);
  ctx.signal.addEventListener("abort", () => document.removeEventListener("keydown", onKey));
}

function mineText(mine) {
  const right = mine.label !== null && mine.label !== undefined ? `; right label ${mine.label}` : mine.value !== null && mine.value !== undefined ? `; right value ${formatNumber(mine.value, 6)}` : "";
  return h("p", {}, verdictBadge(mine.verdict), `${right} (saved `, time(mine.at), ")", mine.comment ? h("span", { class: "prewrap" }, ` “${mine.comment}”`) : null);
}

/** The verdict form; `.choose(verdict, save)` is what the keyboard shortcuts call. */
function verdictForm(ctx, evaluation, row, go) {
  const classification = evaluation.task === "classification";
  const mine = row.mine;
  const radios = ["correct", "incorrect"].map((value) => {
    const radio = h("input", { type: "radio", name: "verdict", value, id: `verdict-${value}`, checked: mine?.verdict === value });
    return { value, radio, row: h("div", { class: "field field-check" }, radio, h("label", { for: `verdict-${value}` }, value === "correct" ? "Correct (C)" : "Incorrect (I)")) };
  });
  const verdictError = h("p", { class: "field-error", id: "verdict-error", hidden: true });
  const group = h("fieldset", { class: "verdict-choice", "aria-describedby": "verdict-error" }, h("legend", {}, "Is the prediction right?"), radios.map((r) => r.row), verdictError);
  const right = classification
    ? field("The right label", select([["", "(not given)"], ...(evaluation.class_labels || []).map((c) => [String(c), String(c)])]), { name: "label", hint: "With Incorrect: what the model should have said." })
    : field("The right value", input({ inputmode: "decimal", maxlength: "40" }), { name: "value", hint: "With Incorrect: what the model should have said." });
  if (mine?.label !== null && mine?.label !== undefined) right.control.value = String(mine.label);
  if (mine?.value !== null && mine?.value !== undefined) right.control.value = String(mine.value);
  const comment = field("Comment", h("textarea", { rows: "3", maxlength: String(MAX_TEXT) }), { name: "comment" });
  comment.control.value = mine?.comment || "";
  const chosen = () => radios.find((r) => r.radio.checked)?.value || "";
  const syncRight = () => {
    right.control.disabled = chosen() !== "incorrect";
  };
  for (const r of radios) r.radio.addEventListener("change", syncRight);
  syncRight();
  const saved = h("p", { class: "form-status", role: "status" }, mine ? ["Saved: ", mineText(mine)] : "No verdict from you yet.");
  // The radio group is the form's first field: its error slot is the one a missing choice fills.
  const verdictField = { row: group, control: radios[0].radio, error: verdictError, name: "verdict" };
  const verdictFields = { verdict: verdictField, [classification ? "label" : "value"]: right, comment };
  const submitter = form({
    label: "Your verdict",
    fields: verdictFields,
    submitLabel: "Save and go to the next row",
    validate: (values) => {
      if (!chosen()) return { verdict: "Choose Correct or Incorrect." };
      if (!classification && verdict === "incorrect" && values.value !== "" && !Number.isFinite(Number(values.value))) return { value: "Enter a number (e.g. 3 or 0.25)." };
      if (values.comment.length > MAX_TEXT) return { comment: `At most ${MAX_TEXT} characters.` };
      return {};
    },
    submit: async (values) => {
      const verdict = chosen();
      const body = { verdict, comment: values.comment || null };
      if (verdict === "incorrect" && classification && values.label !== "") body.label = labelFor(evaluation, values.label);
      if (verdict === "incorrect" && !classification && values.value !== "") body.value = Number(values.value);
      const path = `${evaluationPath(evaluation.evaluation_id)}/rows/${row.index}/verdict`;
      await api(path, { method: "PUT", body, signal: ctx.signal });
      ctx.announce(`Row ${row.index + 1}: ${verdict}`);
      const todo = await api(`${evaluationPath(evaluation.evaluation_id)}/rows`, { query: { todo: true, limit: 1 }, signal: ctx.signal });
      const next = todo.rows?.[0]?.index;
      if (next === undefined) ctx.navigate(routeWithQuery(["evaluations", evaluation.evaluation_id], { done: 1 }));
      else go(next);
    },
  });
  // Enter on the label (a select) and Ctrl+Enter in the comment save, as Enter does in a text field.
  submitter.form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.altKey || event.shiftKey) return;
    const tag = event.target instanceof HTMLElement ? event.target.tagName : "";
    if (tag === "SELECT" || (tag === "TEXTAREA" && (event.ctrlKey || event.metaKey))) {
      event.preventDefault();
      submitter.form.requestSubmit();
    }
  });
  const panel = section("Your verdict", submitter.form, saved);
  panel.choose = (verdict, save) => {
    for (const r of radios) r.radio.checked = r.value === verdict;
    syncRight();
    setFieldError(verdictField, "");
    if (save) submitter.form.requestSubmit();
    else (classification ? right.control : comment.control).focus();
  };
  return panel;
}

/** The label as the evaluation's classes spell it (numbers stay numbers). */
function labelFor(evaluation, text) {
  const labels = evaluation.class_labels || [];
  const match = labels.find((label) => String(label) === text);
  return match === undefined ? text : match;
}
