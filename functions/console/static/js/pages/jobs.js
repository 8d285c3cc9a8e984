// Batch jobs: a model's jobs with their progress, and per job its counts, failed chunks, the
// rejected rows with their reasons, and downloads of the results.

import { api, isAbort } from "../api.js";
import { progress } from "../charts.js";
import { add, definitions, formatBytes, formatNumber, h, notice, replace, route, routeWithQuery, section, statusBadge, table, time } from "../dom.js";
import { describeError, field, form, input } from "../forms.js";

const REFRESH_MS = 2000;
const REJECTS_PAGE = 50;
const JOB_ID = /^[0-9a-f]{20}$/;

function jobProgress(job) {
  if (job.status === "planning") return h("span", { class: "muted" }, "planning…");
  return progress(`Chunks of job ${job.job_id}`, job.done_chunks, job.total_chunks);
}

async function list(ctx) {
  ctx.setTitle("Batch jobs");
  const model = ctx.query.model || "";
  const fields = {
    model: field("Model", input({ value: model, maxlength: "63", list: "job-models" }), { name: "model" }),
    job: field("Or a job id", input({ maxlength: "20" }), { name: "job" }),
  };
  const options = h("datalist", { id: "job-models" });
  const chooser = form({
    label: "Find jobs",
    fields,
    submitLabel: "Show",
    className: "filters",
    extra: [options],
    validate: (values) => {
      if (values.job) return JOB_ID.test(values.job) ? {} : { job: "A job id is 20 lower-case hexadecimal characters." };
      if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(values.model)) return { model: "Enter a model name (or a job id)." };
      return {};
    },
    submit: async (values) => ctx.navigate(values.job ? route("jobs", values.job) : routeWithQuery(["jobs"], { model: values.model })),
  });
  add(ctx.root, h("h1", {}, "Batch jobs"), h("p", { class: "lede" }, "Files dropped under input/<model>/ in the batch bucket (or submitted with mlambda batch submit) are scored in chunks."), chooser.form);
  if (ctx.can("registry:read")) {
    api("/models", { query: { limit: 100 }, signal: ctx.signal })
      .then((page) => options.append(...(page.models || []).map((m) => h("option", { value: m.name }))))
      .catch(() => {});
  }
  if (!model) return;
  const results = h("div", { "aria-live": "polite" });
  add(ctx.root, results);
  const page = await api("/jobs", { query: { model, limit: 50, next_token: ctx.query.next_token }, signal: ctx.signal });
  const jobs = page.jobs || [];
  replace(
    results,
    table(
      [
        { label: "Job", value: (j) => h("a", { href: route("jobs", j.job_id) }, j.job_id) },
        { label: "Status", value: (j) => statusBadge(j.status), header: false },
        { label: "Progress", value: jobProgress },
        { label: "Version", value: (j) => (j.model_version ? `v${j.model_version}` : j.alias) },
        { label: "Rows scored", numeric: true, value: (j) => formatNumber(j.rows_scored) },
        { label: "Rows rejected", numeric: true, value: (j) => formatNumber(j.rows_rejected) },
        { label: "Input", value: (j) => j.input?.key || "–" },
        { label: "Submitted", value: (j) => time(j.created_at) },
      ],
      jobs,
      { caption: `Jobs of ${model}, newest first`, empty: `${model} has no batch job.` },
    ),
    page.next_token ? h("nav", { class: "pager", "aria-label": "Job pages" }, h("a", { href: routeWithQuery(["jobs"], { model, next_token: page.next_token }) }, "Older jobs")) : null,
  );
}

function download(file) {
  const label = file.kind === "part" ? `Results, chunk ${file.chunk} (Parquet, ${formatNumber(file.rows)} rows)` : file.kind === "rejects" ? `Rejected rows, chunk ${file.chunk} (CSV, ${formatNumber(file.rows)} rows)` : "Manifest (JSON)";
  // A presigned URL of the batch bucket, fetched by the browser as a download it starts (a
  // navigation): the page itself never reads it (connect-src stays on this origin).
  const url = new URL(file.url);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("a download link must be http(s)");
  const link = document.createElement("a");
  link.setAttribute("href", url.href);
  link.setAttribute("download", file.filename || "");
  link.setAttribute("rel", "noopener noreferrer");
  link.textContent = label;
  return h("li", {}, link, file.bytes ? h("span", { class: "muted" }, ` ${formatBytes(file.bytes)}`) : null);
}

async function rejectsView(ctx, jobId, total) {
  const holder = h("div", {});
  let offset = 0;
  const more = h("button", { type: "button" }, "Show more rejected rows");
  const body = h("tbody");
  const tableElement = h(
    "div",
    { class: "table-wrap" },
    h("table", {}, h("caption", {}, "Rejected rows and why"), h("thead", {}, h("tr", {}, ["File row", "Chunk", "Row in chunk", "Byte offset", "Reason"].map((label) => h("th", { scope: "col" }, label)))), body),
  );
  const load = async () => {
    more.disabled = true;
    const page = await api(`/jobs/${jobId}/rejects`, { query: { offset, limit: REJECTS_PAGE }, signal: ctx.signal });
    for (const row of page.rows || []) {
      const known = (value) => (value === null || value === undefined ? "–" : formatNumber(value));
      body.append(h("tr", {}, h("th", { scope: "row" }, known(row.row)), h("td", {}, String(row.chunk)), h("td", {}, known(row.chunk_row)), h("td", {}, known(row.byte_offset)), h("td", {}, row.reason)));
    }
    offset += (page.rows || []).length;
    more.hidden = offset >= (page.total ?? total) || !(page.rows || []).length;
    more.disabled = false;
  };
  more.addEventListener("click", () => load().catch((error) => holder.append(h("p", { role: "alert" }, describeError(error)))));
  replace(holder, tableElement, more);
  await load();
  return holder;
}

