// The console's shell: sign-in state, the navigation the key's scopes allow, and the router.
//
// Routes are hashes (`#/models/churn`) so that the console is a handful of static files: the
// function serving them never needs to know the page structure. Each page gets a fresh
// container and an AbortSignal; navigating away aborts its requests, and a late answer writes
// into a container that is no longer on the page.

import { api, isAbort, on, session } from "./api.js";
import { describeError } from "./forms.js";
import { h, replace } from "./dom.js";
import * as catalog from "./pages/catalog.js";
import * as model from "./pages/model.js";
import * as version from "./pages/version.js";
import * as compare from "./pages/compare.js";
import * as tryIt from "./pages/try.js";
import * as monitoring from "./pages/monitoring.js";
import * as jobs from "./pages/jobs.js";
import * as features from "./pages/features.js";
import * as evaluations from "./pages/evaluations.js";
import * as signin from "./pages/signin.js";

/** Evaluators judge; registry:write keys create, complete and cancel: either reads evaluations. */
const EVALUATIONS = ["evaluate", "registry:write"];

/** Navigation entries, each shown only to keys holding its scope (or one of its scopes). */
const NAV = [
  { label: "Catalog", hash: "#/", scope: "registry:read", match: /^\/(models.*)?$/ },
  { label: "Try it", hash: "#/try", scope: "predict", match: /^\/try/ },
  { label: "Monitoring", hash: "#/monitoring", scope: "registry:read", match: /^\/monitoring/ },
  { label: "Batch jobs", hash: "#/jobs", scope: "predict", match: /^\/jobs/ },
  { label: "Features", hash: "#/features", scope: "ingest", match: /^\/features/ },
  { label: "Evaluations", hash: "#/evaluations", scope: EVALUATIONS, match: /^\/evaluations/ },
];

/** Route patterns: `:name` segments become params (decoded). */
const ROUTES = [
  ["/", catalog, "registry:read"],
  ["/models/:name", model, "registry:read"],
  ["/models/:name/versions/:version", version, "registry:read"],
  ["/models/:name/compare", compare, "registry:read"],
  ["/try", tryIt, "predict"],
  ["/try/:name", tryIt, "predict"],
  ["/monitoring", monitoring, "registry:read"],
  ["/monitoring/:name", monitoring, "registry:read"],
  ["/jobs", jobs, "predict"],
  ["/jobs/:id", jobs, "predict"],
  ["/features", features, "ingest"],
  ["/evaluations", evaluations, EVALUATIONS],
  ["/evaluations/:id", evaluations, EVALUATIONS],
  ["/evaluations/:id/rows/:index", evaluations, EVALUATIONS],
  ["/signin", signin, null],
];

const state = { me: null, controller: null };

/** Whether the key holds `scope` (or, given a list, any of them); admin holds every scope. */
export function can(scope) {
  if (!state.me) return false;
  const scopes = state.me.scopes || [];
  if (scope === null || scopes.includes("admin")) return true;
  return Array.isArray(scope) ? scope.some((one) => scopes.includes(one)) : scopes.includes(scope);
}

function scopeText(scope) {
  return (Array.isArray(scope) ? scope : [scope]).map((one) => `'${one}'`).join(" or ");
}

function parseHash() {
  const raw = window.location.hash.startsWith("#/") ? window.location.hash.slice(1) : "/";
  const [path, queryText = ""] = raw.split("?", 2);
  return { path: path.replace(/\/+$/, "") || "/", query: Object.fromEntries(new URLSearchParams(queryText)) };
}

function matchRoute(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, page, scope] of ROUTES) {
    const expected = pattern.split("/").filter(Boolean);
    if (expected.length !== parts.length) continue;
    const params = {};
    let ok = true;
    expected.forEach((segment, index) => {
      if (segment.startsWith(":")) {
        try {
          params[segment.slice(1)] = decodeURIComponent(parts[index]);
        } catch {
          ok = false;
        }
      } else if (segment !== parts[index]) ok = false;
    });
    if (ok) return { page, scope, params };
  }
  return null;
}

export function navigate(hash) {
  if (window.location.hash === hash) render();
  else window.location.hash = hash;
}

