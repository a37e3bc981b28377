// Sluice web console: one page over the service's JSON API (/api/v1/...).
// No build step and no dependencies. Every value from the API is put into the
// page as text (textContent), never as HTML, so run outputs, alert labels and
// runbook sources cannot inject markup. Signing in exchanges the API token
// for an HttpOnly session cookie (POST /api/v1/session); the page keeps only
// the session's CSRF token, in memory, and sends it with every change.
"use strict";

const REFRESH_MS = 3000;
const TERMINAL = ["succeeded", "failed", "cancelled", "interrupted"];

// ---- small DOM helpers ----------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (s) => h("span", { class: `badge s-${String(s).replace(/[^a-z_]/g, "")}` }, s);
const link = (href, text) => h("a", { href }, text);
const runLink = (id) => link(`#/runs/${encodeURIComponent(id)}`, id);
const runbookLink = (name) => link(`#/runbooks/${encodeURIComponent(name)}`, name);
const pre = (v) => h("pre", {}, typeof v === "string" ? v : JSON.stringify(v, null, 2));
const muted = (t) => h("span", { class: "muted" }, t);

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "Nothing here.");
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function when(t) {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return d.toLocaleString();
}

function duration(from, to) {
  if (!from) return "";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (!(ms >= 0)) return "";
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 120 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function labels(obj) {
  return Object.entries(obj || {}).map(([k, v]) => h("code", { class: "label" }, `${k}=${v} `));
}

function flash(message, isError) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = !message;
}

// ---- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
    this.body = body;
  }
}

function describeError(status, body) {
  if (status === 401) return "Sign in with an API token to do this (401).";
  if (!body || !body.error) return `HTTP ${status}`;
  let msg = body.error;
  if (Array.isArray(body.fields)) {
    msg += ": " + body.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
  }
  return `${msg} (HTTP ${status})`;
}

// Who is signed in ({name, role, csrf_token}), or null; and whether this
// Sluice lets no one read without signing in (it has API tokens).
let session = null;
let signInRequired = false;

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (session && method !== "GET") headers["X-CSRF-Token"] = session.csrf_token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (res.status === 401 && session && path !== "/api/v1/session") {
    // The session ended (expired, or the service restarted): sign in again.
    session = null;
    signinState();
  }
  if (!res.ok && res.status !== 202 && res.status !== 409) throw new ApiError(res.status, data);
  return { status: res.status, body: data };
}

const get = async (path) => (await api("GET", path)).body;

// ---- views ----------------------------------------------------------------

async function overview() {
  const [status, alerts, waiting, recent] = await Promise.all([
    get("/api/v1/status"),
    get("/api/v1/alerts"),
    get("/api/v1/runs?status=waiting_approval&limit=50"),
    get("/api/v1/runs?limit=10"),
  ]);
  const firing = alerts.alerts.filter((a) => a.state === "firing");
  const card = (n, what, cls) => h("div", { class: `card ${cls || ""}` }, h("div", { class: "n" }, n), h("div", { class: "muted" }, what));
  const out = [
    h("h1", {}, "Overview"),
    h("div", { class: "cards" },
      card(status.active_runs.length, "runs executing here"),
      card(waiting.runs.length, "waiting for approval"),
      card(firing.length, "alerts firing"),
      card(status.runbooks, "runbooks in effect"),
      card(status.invalid_files, "invalid files"),
      card(status.kill_switch ? "ON" : "off", "kill switch")),
  ];
  if (status.kill_switch) {
    out.push(h("div", { class: "panel attention" }, "The kill switch is on: no run starts until an admin turns it off (PUT /api/v1/kill-switch)."));
  }
  if (status.invalid_files > 0) {
    out.push(h("div", { class: "panel attention" }, `${status.invalid_files} file(s) do not validate (a broken file never replaces a working one: its last good version, if any, stays in effect). `, link("#/runbooks", "See the problems.")));
  }
  if (waiting.runs.length) {
    out.push(h("h2", {}, "Waiting for approval"), runsTable(waiting.runs));
  }
  if (firing.length) {
    out.push(h("h2", {}, "Firing alerts"), alertsTable(firing));
  }
  out.push(h("h2", {}, "Recent runs"), runsTable(recent.runs));
  out.push(h("h2", {}, "Scrape targets"), table(["target", "up", "samples", "took", "error"],
    status.scrape.map((s) => [s.target, badge(s.up ? "ok" : "error"), s.samples, `${s.duration_ms} ms`, s.error || ""]),
    "No targets scraped."));
  out.push(h("h2", {}, "Service"), kv([
    ["instance", status.instance ? `${status.instance.id} (${status.instance.name})` : ""], ["version", status.version], ["started", when(status.started_at)],
    ["store", status.store],
    ["last reload", status.last_reload ? when(status.last_reload.at || status.last_reload) : ""],
  ]));
  // Instances sharing the store, with their leases (a heartbeat that stops
  // lets another instance take over the runs).
  out.push(h("h2", {}, "Instances"), table(["instance", "started", "last heartbeat", "stopped"],
    (status.instances || []).map((i) => [h("code", {}, i.id), when(i.started_at), when(i.heartbeat_at), i.stopped_at ? when(i.stopped_at) : badge("active")]),
    "No instance."));
  return out;
}

