// Sign in with an API key: checked with GET /me, then kept in this tab's sessionStorage only.

import { ApiError, KEY_PATTERN, api } from "../api.js";
import { add, h, notice } from "../dom.js";
import { field, form, input } from "../forms.js";
import { signedIn } from "../app.js";

export async function render(ctx) {
  ctx.setTitle("Sign in");
  const key = field("API key", input({ type: "password", autocomplete: "off", required: true, maxlength: "128" }), {
    name: "key",
    hint: "A key looks like mlk.<id>.<secret>. It is kept in this browser tab only and forgotten when the tab closes.",
  });
  const signIn = form({
    label: "Sign in",
    fields: { key },
    submitLabel: "Sign in",
    validate: ({ key: value }) => {
      if (!value) return { key: "Enter an API key." };
      if (value.length > 128 || !KEY_PATTERN.test(value)) return { key: "This is not an mlambda API key (mlk.<id>.<secret>)." };
      return {};
    },
    submit: async ({ key: value }) => {
      let me;
      try {
        me = await api("/me", { key: value, signal: ctx.signal });
      } catch (error) {
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          throw new ApiError(error.status, error.code, "The API refused this key: it is unknown or revoked.", { field: "key" });
        }
        throw error;
      }
      signedIn(value, me, ctx.query.next);
    },
  });
  add(ctx.root, 
    h(
      "div",
      { class: "signin" },
      h("h1", {}, "Sign in to the mlambda console"),
      ctx.query.expired ? notice("warn", "The API no longer accepts the key this tab used (revoked or expired). Sign in again.") : null,
      h("p", {}, "The console shows what your key's scopes allow: the registry with registry:read, changes with registry:write, predictions and batch jobs with predict, features with ingest."),
      signIn.form,
    ),
  );
  key.control.focus();
}
