// Building the page: elements from data, never from markup.
//
// Every string the API returns reaches the page through a text node (`textContent`), so a model
// description or a comment reading `<img src=x onerror=alert(1)>` shows those characters and
// nothing else. Nothing here (or anywhere in the console: tests/unit/test_console_assets.py
// checks) parses markup from a string; attributes are set one by one, and URLs only ever point
// inside the console (`#/...`) or at blob: URLs the console made itself.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

function assign(element, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (key === "class") {
      element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "value" || key === "checked" || key === "selected" || key === "disabled") {
      element[key] = value;
    } else if (key === "href") {
      element.setAttribute("href", safeHref(value));
    } else if (/^on/i.test(key) || key === "style" || key === "srcdoc" || key === "src") {
      throw new Error(`dom: ${key} is not set through props`);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  return element;
}

/** Only links the console makes itself: in-app routes and blob: downloads. */
export function safeHref(value) {
  const text = String(value);
  if (text.startsWith("#/") || text.startsWith("blob:")) return text;
  throw new Error(`dom: refusing link ${text.slice(0, 40)}`);
}

/** An HTML element: `h("a", {href: "#/"}, "Home")`. Children are nodes or text. */
export function h(tag, props = {}, ...children) {
  return append(assign(document.createElement(tag), props), children);
}

/** An SVG element, same calling convention. */
export function s(tag, props = {}, ...children) {
  return append(assign(document.createElementNS(SVG_NS, tag), props), children);
}

/** Append `children` to `parent` (null, undefined and false are skipped, text becomes text nodes). */
export function add(parent, ...children) {
  return append(parent, children);
}

/** Replace every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let idCounter = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix = "id") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A route link: `#/models/<name>` with every segment encoded. */
export function route(...segments) {
  return "#/" + segments.map((part) => encodeURIComponent(String(part))).join("/");
}

/** `route(...)` plus a query string. */
export function routeWithQuery(segments, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return route(...segments) + (text ? `?${text}` : "");
}

// ---------------------------------------------------------------- formatting

export function formatNumber(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

/**
 * A number that is exactly a float32 (features of float models, widened to float64 on the way:
 * 17.079999923706055) as the shortest decimal that is the same float32 (17.08); others as they are.
 */
export function shortestFloat32(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || Math.fround(value) !== value) return String(value);
  for (let digits = 1; digits <= 9; digits += 1) {
    const shorter = Number(value.toPrecision(digits));
    if (Math.fround(shorter) === value) return String(shorter);
  }
  return String(value);
}

export function formatPercent(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${(value * 100).toFixed(digits)}%`;
}

export function formatTime(value) {
  if (!value) return "–";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/:00Z$/, "Z");
}

export function formatBytes(value) {
  if (!Number.isFinite(value)) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? size : size.toFixed(1)} ${units[unit]}`;
}

/** A `<time>` element showing `value` (ISO) in UTC. */
export function time(value) {
  return value ? h("time", { datetime: String(value) }, formatTime(value)) : "–";
}

/** A small coloured label; `kind` picks the colour (ok, warn, bad, info, muted). */
export function badge(text, kind = "info") {
  return h("span", { class: `badge badge-${kind}` }, text);
}

const STATUS_KINDS = {
  READY: "ok",
  ok: "ok",
  completed: "ok",
  passed: "ok",
  PENDING_VALIDATION: "info",
  running: "info",
  planning: "info",
  open: "info",
  in_progress: "info",
  not_enough_data: "muted",
  drift: "bad",
  FAILED: "bad",
  failed: "bad",
  error: "bad",
};

/** A badge for a status word the API uses. */
export function statusBadge(status) {
  if (!status) return badge("unknown", "muted");
  return badge(String(status).replaceAll("_", " "), STATUS_KINDS[status] || "info");
}

// ---------------------------------------------------------------- common blocks

/** A table from column definitions: `{label, value(row) -> node|text, numeric?}`. */
export function table(columns, rows, { caption, empty = "Nothing to show.", className } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: className },
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            {},
            columns.map((c, index) => {
              const cell = c.value(row);
              const tag = index === 0 && c.header !== false ? "th" : "td";
              return h(tag, { scope: tag === "th" ? "row" : null, class: c.numeric ? "num" : null }, cell ?? "–");
            }),
          ),
        ),
      ),
    ),
  );
}

/** A definition list from `[label, value]` pairs (values that are null are left out). */
export function definitions(pairs) {
  return h(
    "dl",
    { class: "definitions" },
    pairs
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

/** Pretty JSON as text (a `<pre>`): for values with no better view. */
export function jsonBlock(value, label) {
  return h("pre", { class: "json", tabindex: "0", "aria-label": label || "JSON" }, JSON.stringify(value, null, 2));
}

/** A section with a heading (h2 by default). */
export function section(title, ...children) {
  const id = uid("section");
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** An inline notice: kind is info, ok, warn or bad. */
export function notice(kind, ...children) {
  return h("div", { class: `notice notice-${kind}`, role: kind === "bad" ? "alert" : "status" }, ...children);
}

/** A placeholder shown while something loads (announced politely). */
export function loading(what = "Loading") {
  return h("p", { class: "loading", role: "status" }, `${what}…`);
}