function runsTable(runs) {
  return table(["run", "runbook", "status", "trigger", "by", "started", "took", "error"],
    runs.map((r) => [runLink(r.id), runbookLink(r.runbook), badge(r.status), r.trigger, r.who || "",
      when(r.started_at || r.queued_at), duration(r.started_at, r.finished_at), r.error || ""]),
    "No runs.");
}

const RUN_FILTERS = ["runbook", "status", "trigger", "fingerprint", "since", "until"];

async function runs(query) {
  const params = new URLSearchParams();
  for (const k of [...RUN_FILTERS, "cursor"]) if (query.get(k)) params.set(k, query.get(k));
  params.set("limit", query.get("limit") || "50");
  const [list, books] = await Promise.all([get(`/api/v1/runs?${params}`), get("/api/v1/runbooks")]);
  const select = (name, options, current) => h("select", { name, onchange: filterRuns },
    h("option", { value: "" }, `any ${name}`),
    options.map((o) => h("option", { value: o, selected: o === current }, o)));
  const text = (name, placeholder, size) => h("input", {
    name, type: "text", size, placeholder, value: query.get(name) || "",
    onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); filterRuns(); } },
  });
  // Paging goes forward with the server's cursor; "newest" starts over.
  const pages = [];
  if (query.get("cursor")) {
    pages.push(h("button", { type: "button", id: "runs-newest", onclick: () => filterRuns(null) }, "← Newest"));
  }
  if (list.next) {
    pages.push(h("button", { type: "button", id: "runs-older", onclick: () => filterRuns(list.next) }, "Older →"));
  }
  return [
    h("h1", {}, "Runs"),
    h("form", { class: "inline", id: "run-filter", onsubmit: (e) => { e.preventDefault(); filterRuns(); } },
      select("runbook", books.runbooks.map((b) => b.name).sort(), query.get("runbook")),
      select("status", ["queued", "running", "waiting_approval", "succeeded", "failed", "cancelled", "interrupted"], query.get("status")),
      select("trigger", ["alert", "schedule", "webhook", "manual"], query.get("trigger")),
      text("fingerprint", "alert fingerprint", 18),
      text("since", "since (RFC 3339)", 22),
      text("until", "until (RFC 3339)", 22),
      h("button", { type: "submit" }, "Filter")),
    runsTable(list.runs),
    h("p", { class: "inline" }, pages),
    h("p", {}, link("#/decisions", "Why did something not run? See the decisions.")),
  ];
}

function filterRuns(cursor) {
  const form = document.getElementById("run-filter");
  const p = new URLSearchParams();
  for (const el of form.elements) if (el.name && el.value) p.set(el.name, el.value.trim());
  if (typeof cursor === "string") p.set("cursor", cursor);
  navigate(`#/runs${p.toString() ? "?" + p : ""}`);
}

// ---- live runs: Server-Sent Events ----------------------------------------

// The open event stream ({id, es}) of the run page shown, and the last
// document it pushed (rendered without asking again).
let stream = null;
let pushed = null;

function closeStream() {
  if (stream) stream.es.close();
  stream = null;
}