async function detail(ctx) {
  const jobId = ctx.params.id;
  ctx.setTitle(`Job ${jobId}`);
  if (!JOB_ID.test(jobId)) {
    add(ctx.root, h("h1", {}, "No such job"), h("p", {}, "A job id is 20 lower-case hexadecimal characters."));
    return;
  }
  const heading = [
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumbs" }, h("a", { href: "#/jobs" }, "Batch jobs"), " / ", h("span", { "aria-current": "page" }, jobId)),
    h("h1", {}, `Job ${jobId}`),
  ];
  const live = h("div", { "aria-live": "polite" });
  const rest = h("div", {});
  add(ctx.root, ...heading, live, rest);
  let view = await api(`/jobs/${jobId}`, { signal: ctx.signal });
  const draw = () => {
    const job = view.job;
    replace(
      live,
      section(
        "Progress",
        h("p", {}, statusBadge(job.status), job.reason ? ` ${job.error_code ? `${job.error_code}: ` : ""}${job.reason}` : ""),
        jobProgress(job),
        definitions([
          ["Model", job.model ? h("a", { href: routeWithQuery(["jobs"], { model: job.model }) }, job.model) : "–"],
          ["Version", job.model_version ? `v${job.model_version} (${job.alias})` : job.alias],
          ["Input", `${job.input?.key} (${formatBytes(job.input?.size)})`],
          ["Rows read", `${formatNumber(job.rows_in)}${job.rows_expected ? ` of ${job.rows_expected_exact ? "" : "about "}${formatNumber(job.rows_expected)}` : ""}`],
          ["Rows scored", formatNumber(job.rows_scored)],
          ["Rows rejected", formatNumber(job.rows_rejected)],
          ["Submitted", h("span", {}, time(job.created_at), ` by ${job.submitted_by}`)],
          ["Completed", job.completed_at ? time(job.completed_at) : null],
        ]),
        (view.failed || []).length
          ? h(
              "div",
              {},
              notice("bad", `${view.failed.length} chunk(s) failed after their attempts.`),
              table(
                [
                  { label: "Chunk", value: (f) => String(f.chunk) },
                  { label: "Attempts", numeric: true, value: (f) => String(f.attempts) },
                  { label: "Last error", value: (f) => f.last_error || "–" },
                ],
                view.failed,
                { caption: "Failed chunks" },
              ),
              retryButton(ctx, jobId),
            )
          : null,
      ),
    );
  };
  draw();
  while (["planning", "running"].includes(view.job.status) && !(view.failed || []).length) {
    await new Promise((resolve) => window.setTimeout(resolve, REFRESH_MS));
    if (ctx.signal.aborted) return;
    view = await api(`/jobs/${jobId}`, { signal: ctx.signal });
    draw();
  }
  ctx.announce(`Job ${view.job.status}`);
  const blocks = [];
  const files = await api(`/jobs/${jobId}/files`, { signal: ctx.signal }).catch((error) => {
    if (isAbort(error)) throw error;
    return { error };
  });
  if (files.error) blocks.push(section("Results", h("p", { role: "alert" }, describeError(files.error))));
  else {
    const parts = (files.files || []).filter((f) => f.kind !== "rejects");
    const rejects = (files.files || []).filter((f) => f.kind === "rejects");
    blocks.push(
      section(
        "Results",
        parts.length ? h("ul", { class: "link-list" }, parts.map(download)) : h("p", { class: "muted" }, "No result file yet."),
        h("p", { class: "hint" }, `Links expire ${files.expires_in ? `in ${Math.round(files.expires_in / 60)} minutes` : "soon"}; reload the page for new ones. Parquet parts hold the id columns and the predictions; mlambda batch fetch merges them into one file.`),
        rejects.length ? [h("h3", {}, "Rejected rows files"), h("ul", { class: "link-list" }, rejects.map(download))] : null,
      ),
    );
  }
  if (view.job.rows_rejected) {
    const rejected = await rejectsView(ctx, jobId, view.job.rows_rejected).catch((error) => {
      if (isAbort(error)) throw error;
      return h("p", { role: "alert" }, describeError(error));
    });
    blocks.push(section("Rejected rows", h("p", { class: "hint" }, "File rows are known for Parquet inputs; CSV chunks are byte ranges, so a CSV row is found by its byte offset."), rejected));
  }
  else blocks.push(section("Rejected rows", h("p", {}, "No row was rejected.")));
  replace(rest, ...blocks);
}

function retryButton(ctx, jobId) {
  const button = h("button", { type: "button" }, "Retry the unfinished chunks");
  const status = h("p", { class: "form-status", role: "status" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Re-sending…";
    try {
      const result = await api(`/jobs/${jobId}/retry`, { method: "POST", signal: ctx.signal });
      status.textContent = `Re-sent chunks ${result.resent_chunks.join(", ") || "(the last one, to finish the job)"}.`;
      window.setTimeout(() => ctx.navigate(route("jobs", jobId)), 1000);
    } catch (error) {
      if (!isAbort(error)) status.textContent = describeError(error);
      button.disabled = false;
    }
  });
  return h("div", { class: "actions-row" }, button, status);
}

export async function render(ctx) {
  if (ctx.params.id) return detail(ctx);
  return list(ctx);
}

