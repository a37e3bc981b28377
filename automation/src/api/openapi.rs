//! The service API's routes, described once: the OpenAPI document served at
//! `/api/openapi.json` is built from this table, and a test checks that the
//! router answers every entry.

use serde_json::{Value as J, json};

use super::auth::Role;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No authentication (health, metrics, this document).
    Public,
    /// A bearer token with at least this role.
    Token(Role),
    /// The sender's own secret (hook token or HMAC signature).
    Sender,
}

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// JSON body the route takes, as a short schema.
    pub body: Option<fn() -> J>,
}

const fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        access,
        summary,
        body: None,
    }
}

const V: Access = Access::Token(Role::Viewer);
const O: Access = Access::Token(Role::Operator);
const A: Access = Access::Token(Role::Admin);

/// Every route of the service API.
pub const ROUTES: &[RouteDoc] = &[
    r("GET", "/health", Access::Public, "Liveness."),
    r(
        "GET",
        "/ready",
        Access::Public,
        "Readiness with per-check detail (store, files, rules).",
    ),
    r(
        "GET",
        "/metrics",
        Access::Public,
        "Prometheus metrics of the service.",
    ),
    r("GET", "/api/openapi.json", Access::Public, "This document."),
    RouteDoc {
        body: Some(
            || json!({"type": "object", "description": "Alertmanager webhook payload, version 4."}),
        ),
        ..r(
            "POST",
            "/api/v1/alerts/webhook",
            Access::Sender,
            "Alertmanager webhook receiver: alerts start runbooks like internal ones.",
        )
    },
    RouteDoc {
        body: Some(
            || json!({"type": "object", "description": "Any JSON; templates see it as `webhook`; an object `params` becomes the run's parameters."}),
        ),
        ..r(
            "POST",
            "/api/v1/hooks/{name}",
            Access::Sender,
            "Webhook trigger: starts the runbooks bound to the hook. `Idempotency-Key` makes retries start nothing new.",
        )
    },
    r(
        "GET",
        "/api/v1/runbooks",
        V,
        "Runbooks in effect and every file's validation status.",
    ),
    r(
        "GET",
        "/api/v1/runbooks/{name}",
        V,
        "One runbook: triggers, guards, params, steps, file status.",
    ),
    RouteDoc {
        body: Some(|| {
            json!({"type": "object", "properties": {
                "params": {"type": "object"},
                "dry_run": {"type": "boolean", "default": false}
            }})
        }),
        ..r(
            "POST",
            "/api/v1/runbooks/{name}/runs",
            O,
            "Start a run (202), or show what it would do (`dry_run`). `Idempotency-Key` header: one run per key.",
        )
    },
    r(
        "GET",
        "/api/v1/runs",
        V,
        "Runs, newest first (`runbook`, `status`, `limit` query parameters).",
    ),
    r(
        "GET",
        "/api/v1/runs/{id}",
        V,
        "One run with its steps (inputs, outputs, logs) and approvals.",
    ),
    RouteDoc {
        body: Some(|| json!({"type": "object", "properties": {"comment": {"type": "string"}}})),
        ..r(
            "POST",
            "/api/v1/runs/{id}/approve",
            O,
            "Approve the approval the run waits for.",
        )
    },
    RouteDoc {
        body: Some(|| json!({"type": "object", "properties": {"comment": {"type": "string"}}})),
        ..r(
            "POST",
            "/api/v1/runs/{id}/reject",
            O,
            "Reject the approval the run waits for.",
        )
    },
    r(
        "POST",
        "/api/v1/runs/{id}/cancel",
        O,
        "Cancel a run (its on_failure steps run) or a queued start.",
    ),
    r(
        "GET",
        "/api/v1/alerts",
        V,
        "Pending and firing alerts (internal rules and the Alertmanager webhook).",
    ),
    r("GET", "/api/v1/silences", V, "Silences."),
    RouteDoc {
        body: Some(|| {
            json!({"type": "object", "required": ["matchers"], "properties": {
                "matchers": {"type": "array", "items": {"type": "string"}, "description": "Alertmanager matchers, e.g. alertname=\"X\"."},
                "starts_at": {"type": "string", "format": "date-time"},
                "ends_at": {"type": "string", "format": "date-time"},
                "duration": {"type": "string", "description": "Instead of ends_at, e.g. 2h."},
                "comment": {"type": "string"}
            }})
        }),
        ..r("POST", "/api/v1/silences", O, "Create a silence.")
    },
    r(
        "DELETE",
        "/api/v1/silences/{id}",
        O,
        "Expire a silence now.",
    ),
    r(
        "GET",
        "/api/v1/schedules",
        V,
        "Schedules with their next fires and last claimed fire.",
    ),
    r(
        "GET",
        "/api/v1/query",
        V,
        "PromQL instant query over the scraped metrics (`query`, `time`), Prometheus API format.",
    ),
    r(
        "GET",
        "/api/v1/status",
        V,
        "Instances, kill switch, last reload, scrape targets, maintenance windows.",
    ),
    r(
        "GET",
        "/api/v1/runs/{id}/events",
        V,
        "The run as Server-Sent Events: `run` events carry the document of GET /api/v1/runs/{id} whenever it changes; the stream ends after a final status.",
    ),
    r(
        "GET",
        "/api/v1/rules",
        V,
        "Rule groups: each rule's expression, `for`, labels, pending/firing counts, health and last error; each group's last evaluation.",
    ),
    r(
        "GET",
        "/api/v1/decisions",
        V,
        "Recent admission decisions of this instance (`runbook`, `limit`): why a trigger did or did not start a run.",
    ),
    r(
        "POST",
        "/api/v1/slack/interactions",
        Access::Sender,
        "Slack button clicks on approval requests (Slack's request signature; form-encoded `payload`).",
    ),
    r(
        "GET",
        "/ui/",
        Access::Public,
        "The web console (HTML; its data comes from this API).",
    ),
    RouteDoc {
        body: Some(
            || json!({"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}),
        ),
        ..r(
            "POST",
            "/api/v1/session",
            Access::Public,
            "Console sign-in: exchanges an API token for an HttpOnly, SameSite=Strict session cookie; answers the principal and the session's CSRF token.",
        )
    },
    r(
        "GET",
        "/api/v1/session",
        Access::Public,
        "The principal of the session cookie and its CSRF token, or `signed_in: false`.",
    ),
    r(
        "DELETE",
        "/api/v1/session",
        Access::Public,
        "Console sign-out (needs the session's X-CSRF-Token).",
    ),
    r(
        "POST",
        "/api/v1/reload",
        A,
        "Re-read runbooks and rules now (invalid files keep their previous version).",
    ),
    RouteDoc {
        body: Some(
            || json!({"type": "object", "required": ["on"], "properties": {"on": {"type": "boolean"}}}),
        ),
        ..r(
            "PUT",
            "/api/v1/kill-switch",
            A,
            "Switch automatic runs off (`on: true`) or back on, on every instance.",
        )
    },
    r(
        "GET",
        "/api/v1/audit",
        A,
        "The latest audited mutations (who, what, when, from where).",
    ),
];

/// The OpenAPI 3.0 document.
pub fn document() -> J {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let params: Vec<J> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "401": {"description": "Missing or invalid credentials"},
                "422": {"description": "Invalid input, with field → message details"}
            }
        });
        match route.access {
            Access::Public => {
                op["security"] = json!([]);
            }
            Access::Token(role) => {
                op["security"] = json!([{"bearer": []}, {"session": []}]);
                op["x-sluice-role"] = json!(role.to_string());
            }
            Access::Sender => {
                op["security"] = json!([{"bearer": []}, {"signature": []}]);
            }
        }
        if let Some(body) = route.body {
            op["requestBody"] = json!({"content": {"application/json": {"schema": body()}}});
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Sluice service API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runbooks, runs, approvals, alerts, silences, schedules and webhooks of `sluice serve`."
        },
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `api.tokens` (role viewer, operator or admin)."},
            "session": {"type": "apiKey", "in": "cookie", "name": "sluice_session", "description": "A console session from POST /api/v1/session; a change also needs the session's CSRF token in X-CSRF-Token."},
            "signature": {"type": "apiKey", "in": "header", "name": "X-Sluice-Signature", "description": "sha256=<hex HMAC-SHA256 of the body>; with X-Sluice-Timestamp the signed text is `{timestamp}.{body}`."}
        }}
    })
}