// Follows a running run: each `run` event carries its whole document.
function follow(id) {
  if (stream && stream.id === id) return;
  closeStream();
  const es = new EventSource(`/api/v1/runs/${encodeURIComponent(id)}/events`);
  es.addEventListener("run", (e) => {
    const doc = JSON.parse(e.data);
    // The stream ends after a final status; closing keeps it from reconnecting.
    if (TERMINAL.includes(doc.run.status)) closeStream();
    pushed = doc;
    if (quiet()) render(false);
  });
  stream = { id, es };
}

async function run(id) {
  const r = pushed && pushed.run.id === id ? pushed : await get(`/api/v1/runs/${encodeURIComponent(id)}`);
  pushed = null;
  const run = r.run;
  if (!TERMINAL.includes(run.status)) follow(id);
  const out = [h("h1", {}, "Run ", h("code", {}, run.id), " ", badge(run.status))];
  const pending = r.approvals.filter((a) => a.status === "pending");
  for (const a of pending) {
    const comment = h("input", { type: "text", placeholder: "comment (optional)", "aria-label": "comment", class: "approval-comment" });
    const decide = (done, path) => async () => {
      const res = await act("POST", path, { comment: comment.value || undefined });
      if (res) flash(`${done} ${a.step_path} of ${id}.`);
    };
    out.push(h("div", { class: "panel attention approval" },
      h("strong", {}, `Step ${a.step_path} waits for approval`), h("div", {}, a.message),
      h("div", { class: "muted" }, `asked ${when(a.requested_at)}`),
      h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, comment,
        h("button", { type: "button", class: "primary", id: "approve", onclick: decide("Approved", `/api/v1/runs/${encodeURIComponent(id)}/approve`) }, "Approve"),
        h("button", { type: "button", class: "danger", id: "reject", onclick: decide("Rejected", `/api/v1/runs/${encodeURIComponent(id)}/reject`) }, "Reject"))));
  }
  if (!TERMINAL.includes(run.status)) {
    out.push(h("p", {}, h("button", {
      type: "button", class: "danger", id: "cancel",
      onclick: async () => {
        if (!confirm(`Cancel run ${id}? Its on_failure steps run.`)) return;
        const res = await act("POST", `/api/v1/runs/${encodeURIComponent(id)}/cancel`);
        if (res) flash(`Cancel of ${id}: ${JSON.stringify(res.body.cancel)}`);
      },
    }, "Cancel run")));
  }
  const req = run.request || {};
  out.push(kv([
    ["runbook", runbookLink(run.runbook)], ["trigger", run.trigger], ["by", run.who],
    ["queued", when(run.queued_at)], ["started", when(run.started_at)], ["finished", when(run.finished_at)],
    ["took", duration(run.started_at, run.finished_at)], ["owner", run.owner],
    ["executing here", r.executing_here ? "yes" : ""], ["parent run", run.parent_run ? runLink(run.parent_run) : ""],
    ["scope", req.scope], ["scheduled for", when(req.scheduled_at)], ["source", run.source],
  ]));
  if (run.error) out.push(h("div", { class: "panel attention" }, h("strong", {}, "Error: "), run.error));
  if (run.params && Object.keys(run.params).length) out.push(h("h2", {}, "Parameters"), pre(run.params));
  if (req.alert) out.push(h("details", {}, h("summary", {}, "Alert that triggered it"), pre(req.alert)));
  if (req.webhook) out.push(h("details", {}, h("summary", {}, "Webhook payload"), pre(req.webhook)));
  const again = rerunLink(run);
  if (again) out.push(h("p", {}, again));
  const bars = timeline(run, r.steps);
  if (bars) out.push(h("h2", {}, "Timeline"), bars);
  out.push(h("h2", {}, "Steps"), table(["step", "status", "attempts", "started", "took", "error", "details"],
    r.steps.map((s) => [h("code", {}, s.path), badge(s.status), s.attempts, when(s.started_at),
      duration(s.started_at, s.finished_at), s.error || "",
      h("details", {}, h("summary", {}, "inputs / outputs"), h("div", {}, "inputs"), pre(s.inputs), h("div", {}, "outputs"), pre(s.outputs))]),
    "No step has started."));
  if (r.deliveries && r.deliveries.length) {
    out.push(h("h2", {}, "Notifications"), table(["at", "channel", "event", "outcome", "attempts", "error"],
      r.deliveries.map((d) => [when(d.at), d.channel, d.event, badge(d.ok ? "ok" : "failed"), d.attempts, d.error || ""]),
      "No notification was sent."));
  }
  const decided = r.approvals.filter((a) => a.status !== "pending");
  if (decided.length) {
    out.push(h("h2", {}, "Approvals"), table(["step", "decision", "by", "at", "comment"],
      decided.map((a) => [a.step_path, badge(a.status), a.decided_by || "", when(a.decided_at), a.comment || ""])));
  }
  return out;
}