export function announce(text) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  window.setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function renderChrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const { path } = parseHash();
  if (!state.me) {
    replace(nav);
    replace(who);
    return;
  }
  replace(
    nav,
    h(
      "ul",
      {},
      NAV.filter((item) => can(item.scope)).map((item) =>
        h("li", {}, h("a", { href: item.hash, "aria-current": item.match.test(path) ? "page" : null }, item.label)),
      ),
    ),
  );
  const signOut = h("button", { type: "button", class: "link-button" }, "Sign out");
  signOut.addEventListener("click", () => {
    session.clear();
    state.me = null;
    navigate("#/signin");
  });
  replace(
    who,
    h("span", { class: "who-name", title: `key ${state.me.key_id}` }, state.me.name),
    h("span", { class: "who-scopes" }, (state.me.scopes || []).join(", ") || "no scopes"),
    signOut,
  );
}

function firstAllowedHash() {
  const item = NAV.find((entry) => can(entry.scope));
  return item ? item.hash : null;
}

async function loadMe() {
  if (state.me || !session.key) return state.me;
  try {
    state.me = await api("/me");
  } catch (error) {
    if (error.status === 401) session.clear();
    else throw error;
  }
  return state.me;
}

/** Sign in with `key` (already checked by GET /me): remember it for this tab. */
export function signedIn(key, me, next) {
  session.key = key;
  state.me = me;
  navigate(next && next !== "#/signin" ? next : firstAllowedHash() || "#/");
}

async function render() {
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const main = document.getElementById("main");
  const { path, query } = parseHash();
  const container = h("div", { class: "page" });
  replace(main, container);
  try {
    await loadMe();
  } catch (error) {
    replace(container, h("h1", {}, "The API is not answering"), h("p", { role: "alert" }, describeError(error)));
    return;
  }
  if (!state.me && path !== "/signin") {
    const next = window.location.hash.startsWith("#/") ? window.location.hash : "";
    window.location.replace(`#/signin${next ? `?next=${encodeURIComponent(next)}` : ""}`);
    return;
  }
  renderChrome();
  if (path === "/" && !can("registry:read")) {
    const hash = firstAllowedHash();
    if (hash && hash !== "#/") {
      window.location.replace(hash);
      return;
    }
  }
  const matched = matchRoute(path);
  if (!matched) {
    replace(container, h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, "No console page has this address."), h("p", {}, h("a", { href: "#/" }, "Back to the start")));
    focusHeading(container);
    return;
  }
  if (matched.scope && !can(matched.scope)) {
    replace(
      container,
      h("h1", { tabindex: "-1" }, "Not available with this key"),
      h("p", {}, `This page needs the ${scopeText(matched.scope)} scope; the key you signed in with has ${(state.me.scopes || []).join(", ") || "none"}.`),
    );
    focusHeading(container);
    return;
  }
  const ctx = {
    root: container,
    params: matched.params,
    query,
    me: state.me,
    can,
    signal: controller.signal,
    navigate,
    announce,
    setTitle(text) {
      document.title = `${text} · mlambda console`;
    },
  };
  try {
    await matched.page.render(ctx);
    focusHeading(container);
  } catch (error) {
    if (isAbort(error) || controller.signal.aborted) return;
    replace(container, h("h1", { tabindex: "-1" }, "Something went wrong"), h("p", { role: "alert", class: "form-error" }, describeError(error)));
    focusHeading(container);
  }
}

/** Move focus to the new page's heading (screen readers announce it), unless the page focused a control. */
function focusHeading(container) {
  const active = document.activeElement;
  const idle = !active || active === document.body || active.id === "main" || !document.contains(active);
  const heading = container.querySelector("h1");
  if (heading && idle) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

on("unauthorized", () => {
  session.clear();
  state.me = null;
  const next = window.location.hash.startsWith("#/") && !window.location.hash.startsWith("#/signin") ? window.location.hash : "";
  window.location.replace(`#/signin?expired=1${next ? `&next=${encodeURIComponent(next)}` : ""}`);
});

on("throttled", ({ seconds }) => announce(`The API is throttling this key; retrying in ${seconds} s.`));

document.querySelector(".skip-link")?.addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});

window.addEventListener("hashchange", render);
render();
