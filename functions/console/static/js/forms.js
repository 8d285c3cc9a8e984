// Forms: every input labelled, checked before anything is sent, and the API's `{code, message}`
// shown next to the field it names (or next to the button when it names none).

import { ApiError, isAbort } from "./api.js";
import { h, uid } from "./dom.js";

/**
 * A labelled control with an error slot wired through aria-describedby.
 * `control` is an input/select/textarea element; returns {row, control, error, hint}.
 */
export function field(label, control, { hint, name } = {}) {
  const id = control.id || uid("field");
  control.id = id;
  if (name) control.name = name;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  control.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  const isCheck = control.type === "checkbox" || control.type === "radio";
  const labelNode = h("label", { for: id }, label);
  const row = h(
    "div",
    { class: isCheck ? "field field-check" : "field" },
    isCheck ? [control, labelNode] : [labelNode, control],
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    error,
  );
  return { row, control, error, name: name || control.name };
}

export function input(props = {}) {
  return h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...props });
}

export function select(options, props = {}) {
  return h(
    "select",
    props,
    options.map((option) =>
      Array.isArray(option) ? h("option", { value: option[0] }, option[1]) : h("option", { value: option }, option),
    ),
  );
}

export function setFieldError(entry, message) {
  entry.error.textContent = message || "";
  entry.error.hidden = !message;
  if (message) entry.control.setAttribute("aria-invalid", "true");
  else entry.control.removeAttribute("aria-invalid");
}

/**
 * A form: `fields` is {name: field(...)}; `validate(values)` returns {name: message} for what
 * is wrong before sending; `submit(values)` calls the API. Errors of either kind show by their
 * field; the form-level slot takes the rest. Returns {form, fields, status, setBusy}.
 */
export function form({ label, fields, submitLabel, validate, submit, extra = [], className }) {
  const status = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
  const formError = h("p", { class: "form-error", role: "alert", hidden: true });
  const button = h("button", { type: "submit", class: "primary" }, submitLabel);
  const element = h(
    "form",
    { class: ["form", className], "aria-label": label, novalidate: true },
    Object.values(fields).map((entry) => entry.row),
    ...extra,
    h("div", { class: "form-actions" }, button, status),
    formError,
  );
  const setFormError = (message) => {
    formError.textContent = message || "";
    formError.hidden = !message;
  };
  const clear = () => {
    for (const entry of Object.values(fields)) setFieldError(entry, "");
    setFormError("");
  };
  const values = () => {
    const out = {};
    for (const [name, entry] of Object.entries(fields)) {
      const control = entry.control;
      out[name] = control.type === "checkbox" ? control.checked : control.value.trim();
    }
    return out;
  };
  const setBusy = (busy, text = "") => {
    button.disabled = busy;
    element.setAttribute("aria-busy", busy ? "true" : "false");
    status.textContent = text;
  };
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const current = values();
    const problems = validate ? validate(current) || {} : {};
    const names = Object.keys(problems);
    if (names.length) {
      for (const name of names) {
        if (fields[name]) setFieldError(fields[name], problems[name]);
        else setFormError(problems[name]);
      }
      const first = fields[names[0]];
      (first ? first.control : button).focus();
      return;
    }
    setBusy(true, "Sending…");
    try {
      await submit(current);
      setBusy(false, "");
    } catch (error) {
      setBusy(false, "");
      if (isAbort(error)) return;
      showApiError(error, fields, setFormError);
    }
  });
  return { form: element, fields, status, setBusy, setFormError, clear, values };
}

/** The field an API error names: `details` as `[{field: "body.version", ...}]` or `{field: ...}`. */
function namedFields(error) {
  const details = error.details;
  const names = [];
  const add = (text) => {
    if (typeof text !== "string") return;
    const parts = text.split(".").filter((part) => !["body", "query", "path", "header"].includes(part));
    if (parts.length) names.push({ path: parts, message: null });
  };
  if (Array.isArray(details)) {
    for (const item of details) {
      if (item && typeof item === "object") {
        const before = names.length;
        add(item.field ?? item.loc);
        if (names.length > before) names[names.length - 1].message = item.message ?? null;
      }
    }
  } else if (details && typeof details === "object") {
    add(details.field);
    for (const key of ["feature", "column", "parameter"]) add(details[key]);
  }
  return names;
}

/** Show an API error by the field it names, else at the form level; `{code}: message` either way. */
export function showApiError(error, fields, setFormError) {
  if (!(error instanceof ApiError)) {
    setFormError(`The request failed: ${error?.message || error}`);
    return;
  }
  const text = describeError(error);
  for (const named of namedFields(error)) {
    for (let length = named.path.length; length > 0; length -= 1) {
      const entry = fields[named.path.slice(0, length).join(".")] || fields[named.path[length - 1]];
      if (entry) {
        setFieldError(entry, named.message ? `${error.code}: ${named.message}` : text);
        entry.control.focus();
        return;
      }
    }
  }
  setFormError(text);
}

/** `code: message` with what the user can do about the common statuses. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return String(error?.message || error);
  let text = `${error.code}: ${error.message}`;
  if (error.status === 403) text += " (this key lacks the scope for it)";
  if (error.status === 429) text += ` (throttled: try again in ${error.retryAfter ?? 1} s)`;
  return text;
}