// A link to the runbook's form filled with this run's parameters (secret
// ones are masked in the record, so they are left for the person to give).
function rerunLink(run) {
  const q = new URLSearchParams();
  let masked = 0;
  for (const [k, v] of Object.entries(run.params || {})) {
    if (v === "***") masked += 1;
    else if (v !== null && typeof v !== "object") q.set(`p.${k}`, String(v));
  }
  const note = masked ? ` (${masked} secret parameter${masked > 1 ? "s" : ""} to fill in again)` : "";
  return h("span", {}, link(`#/runbooks/${encodeURIComponent(run.runbook)}?${q}`, "Run again with these parameters…"), muted(note));
}

// Each step as a bar on the run's time axis (a small Gantt chart). Widths are
// set through the CSSOM, which the page's CSP allows (style attributes it
// does not).
function timeline(run, steps) {
  const started = steps.filter((s) => s.started_at);
  if (!started.length) return null;
  const t = (x) => new Date(x).getTime();
  const t0 = Math.min(t(run.started_at || started[0].started_at), ...started.map((s) => t(s.started_at)));
  const ends = started.map((s) => (s.finished_at ? t(s.finished_at) : Date.now()));
  const t1 = Math.max(run.finished_at ? t(run.finished_at) : Date.now(), ...ends, t0 + 1);
  const span = t1 - t0;
  return h("div", { class: "timeline", id: "timeline" }, started.map((s, i) => {
    const bar = h("span", { class: `bar s-${String(s.status).replace(/[^a-z_]/g, "")}`, title: `${s.path}: ${s.status}, ${duration(s.started_at, s.finished_at)}` });
    bar.style.left = `${((t(s.started_at) - t0) / span) * 100}%`;
    bar.style.width = `${Math.max(((ends[i] - t(s.started_at)) / span) * 100, 0.5)}%`;
    return h("div", { class: "lane" }, h("code", { class: "lane-name" }, s.path),
      h("span", { class: "track" }, bar), h("span", { class: "lane-took muted" }, duration(s.started_at, s.finished_at)));
  }), h("div", { class: "muted axis" }, `0 — ${duration(new Date(t0).toISOString(), new Date(t1).toISOString())}`));
}

function triggerText(t) {
  if (t === "manual") return "manual";
  if (t.alert) return `alert ${t.alert}${t.matchers && t.matchers.length ? " {" + t.matchers.join(", ") + "}" : ""}`;
  if (t.schedule) return `cron ${t.schedule} (${t.timezone})`;
  if (t.webhook) return `webhook ${t.webhook}`;
  return JSON.stringify(t);
}

async function runbooks() {
  const lib = await get("/api/v1/runbooks");
  const files = lib.files.filter((f) => !f.valid || (f.warnings && f.warnings.length));
  const out = [h("h1", {}, "Runbooks")];
  for (const f of files.filter((f) => !f.valid)) {
    out.push(h("div", { class: "panel attention file-problems" },
      h("strong", {}, f.path), " does not validate; ",
      f.in_effect === "previous" ? "its previous version stays in effect." : "nothing from it is in effect.",
      h("ul", { class: "problems" }, f.problems.map((p) => h("li", {}, p)))));
  }
  out.push(table(["runbook", "description", "triggers", "steps", "file"],
    lib.runbooks.slice().sort((a, b) => a.name.localeCompare(b.name)).map((b) => [
      runbookLink(b.name), b.description || "", b.triggers.map((t) => h("div", {}, triggerText(t))), b.steps, muted(b.file)]),
    "No runbook is loaded."));
  const warned = files.filter((f) => f.valid && f.warnings.length);
  if (warned.length) {
    out.push(h("h2", {}, "Warnings"), ...warned.map((f) => h("div", { class: "panel" }, h("strong", {}, f.path),
      h("ul", { class: "warnings" }, f.warnings.map((w) => h("li", {}, w))))));
  }
  return out;
}

