// Try it: a form generated from the version's feature schema (or an entity id whose online
// features fill the gaps), the prediction, and its explanation as a waterfall from the baseline
// to the explained value.

import { ApiError, api, isAbort } from "../api.js";
import { explanationView, probabilityBars } from "../explanation.js";
import { add, definitions, formatNumber, h, notice, replace, route, section, shortestFloat32 } from "../dom.js";
import { describeError, field, form, input, select, setFieldError } from "../forms.js";
import { isReady } from "../views.js";
import { endpointOf, modelPath } from "./model.js";

const ENTITY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@\/-]{0,255}$/;

// ---------------------------------------------------------------- choosing a model

async function chooseModel(ctx) {
  ctx.setTitle("Try it");
  add(ctx.root, h("h1", {}, "Try a model"), h("p", { class: "lede" }, "Score one row and see why the model answered as it did."));
  const fields = { model: field("Model", input({ maxlength: "63", list: "try-models", required: true }), { name: "model" }) };
  const options = h("datalist", { id: "try-models" });
  const chooser = form({
    label: "Choose a model",
    fields,
    submitLabel: "Open",
    extra: [options],
    validate: ({ model }) => (/^[a-z0-9][a-z0-9_-]{0,62}$/.test(model) ? {} : { model: "Model names are lower-case letters, digits, '-' and '_'." }),
    submit: async ({ model }) => ctx.navigate(route("try", model)),
  });
  add(ctx.root, chooser.form);
  if (ctx.can("registry:read")) {
    const page = await api("/models", { query: { limit: 100 }, signal: ctx.signal });
    const live = (page.models || []).filter((m) => m.aliases?.production);
    options.append(...live.map((m) => h("option", { value: m.name })));
    add(ctx.root, 
      section(
        "Models in production",
        live.length ? h("ul", { class: "link-list" }, live.map((m) => h("li", {}, h("a", { href: route("try", m.name) }, m.name), ` (v${m.aliases.production})`))) : h("p", {}, "No model is in production yet."),
      ),
    );
  }
}

// ---------------------------------------------------------------- the form

/** Which variant serves `versionNumber`, or null: variants name an alias or `vN`. */
function variantFor(endpoint, model, versionNumber) {
  for (const variant of endpoint?.config?.variants || []) {
    const target = variant.target;
    const resolved = /^v?\d+$/.test(target) ? Number(target.replace(/^v/, "")) : model.aliases?.[target];
    if (resolved === versionNumber) return variant.name;
  }
  return null;
}

function controlFor(feature) {
  if (feature.dtype === "bool") return select([["", "(from the store)"], ["true", "true"], ["false", "false"]]);
  if (feature.dtype === "float" || feature.dtype === "int") {
    return input({ inputmode: feature.dtype === "int" ? "numeric" : "decimal", maxlength: "40" });
  }
  return input({ maxlength: "1000" });
}

/** A stored value as the form shows it (a float feature's float32 as its shortest decimal). */
function shown(feature, value) {
  return feature.dtype === "float" ? shortestFloat32(value) : String(value);
}

function parseValue(feature, text) {
  if (feature.dtype === "bool") return text === "true";
  if (feature.dtype === "string") return text;
  return Number(text);
}

function checkValue(feature, text) {
  if (feature.dtype === "float" || feature.dtype === "int") {
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return "Enter a number (e.g. 3 or 0.25).";
    const value = Number(text);
    if (!Number.isFinite(value)) return "The number is too large.";
    if (feature.dtype === "int" && !Number.isInteger(value)) return "Enter a whole number.";
    if (feature.dtype === "int" && !Number.isSafeInteger(value)) return "The number is too large for an integer feature.";
  }
  return null;
}

