// A prediction's explanation (additive attributions from a baseline) and its class
// probabilities, as Try it and the evaluations' rows show them.

import { bars, waterfall } from "./charts.js";
import { badge, formatNumber, h, notice, section, table, uid } from "./dom.js";
import { select } from "./forms.js";

const logistic = (x) => 1 / (1 + Math.exp(-x));

/** The class probabilities as bars (the predicted label highlighted), or null for a regressor. */
export function probabilityBars(prediction) {
  if (!prediction?.probabilities) return null;
  const entries = Object.entries(prediction.probabilities);
  return bars({
    title: "Class probabilities",
    description: entries.map(([k, v]) => `${k}: ${formatNumber(v, 3)}`).join(", "),
    items: entries.map(([label, value]) => ({ label, value })),
    highlight: String(prediction.label),
  });
}

function scaleText(explanation) {
  const { output, value, baseline } = explanation;
  if (output === "log_odds") {
    return `Attributions add up in log-odds: from the baseline ${formatNumber(baseline, 4)} (probability ${formatNumber(logistic(baseline), 4)}) to ${formatNumber(value, 4)}, a probability of ${formatNumber(logistic(value), 4)} (the logistic of the value).`;
  }
  if (output === "margin") {
    return `Attributions add up in the class's margin: its score before the softmax (not a probability), from ${formatNumber(baseline, 4)} to ${formatNumber(value, 4)}.`;
  }
  if (output === "probability") {
    return `Attributions add up in probability: from the baseline ${formatNumber(baseline, 4)} to ${formatNumber(value, 4)}.`;
  }
  return `Attributions add up in the model's output: from the baseline ${formatNumber(baseline, 4)} to ${formatNumber(value, 4)}.`;
}

/**
 * An explanation (predict's `explanation`) as text, a waterfall and a table. With `classes` and
 * `onClass(chosen)`, a picker re-explains another class (`explainClass` is the one shown).
 */
export function explanationView(explanation, { classes = [], explainClass = null, onClass = null } = {}) {
  const attributions = explanation.attributions || {};
  const sorted = Object.entries(attributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const pickerId = uid("explain-class");
  const classPicker = classes.length && onClass ? select([["", "the predicted class"], ...classes.map((c) => [String(c), String(c)])], { id: pickerId }) : null;
  if (classPicker) {
    classPicker.value = explainClass || "";
    classPicker.addEventListener("change", () => onClass(classPicker.value || null));
  }
  const estimate = explanation.exact === false;
  return section(
    "Explanation",
    h(
      "p",
      {},
      badge(explanation.method || "method unknown", "info"),
      " ",
      estimate ? badge("estimate", "warn") : badge("exact", "ok"),
      explanation.class !== undefined ? ` Explaining class ${explanation.class}.` : "",
    ),
    estimate
      ? notice("warn", `These attributions are an estimate (${explanation.method}${explanation.coalitions ? `, ${explanation.coalitions} coalitions` : ""}${explanation.reference_rows ? ` over ${explanation.reference_rows} reference rows` : ""}): close to the exact values, not equal to them.`)
      : null,
    classPicker ? h("div", { class: "field" }, h("label", { for: pickerId }, "Explain the class"), classPicker) : null,
    h("p", {}, scaleText(explanation)),
    h(
      "figure",
      { class: "chart-figure" },
      waterfall({
        title: `How each feature moved the output from the baseline to the value (${explanation.output})`,
        description: `Baseline ${formatNumber(explanation.baseline, 4)}, value ${formatNumber(explanation.value, 4)}; largest contributions: ${sorted.slice(0, 3).map(([k, v]) => `${k} ${v >= 0 ? "+" : ""}${formatNumber(v, 3)}`).join(", ")}.`,
        baseline: explanation.baseline,
        value: explanation.value,
        attributions,
      }),
      h("figcaption", {}, "Red raises the output, blue lowers it; features in order of their effect's size."),
    ),
    h(
      "details",
      {},
      h("summary", {}, "The attributions as a table"),
      table(
        [
          { label: "Feature", value: ([feature]) => feature },
          { label: "Attribution", numeric: true, value: ([, v]) => `${v >= 0 ? "+" : ""}${formatNumber(v, 5)}` },
        ],
        sorted,
        { caption: `Attributions (${explanation.output}); baseline ${formatNumber(explanation.baseline, 5)}, value ${formatNumber(explanation.value, 5)}` },
      ),
    ),
  );
}