// Converts a form field to the JSON the API expects for the parameter's type.
function paramValue(spec, raw) {
  if (spec.type === "string" || spec.type === "enum" || spec.type === "duration") return raw;
  if (spec.type === "bool") return raw === "true";
  const n = Number(raw);
  return Number.isFinite(n) ? n : raw;
}

async function runbook(name, query) {
  const [rb, recent] = await Promise.all([
    get(`/api/v1/runbooks/${encodeURIComponent(name)}`),
    get(`/api/v1/runs?runbook=${encodeURIComponent(name)}&limit=20`),
  ]);
  const fields = Object.entries(rb.params || {}).map(([p, spec]) => {
    const def = spec.default === undefined || spec.default === null ? "" : String(spec.default);
    let input;
    if (spec.type === "bool") {
      input = h("select", { name: p }, ["", "true", "false"].map((v) => h("option", { value: v }, v || `default (${def || "none"})`)));
    } else if (spec.type === "enum" && spec.values && spec.values.length) {
      input = h("select", { name: p }, h("option", { value: "" }, `default (${def || "none"})`), spec.values.map((v) => h("option", { value: v }, v)));
    } else {
      input = h("input", { name: p, type: "text", placeholder: def, required: spec.required && !def });
    }
    // "Run again" from a run page fills in that run's parameters.
    const again = query && query.get(`p.${p}`);
    if (again !== null && again !== undefined) input.value = again;
    return h("label", { title: spec.description || "" }, `${p}${spec.required ? " *" : ""} (${spec.type})`, input);
  });
  const plan = h("div", { id: "plan" });
  const form = h("form", { class: "inline", id: "trigger", onsubmit: (e) => e.preventDefault() }, fields,
    h("button", { type: "button", id: "dry-run", onclick: () => trigger(true) }, "Dry run"),
    h("button", { type: "button", class: "primary", id: "start-run", onclick: () => trigger(false) }, "Start run"));
  async function trigger(dry) {
    const params = {};
    for (const el of form.elements) {
      if (el.name && el.value !== "") params[el.name] = paramValue(rb.params[el.name], el.value);
    }
    const res = await act("POST", `/api/v1/runbooks/${encodeURIComponent(name)}/runs`, { params, dry_run: dry });
    if (!res) return;
    if (dry) {
      plan.replaceChildren(h("h2", {}, "Dry run: what would happen"), pre(res.body.plan));
    } else if (res.body.run_id) {
      flash(`${res.body.decision}: run ${res.body.run_id}${res.body.detail ? " — " + res.body.detail : ""}`);
      navigate(`#/runs/${encodeURIComponent(res.body.run_id)}`);
    } else {
      flash(`Not started: ${res.body.decision}${res.body.detail ? " — " + res.body.detail : ""}`, true);
    }
  }
  const g = rb.guards || {};
  const manual = rb.triggers.includes("manual");
  return [
    h("h1", {}, "Runbook ", h("code", {}, rb.name)),
    h("p", {}, rb.description || ""),
    kv([["file", rb.file], ["loaded", when(rb.loaded_at)], ["triggers", rb.triggers.map(triggerText).join("; ")],
      ["concurrency", g.concurrency ? JSON.stringify(g.concurrency) : ""], ["cooldown", g.cooldown],
      ["max runs", g.max_runs ? `${g.max_runs.count} per ${g.max_runs.window}` : ""], ["scope", g.scope]]),
    h("h2", {}, "Start"),
    manual ? null : h("p", { class: "muted" }, "This runbook has no `manual` trigger; starting it here runs it as a manual run all the same."),
    form, plan,
    h("h2", {}, "Recent runs"), successRate(recent.runs), runsTable(recent.runs),
    h("h2", {}, "Flow"), graph(rb.graph),
    h("h2", {}, "Steps"), table(["step", "kind", "idempotent", "line"],
      rb.steps.map((s) => [h("code", {}, s.id), s.kind, s.idempotent ? "yes" : "", s.line])),
    h("details", {}, h("summary", {}, "Source"), pre(rb.source)),
  ];
}