export async function render(ctx) {
  if (!ctx.params.name) return chooseModel(ctx);
  const name = ctx.params.name;
  ctx.setTitle(`Try ${name}`);
  const header = [
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, h("a", { href: "#/try" }, "Try it"), " / ", h("span", { "aria-current": "page" }, name)),
    h("h1", {}, `Try ${name}`),
  ];
  if (!ctx.can("registry:read")) {
    add(ctx.root, ...header, notice("warn", "This key cannot read the registry (registry:read), so the console cannot build a form from the model's feature schema. Use a key with registry:read as well as predict."));
    return;
  }
  const model = await api(modelPath(name), { signal: ctx.signal });
  const endpoint = await endpointOf(name, ctx.signal);
  const requested = ctx.query.version ? Number(ctx.query.version) : null;
  const versionNumber = requested || model.aliases?.production || null;
  add(ctx.root, ...header);
  if (!versionNumber) {
    add(ctx.root, notice("warn", `${name} has no production version yet: there is nothing to score.`));
    return;
  }
  const version = await api(`${modelPath(name)}/versions/${versionNumber}`, { signal: ctx.signal });
  if (!isReady(version)) {
    add(ctx.root, notice("warn", `v${versionNumber} is ${version.status}: only READY versions can be scored.`));
    return;
  }
  const variants = endpoint?.config?.variants || [];
  const servedBy = variantFor(endpoint, model, versionNumber);
  const isProduction = versionNumber === model.aliases?.production;
  if (requested && !servedBy && !(isProduction && !endpoint)) {
    add(ctx.root, 
      notice(
        "warn",
        `v${versionNumber} takes no traffic, so predict cannot reach it. Add it to the endpoint as a variant (a weight of 0 keeps it out of the random split) and try it by variant name`,
        ctx.can("registry:write") ? [": ", h("a", { href: route("models", name) }, "edit the endpoint")] : ".",
      ),
    );
    return;
  }
  const features = version.feature_schema?.features || [];
  const classes = version.signature?.class_labels || [];
  add(
    ctx.root,
    h(
      "p",
      { class: "lede" },
      requested && servedBy
        ? `Scoring v${versionNumber} through variant ${servedBy}. `
        : `The form follows production (v${versionNumber}); the endpoint's split decides which variant answers unless you pick one. `,
      h("a", { href: route("models", name, "versions", versionNumber) }, "Version details"),
    ),
  );
  const entity = field("Entity id (optional)", input({ maxlength: "256" }), {
    name: "entity_id",
    hint: "Features you leave empty are filled from this entity's online features.",
  });
  const featureFields = {};
  for (const feature of features) {
    featureFields[feature.name] = field(`${feature.name} (${feature.dtype})`, controlFor(feature), { name: feature.name });
  }
  const classChoice = classes.length
    ? field("Explain the class", select([["", "the predicted class"], ...classes.map((c) => [String(c), String(c)])]), { name: "__class" })
    : null;
  const variantChoice =
    !requested && variants.length > 1
      ? field("Variant", select([["", "as the split decides"], ...variants.map((v) => [v.name, `${v.name} (${v.target}, ${v.weight}%)`])]), { name: "__variant" })
      : null;
  const output = h("div", { class: "try-output", "aria-live": "polite" });
  const fill = ctx.can("ingest") ? h("button", { type: "button" }, "Fill from the online store") : null;
  const examples = (version.smoke_cases || []).map((c) => c.inputs).filter((row) => row && typeof row === "object");
  const example = examples.length ? h("button", { type: "button" }, "Fill with an example row") : null;
  let exampleIndex = 0;
  example?.addEventListener("click", () => {
    const row = examples[exampleIndex % examples.length];
    exampleIndex += 1;
    for (const feature of features) {
      if (row[feature.name] !== undefined && row[feature.name] !== null) featureFields[feature.name].control.value = shown(feature, row[feature.name]);
    }
    fillStatus.textContent = `Example ${((exampleIndex - 1) % examples.length) + 1} of ${examples.length}: a row of the reference sample.`;
  });
  const fillStatus = h("p", { class: "form-status", role: "status" });
  const fields = { entity_id: entity, ...featureFields };
  if (classChoice) fields.__class = classChoice;
  if (variantChoice) fields.__variant = variantChoice;
  const tryForm = form({
    label: "Features to score",
    fields,
    submitLabel: "Predict and explain",
    className: "feature-form",
    extra: [h("div", { class: "actions-row" }, example, fill, fillStatus)],
    validate: (values) => {
      const problems = {};
      const entityId = values.entity_id;
      if (entityId && !ENTITY_PATTERN.test(entityId)) problems.entity_id = "Entity ids are 1-256 letters, digits or . _ : @ / - (starting with a letter or digit)";
      for (const feature of features) {
        const text = values[feature.name];
        if (text === "") {
          if (!entityId) problems[feature.name] = "Required (or give an entity id to fill it from the store).";
          continue;
        }
        const problem = checkValue(feature, text);
        if (problem) problems[feature.name] = problem;
      }
      return problems;
    },
    submit: async (values) => {
      const row = {};
      for (const feature of features) {
        if (values[feature.name] !== "") row[feature.name] = parseValue(feature, values[feature.name]);
      }
      const explainClass = values.__class || null;
      const body = values.entity_id ? { entity_id: values.entity_id, features: row } : { instances: [row] };
      const variant = servedBy && requested ? servedBy : values.__variant || null;
      if (variant) body.variant = variant;
      await predictAndShow(ctx, name, body, explainClass, classes, output);
    },
  });
  if (fill) {
    fill.addEventListener("click", async () => {
      setFieldError(entity, "");
      const entityId = entity.control.value.trim();
      if (!ENTITY_PATTERN.test(entityId)) {
        setFieldError(entity, "Enter an entity id first (1-256 letters, digits or . _ : @ -).");
        entity.control.focus();
        return;
      }
      fillStatus.textContent = "Reading the online store…";
      try {
        const stored = await api(`/entities/${encodeURIComponent(entityId)}/features`, { signal: ctx.signal });
        const merged = { ...(stored.aggregates || {}) };
        for (const group of stored.groups || []) Object.assign(merged, group.values || {});
        let filled = 0;
        for (const feature of features) {
          if (merged[feature.name] !== undefined && merged[feature.name] !== null) {
            featureFields[feature.name].control.value = String(merged[feature.name]);
            filled += 1;
          }
        }
        fillStatus.textContent = `${filled} of ${features.length} features filled from ${entityId}'s online features.`;
      } catch (error) {
        if (isAbort(error)) return;
        fillStatus.textContent = "";
        setFieldError(entity, describeError(error));
      }
    });
  }
  add(ctx.root, h("div", { class: "try-layout" }, section("Features", tryForm.form), output));
}

