// Features: one entity's live feature groups and aggregates from the online store, and the
// feature groups the store has seen.

import { api, isAbort } from "../api.js";
import { add, definitions, formatNumber, h, replace, routeWithQuery, section, table, time } from "../dom.js";
import { describeError, field, form, input } from "../forms.js";

const ENTITY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@\/-]{0,255}$/;

function valueText(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return formatNumber(value, 6);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function groupsSeen(ctx, holder) {
  try {
    const page = await api("/feature-groups", { query: { limit: 100 }, signal: ctx.signal });
    replace(
      holder,
      table(
        [
          { label: "Group", value: (g) => h("a", { href: routeWithQuery(["features"], { ...ctx.query, group: g.group }) }, g.group) },
          { label: "Features", value: (g) => (g.features || []).join(", ") || "–" },
          { label: "Last event", value: (g) => time(g.last_event_at) },
          { label: "First seen", value: (g) => time(g.first_seen_at) },
        ],
        page.groups || [],
        { caption: "Feature groups seen by the store", empty: "No feature_update event has been ingested yet." },
      ),
      page.next_token ? h("p", { class: "hint" }, "More groups exist than shown here (the first 100 by name).") : null,
    );
  } catch (error) {
    if (!isAbort(error)) replace(holder, h("p", { role: "alert" }, describeError(error)));
  }
}

export async function render(ctx) {
  ctx.setTitle("Features");
  const entityId = ctx.query.entity || "";
  const fields = {
    entity: field("Entity id", input({ value: entityId, maxlength: "256" }), { name: "entity", hint: "The id events and predictions name (a user, an account…)." }),
  };
  const lookup = form({
    label: "Look up an entity",
    fields,
    submitLabel: "Show features",
    className: "filters",
    validate: ({ entity }) => (ENTITY_PATTERN.test(entity) ? {} : { entity: "Entity ids are 1-256 letters, digits or . _ : @ / - (starting with a letter or digit)" }),
    submit: async ({ entity }) => ctx.navigate(routeWithQuery(["features"], { entity })),
  });
  const result = h("div", { "aria-live": "polite" });
  const seen = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  add(ctx.root, h("h1", {}, "Online features"), lookup.form, result, section("Feature groups", seen));
  groupsSeen(ctx, seen);
  if (!entityId) return;
  if (!ENTITY_PATTERN.test(entityId)) {
    replace(result, h("p", { role: "alert" }, "This is not a valid entity id."));
    return;
  }
  const entity = await api(`/entities/${encodeURIComponent(entityId)}/features`, { signal: ctx.signal });
  const groups = (entity.groups || []).filter((g) => !ctx.query.group || g.group === ctx.query.group);
  const aggregates = Object.entries(entity.aggregates || {});
  replace(
    result,
    h("h2", {}, `Entity ${entity.entity_id}`),
    groups.length || aggregates.length ? null : h("p", {}, "The store holds nothing live for this entity (never seen, expired or purged)."),
    ...groups.map((group) =>
      section(
        `Group ${group.group}`,
        definitions([
          ["Event time", time(group.event_time)],
          ["From event", h("code", {}, group.event_id)],
          ["Expires", group.expires_at ? time(group.expires_at) : "never"],
        ]),
        table(
          [
            { label: "Feature", value: ([name]) => name },
            { label: "Value", value: ([, value]) => valueText(value) },
          ],
          Object.entries(group.values || {}),
          { caption: `Latest values of ${group.group}` },
        ),
      ),
    ),
    aggregates.length
      ? section(
          "Aggregates",
          table(
            [
              { label: "Aggregate", value: ([name]) => name },
              { label: "Value", numeric: true, value: ([, value]) => valueText(value) },
            ],
            aggregates,
            { caption: "Counts, sums and last seen (updated by every event)" },
          ),
        )
      : null,
  );
}