function successRate(list) {
  const done = list.filter((r) => TERMINAL.includes(r.status));
  if (!done.length) return null;
  const ok = done.filter((r) => r.status === "succeeded").length;
  return h("p", { class: "muted", id: "success-rate" }, `${ok} of the last ${done.length} finished runs succeeded (${Math.round((ok / done.length) * 100)}%).`);
}

// The steps in order, nested steps indented under their parallel / for_each,
// with what changes the flow; then what runs when a step fails.
function graph(g) {
  if (!g) return null;
  const node = (s) => {
    const edges = [];
    if (s.if) edges.push(`only if ${s.if}`);
    if (s.retry) edges.push(`up to ${s.retry} attempts`);
    if (s.timeout) edges.push(`timeout ${s.timeout}`);
    if (s.continue_on_error) edges.push("continues on error");
    if (s.kind === "parallel") edges.push("children run at once");
    if (s.kind === "for_each") edges.push("children run for each item");
    return h("li", {}, h("span", { class: "node" }, h("code", {}, s.id), " ", muted(s.kind)),
      edges.length ? h("span", { class: "edge" }, edges.join(" · ")) : null,
      s.children && s.children.length ? h("ol", {}, s.children.map(node)) : null);
  };
  return h("div", { class: "graph", id: "flow" },
    h("ol", {}, g.steps.map(node)),
    g.on_failure.length ? [h("div", { class: "muted" }, "on failure of any step:"), h("ol", { class: "on-failure" }, g.on_failure.map(node))] : null);
}

function alertsTable(list) {
  return table(["alert", "state", "labels", "value", "active since", "firing since", "handled here", "source"],
    list.map((a) => [a.name, badge(a.state), labels(a.labels), a.value === undefined ? "" : String(a.value),
      when(a.active_since), when(a.firing_since), a.handled ? "yes" : "",
      a.source && a.source.type === "rule" ? `rule group ${a.source.group}` : JSON.stringify(a.source)]),
    "No alert is pending or firing.");
}

async function alerts() {
  const [list, rules] = await Promise.all([get("/api/v1/alerts"), get("/api/v1/rules")]);
  const out = [h("h1", {}, "Alerts"), alertsTable(list.alerts), h("h2", {}, "Rules")];
  if (!rules.groups.length) out.push(h("p", { class: "muted" }, "No rule file is loaded."));
  for (const g of rules.groups) {
    out.push(h("h3", {}, g.name, " ", muted(`${g.file} · every ${g.interval_ms / 1000} s · last evaluated ${g.last_evaluation ? when(g.last_evaluation) + ` in ${g.evaluation_ms.toFixed(2)} ms` : "not yet"}`)),
      table(["rule", "expression", "for", "state", "health", "now"], g.rules.map((r) => {
        const value = h("span", { class: "rule-value" });
        const evaluate = h("button", { type: "button", class: "evaluate", onclick: async () => {
          try {
            const res = await get(`/api/v1/query?query=${encodeURIComponent(r.expr)}`);
            const v = res.data.result;
            value.replaceChildren(Array.isArray(v)
              ? (v.length ? v.map((x) => h("div", {}, labels(x.metric), " ", h("strong", {}, x.value ? x.value[1] : ""))) : muted("no series: the condition does not hold"))
              : String(v));
          } catch (e) { value.replaceChildren(muted(e.message)); }
        } }, "Evaluate");
        const state = r.type === "alerting"
          ? [r.firing ? badge(`firing ${r.firing}`) : null, r.pending ? badge(`pending ${r.pending}`) : null, !r.firing && !r.pending ? muted("inactive") : null]
          : muted("recording");
        return [h("code", {}, r.name), h("code", { class: "expr" }, r.expr), r.for || "", state,
          r.last_error ? [badge("error"), " ", h("span", { class: "rule-error" }, r.last_error)] : badge("ok"),
          h("div", {}, evaluate, value)];
      })));
  }
  return out;
}