// ---------------------------------------------------------------- the answer

async function predictAndShow(ctx, name, body, explainClass, classes, output) {
  replace(output);
  let answer;
  let unavailable = null;
  try {
    answer = await api(`${modelPath(name)}/predict`, { method: "POST", body: { ...body, explain: explainClass ? { class: explainClass } : true }, signal: ctx.signal });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409 && error.code === "explainer_unavailable")) throw error;
    unavailable = error;
    answer = await api(`${modelPath(name)}/predict`, { method: "POST", body, signal: ctx.signal });
  }
  const prediction = (answer.predictions || [])[0] || {};
  const blocks = [
    section(
      "Prediction",
      definitions([
        ["Version", `v${answer.version}`],
        ["Variant", answer.variant],
        ["Label", prediction.label !== undefined ? h("strong", { class: "prediction-label" }, String(prediction.label)) : null],
        ["Value", prediction.value !== undefined ? h("strong", { class: "prediction-label" }, formatNumber(prediction.value, 6)) : null],
        ["Decision", prediction.decision ?? null],
        ["Excluded", prediction.excluded ?? null],
        ["Fallback", prediction.fallback ? `answered by the endpoint's fallback: ${prediction.fallback}` : null],
        ["From the cache", answer.cached ? "yes" : null],
        ["Request id", h("code", {}, answer.request_id)],
      ]),
      probabilityBars(prediction),
    ),
  ];
  if (unavailable) {
    blocks.push(
      section(
        "Explanation",
        notice("warn", `No explanation: ${unavailable.message} This version needs a reference sample to explain its predictions (the baseline is the expected output over it): register it with a reference sample.`),
      ),
    );
  } else if (prediction.explanation) {
    const rerun = (chosen) => predictAndShow(ctx, name, body, chosen, classes, output).catch((error) => add(output, h("p", { role: "alert" }, describeError(error))));
    blocks.push(explanationView(prediction.explanation, { classes, explainClass, onClass: rerun }));
  }
  replace(output, ...blocks);
  ctx.announce(prediction.label !== undefined ? `Predicted ${prediction.label}` : "Prediction ready");
}
