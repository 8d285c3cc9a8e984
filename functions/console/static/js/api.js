// The platform's API, as the console calls it: same origin, the signed-in key in `x-api-key`.
//
// The key lives in sessionStorage only: it survives a reload of this tab and dies with it, is
// never written to a cookie (nothing is sent without the console asking) or to localStorage
// (nothing outlives the session), and never appears in a URL.

const KEY_ITEM = "mlambda.apiKey";
export const KEY_PATTERN = /^mlk\.[0-9a-z]{1,32}\.[A-Za-z0-9_-]{8,100}$/;
const MAX_THROTTLE_WAIT_SECONDS = 20;
const MAX_THROTTLE_RETRIES = 3;

/** The API's base path: the console is served at `<base>/console/`, the API at `<base>/...`. */
export const apiBase = window.location.pathname.replace(/\/console(\/.*)?$/, "");

export const session = {
  get key() {
    return window.sessionStorage.getItem(KEY_ITEM);
  },
  set key(value) {
    window.sessionStorage.setItem(KEY_ITEM, value);
  },
  clear() {
    window.sessionStorage.removeItem(KEY_ITEM);
  },
};

/** An error answer of the API: `{code, message, details}` with the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details ?? null;
    this.retryAfter = retryAfter;
  }
}

const listeners = { unauthorized: [], throttled: [] };

/** Subscribe to `unauthorized` (the key was refused) or `throttled` ({seconds}) notifications. */
export function on(event, handler) {
  listeners[event].push(handler);
}

function emit(event, detail) {
  for (const handler of listeners[event]) handler(detail);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = window.setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      window.clearTimeout(timer);
      reject(signal.reason ?? new DOMException("aborted", "AbortError"));
    });
  });
}

function retryAfterSeconds(response) {
  const header = response.headers.get("Retry-After");
  const seconds = Number.parseInt(header ?? "", 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : 1;
}

async function errorFrom(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  const retryAfter = response.status === 429 ? retryAfterSeconds(response) : null;
  if (body && typeof body === "object" && typeof body.code === "string") {
    return new ApiError(response.status, body.code, String(body.message ?? body.code), body.details, retryAfter);
  }
  // API Gateway's own bodies use "message" only; anything else is shown by status.
  const message = body && typeof body.message === "string" ? body.message : `HTTP ${response.status}`;
  return new ApiError(response.status, `http_${response.status}`, message, null, retryAfter);
}

/**
 * Call the API. Options: method, query (object), body (JSON-encoded), headers, signal,
 * key (use this key instead of the session's), as ("json" | "text" | "response").
 *
 * GET requests answered 429 wait for Retry-After (up to 20 s, three times) and try again;
 * writes are never retried blindly: their 429 is thrown for the page to show.
 */
export async function api(path, options = {}) {
  const { method = "GET", query, body, headers = {}, signal, as = "json" } = options;
  const key = options.key ?? session.key;
  const url = new URL(apiBase + path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(name, String(item));
  }
  const init = {
    method,
    signal,
    headers: { Accept: "application/json", ...headers },
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
  };
  if (key) init.headers["x-api-key"] = key;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  for (let attempt = 0; ; attempt += 1) {
    const response = await fetch(url, init);
    if (response.status === 429 && method === "GET" && attempt < MAX_THROTTLE_RETRIES) {
      const seconds = retryAfterSeconds(response);
      if (seconds <= MAX_THROTTLE_WAIT_SECONDS) {
        emit("throttled", { seconds });
        await sleep(seconds * 1000, signal);
        continue;
      }
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401 && !options.key) emit("unauthorized", error);
      throw error;
    }
    if (as === "response") return response;
    if (as === "text") return response.text();
    if (response.status === 204) return null;
    return response.json();
  }
}

/** Whether `error` is an aborted request (the user navigated away): nothing to show. */
export function isAbort(error) {
  return error?.name === "AbortError";
}