async function decisions() {
  const d = await get("/api/v1/decisions?limit=200");
  return [
    h("h1", {}, "Trigger decisions"),
    h("p", { class: "muted" }, "Every time a trigger (alert, schedule, webhook, manual) asked for a run, and what the guards decided: the answer to “why didn't it run?”. Kept in memory, newest first, for the last ", String(d.capacity), " decisions of this instance."),
    table(["at", "runbook", "trigger", "decision", "run", "detail", "scope"],
      d.decisions.map((x) => [when(x.at), runbookLink(x.runbook), x.trigger, badge(x.decision),
        x.run_id ? runLink(x.run_id) : "", x.detail || "", x.scope || ""]),
      "No trigger has asked for a run since this instance started."),
  ];
}

async function schedules() {
  const s = await get("/api/v1/schedules");
  return [
    h("h1", {}, "Schedules"),
    table(["runbook", "cron", "timezone", "next fires", "last fire", "catch up"],
      s.schedules.map((x) => [runbookLink(x.runbook), h("code", {}, x.cron), x.timezone,
        x.next.map((t) => h("div", {}, when(t))), when(x.last_fire), JSON.stringify(x.catch_up)]),
      "No runbook has a schedule trigger."),
  ];
}

async function silences() {
  const s = await get("/api/v1/silences");
  const matchers = h("input", { name: "matchers", type: "text", size: 40, placeholder: 'alertname="HighLatency", severity=~"warn|page"' });
  const dur = h("input", { name: "duration", type: "text", size: 6, value: "2h" });
  const comment = h("input", { name: "comment", type: "text", size: 30, placeholder: "why" });
  const create = async () => {
    const list = matchers.value.split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/).map((m) => m.trim()).filter(Boolean);
    const res = await act("POST", "/api/v1/silences", { matchers: list, duration: dur.value, comment: comment.value });
    if (res) flash(`Silence ${res.body.id} created.`);
  };
  return [
    h("h1", {}, "Silences"),
    h("form", { class: "inline", id: "new-silence", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "matchers (comma-separated)", matchers), h("label", {}, "for", dur), h("label", {}, "comment", comment),
      h("button", { type: "button", class: "primary", onclick: create }, "Silence")),
    table(["id", "matchers", "state", "from", "until", "by", "comment", ""],
      s.silences.map((x) => [h("code", {}, x.id), x.matchers.join(", "), badge(x.state), when(x.starts_at), when(x.ends_at),
        x.created_by, x.comment, x.state === "expired" ? "" : h("button", {
          type: "button", class: "danger",
          onclick: async () => { if (await act("DELETE", `/api/v1/silences/${encodeURIComponent(x.id)}`)) flash(`Silence ${x.id} expired.`); },
        }, "Expire")]),
      "No silence."),
    h("h2", {}, "Maintenance windows"), pre(s.maintenance_windows),
  ];
}

async function audit() {
  const a = await get("/api/v1/audit?limit=200");
  return [h("h1", {}, "Audit log"), h("p", { class: "muted" }, "Every change asked of the API, refused ones included, newest first (admin only)."),
    table(["at", "who", "role", "what", "from", "status"], a.events.map((e) => [when(e.at), e.who, e.role || "", h("code", {}, e.what), e.from || "", badge(String(e.status))]),
      "Nothing audited yet.")];
}

// ---- actions, routing, refresh ----------------------------------------------

// Runs a mutation; reports failures in the flash line; re-renders on success.
async function act(method, path, body) {
  try {
    const res = await api(method, path, body);
    if (res.status === 409) {
      flash(describeError(409, res.body), true);
      return null;
    }
    flash("");
    await render(false);
    return res;
  } catch (e) {
    flash(e.message, true);
    return null;
  }
}

const ROUTES = [
  [/^$/, overview, true],
  [/^runs$/, runs, true],
  [/^runs\/(.+)$/, run, false],
  [/^runbooks$/, runbooks, false],
  [/^runbooks\/(.+)$/, runbook, false],
  [/^alerts$/, alerts, true],
  [/^decisions$/, decisions, true],
  [/^schedules$/, schedules, false],
  [/^silences$/, silences, false],
  [/^audit$/, audit, true],
];

let rendering = false;
let again = false;
let live = false;
// Set by an action that navigates, so its message survives the page change.
let keepFlash = false;

function navigate(hash) {
  keepFlash = true;
  location.hash = hash;
}

// One render at a time; a request during one (a navigation while an action
// re-renders) renders again when it ends, so the page shown is the latest.
async function render(clearFlash) {
  if (rendering) {
    again = true;
    return;
  }
  rendering = true;
  again = false;
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const query = new URLSearchParams(qs || "");
  const view = document.getElementById("view");
  for (const a of document.querySelectorAll("nav a")) {
    const target = a.getAttribute("href").replace(/^#\/?/, "");
    a.classList.toggle("active", target === "" ? path === "" : path === target || path.startsWith(target + "/"));
  }
  if (clearFlash) flash("");
  try {
    if (!session && signInRequired) {
      // Nothing to read before signing in: say how, and ask for nothing.
      closeStream();
      view.replaceChildren(h("div", { class: "panel attention", id: "signin-needed" },
        "This Sluice needs a sign-in: paste one of its API tokens above (with sluice up, the admin token is in the file .sluice/api-token)."));
      view.dataset.loaded = "signin";
      live = false;
      return;
    }
    const route = ROUTES.find(([re]) => re.test(path));
    if (!route) {
      view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, location.hash), ". ", link("#/", "Overview")));
      live = false;
      return;
    }
    const m = path.match(route[0]);
    const args = m.slice(1).map(decodeURIComponent);
    if (stream && !(route[1] === run && args[0] === stream.id)) closeStream();
    const nodes = await route[1](...(args.length ? args : [query]), query);
    view.replaceChildren(...[nodes].flat().filter(Boolean));
    view.dataset.loaded = path || "overview";
    live = route[2];
  } catch (e) {
    live = false;
    const signIn = e.status === 401 ? " This Sluice asks for a token to read: sign in above." : "";
    view.replaceChildren(h("div", { class: "panel attention", id: "load-error" }, `Could not load this page: ${e.message}.${signIn}`));
  } finally {
    rendering = false;
    if (again) render(false);
  }
}

// Whether the page may be redrawn: nobody is typing in it or has opened a
// detail, and it is visible.
function quiet() {
  const view = document.getElementById("view");
  const busy = view.contains(document.activeElement) && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName);
  const open = view.querySelector("details[open]");
  return !busy && !open && document.visibilityState === "visible";
}

// Live pages refresh every few seconds (a run page follows its event stream).
function refresh() {
  if (live && quiet()) render(false);
}

function signinState() {
  const has = !!session;
  document.getElementById("token").hidden = has;
  document.getElementById("signin-button").hidden = has;
  document.getElementById("signout").hidden = !has;
  document.getElementById("who").textContent = has ? `${session.name} (${session.role})` : "";
}

// The session of this browser's cookie, if it still has one.
async function loadSession() {
  try {
    const res = await api("GET", "/api/v1/session");
    // A sign-in made while this was on its way wins.
    if (!session && res.body && res.body.signed_in) session = res.body;
    signInRequired = !!(res.body && (res.body.signed_in || res.body.sign_in_required));
  } catch (_) {
    // Signed out: the sign-in form stays.
  }
}

async function init() {
  document.getElementById("signin").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = document.getElementById("token");
    const token = t.value.trim();
    t.value = "";
    if (!token) return;
    try {
      session = (await api("POST", "/api/v1/session", { token })).body;
    } catch (err) {
      session = null;
      flash(err.status === 401 ? "That token is not one of this Sluice's API tokens." : err.message, true);
      signinState();
      return;
    }
    signinState();
    render(true);
  });
  document.getElementById("signout").addEventListener("click", async () => {
    try { await api("DELETE", "/api/v1/session"); } catch (_) { /* signed out anyway */ }
    session = null;
    signinState();
    render(true);
  });
  window.addEventListener("hashchange", () => {
    render(!keepFlash);
    keepFlash = false;
  });
  await loadSession();
  signinState();
  render(true);
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
