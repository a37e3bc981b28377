//! JSON Schema (draft-07) of `sluice.yaml`: `sluice schema config`. The
//! `targets` section is described field by field (its drivers: `process`,
//! `ssh`, `systemd`, `compose`, `kubernetes`); the other sections are named
//! with their purpose and documented in docs/service.md.

use serde_json::{Value as J, json};

fn s(desc: &str) -> J {
    json!({"type": "string", "description": desc})
}

fn argv(desc: &str) -> J {
    json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "description": desc})
}

fn object(required: &[&str], props: J) -> J {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": props})
}

/// A duration such as `30s`, `5m`, `1h30m`.
fn duration(desc: &str, default: &str) -> J {
    json!({"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$", "default": default, "description": desc})
}

fn process() -> J {
    object(
        &["command"],
        json!({
            "command": argv("Program and arguments (no shell)."),
            "cwd": s("Working directory."),
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "autostart": {"type": "boolean", "default": false, "description": "`sluice serve` starts it when its URL does not answer."}
        }),
    )
}

fn ssh() -> J {
    let host = object(
        &["name"],
        json!({
            "name": s("Its name in runbooks (`hosts: [p1]`, `target: primary/p1`): letters, digits, `.`, `_`, `-`."),
            "host": s("Address or DNS name (default: `name`)."),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "Overrides `ssh.port`."},
            "user": s("Overrides `ssh.user`."),
            "url": s("This host's URL (default: the target's URL with this host's address)."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Labels steps select hosts by (`hosts: {role: standby}`)."}
        }),
    );
    object(
        &["hosts"],
        json!({
            "hosts": {"type": "array", "items": host, "minItems": 1, "description": "The inventory, in order (scaling uses this order)."},
            "user": s("Login user."),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 22},
            "identity_file": s("Private key file (default: the agent and the client's defaults)."),
            "known_hosts": s("known_hosts file; host keys are checked strictly."),
            "accept_new_host_keys": {"type": "boolean", "default": false, "description": "Record the key of a host never seen before (StrictHostKeyChecking=accept-new)."},
            "config_file": s("An ssh client config file (`ssh -F`)."),
            "connect_timeout": duration("TCP connect and SSH handshake.", "10s"),
            "command_timeout": duration("One remote command, then it is killed.", "5m"),
            "program": {"type": "string", "default": "ssh", "description": "The OpenSSH client."},
            "commands": object(&[], json!({
                "start": argv("Starts the service on a host."),
                "stop": argv("Stops it."),
                "status": argv("Exits 0 when it runs on the host."),
                "restart": argv("Restarts it (default: stop, then start).")
            }))
        }),
    )
}

fn systemd() -> J {
    object(
        &["unit"],
        json!({
            "unit": s("Unit name, e.g. `sluice-engine.service`."),
            "user_manager": {"type": "boolean", "default": false, "description": "`systemctl --user`."},
            "systemctl": {"type": "array", "items": {"type": "string"}, "default": ["systemctl"], "description": "Program and leading arguments, e.g. `[sudo, -n, systemctl]`."}
        }),
    )
}

fn compose() -> J {
    object(
        &["project", "service"],
        json!({
            "project": s("Compose project name (`-p`), lower case."),
            "service": s("The service in that project."),
            "files": {"type": "array", "items": {"type": "string"}, "description": "Compose files (`-f`)."},
            "project_dir": s("`--project-directory`."),
            "command": {"type": "array", "items": {"type": "string"}, "default": ["docker", "compose"]}
        }),
    )
}

fn kubernetes() -> J {
    object(
        &["name"],
        json!({
            "kind": {"enum": ["Deployment", "StatefulSet"], "default": "Deployment"},
            "name": s("The workload's name."),
            "namespace": s("Default: the kubeconfig context's, the pod's own in-cluster, else `default`."),
            "api_url": s("API server URL (with `token`/`token_file` and `ca_file`)."),
            "kubeconfig": s("A kubeconfig file."),
            "context": s("Context in the kubeconfig (default: its current context)."),
            "in_cluster": {"type": "boolean", "default": false, "description": "Use the pod's service account."},
            "token": s("Bearer token (a secret)."),
            "token_file": s("File holding the bearer token, re-read at every call."),
            "ca_file": s("PEM file of the API server's CA."),
            "replicas": {"type": "integer", "minimum": 1, "default": 1, "description": "What `process.start` brings a stopped workload back to when it does not remember its count."},
            "request_timeout": duration("One API request.", "10s")
        }),
    )
}

/// One target: where it is, and at most one driver section.
pub fn target_schema() -> J {
    let mut t = object(
        &["url"],
        json!({
            "url": s("Base URL of its HTTP interface (the admin API for sluice-engine)."),
            "token": s("Bearer token for that interface (a secret; `${ENV}` substitution)."),
            "health": {"type": "string", "default": "/health", "description": "Path answering 2xx when an instance is healthy; \"\" for none."},
            "process": process(),
            "ssh": ssh(),
            "systemd": systemd(),
            "compose": compose(),
            "kubernetes": kubernetes()
        }),
    );
    t["description"] = json!(
        "A system runbooks act on. Its driver: `process` (local), `systemd`, `compose` or `kubernetes` (at most one); `ssh` is the inventory hosts a systemd/compose target runs on, or with `ssh.commands` a driver of its own."
    );
    t
}

/// One channel: exactly one kind.
pub fn channel_schema() -> J {
    let kind = |name: &str, body: J| json!({"type": "object", "additionalProperties": false, "required": [name], "properties": {name: body}});
    json!({
        "description": "A notification channel: `slack`, `email`, `webhook`, `pagerduty` or `teams` (docs/notifications.md).",
        "oneOf": [
            kind("slack", object(&[], json!({
                "webhook_url": s("Incoming-webhook mode: the webhook URL (a secret)."),
                "bot_token": s("App mode: the bot token, xoxb-… (a secret); posts through chat.postMessage."),
                "channel": s("App mode: the conversation to post to (C0123ABCD or #name)."),
                "signing_secret": s("App mode: the signing secret that authenticates button clicks (a secret)."),
                "approvers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Slack user IDs allowed to approve or reject from Slack → the name recorded on the run. With signing_secret, approval requests carry Approve / Reject buttons."},
                "api_url": {"type": "string", "default": "https://slack.com/api"}
            }))),
            kind("email", object(&["smtp", "from", "to"], json!({
                "smtp": object(&["host"], json!({
                    "host": s("SMTP server."),
                    "port": {"type": "integer"},
                    "tls": {"enum": ["starttls", "tls", "none"], "default": "starttls"},
                    "username": s("Login."),
                    "password": s("Password (a secret).")
                })),
                "from": s("Sender address."),
                "to": {"type": "array", "items": {"type": "string"}, "minItems": 1}
            }))),
            kind("webhook", object(&["url"], json!({
                "url": s("Where the signed JSON is POSTed."),
                "secret": {"type": "string", "minLength": 16, "description": "HMAC-SHA256 signing secret."},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Extra headers (secrets)."}
            }))),
            kind("pagerduty", object(&["routing_key"], json!({
                "routing_key": s("Events API v2 integration key (a secret)."),
                "url": {"type": "string", "default": "https://events.pagerduty.com/v2/enqueue"},
                "severity": {"enum": ["critical", "error", "warning", "info"], "default": "error"},
                "source": {"type": "string", "default": "sluice"}
            }))),
            kind("teams", object(&["webhook_url"], json!({"webhook_url": s("Teams Workflows webhook URL (a secret).")})))
        ]
    })
}

/// The whole file.
pub fn config_schema() -> J {
    let section = |d: &str| json!({"description": d});
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "sluice.yaml",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "targets": {"type": "object", "additionalProperties": target_schema(), "description": "Systems the runbooks act on, by name."},
            "kafka": section("Kafka clusters by name: `{brokers, properties}`."),
            "metrics": section("Scrape targets and interval, or a remote Prometheus (docs/service.md)."),
            "rules": {"type": "array", "items": {"type": "string"}, "description": "Alert rule files or directories."},
            "runbooks": {"type": "array", "items": {"type": "string"}, "description": "Runbook files or directories."},
            "channels": {"type": "object", "additionalProperties": channel_schema(), "description": "Notification channels by name."},
            "store": s("Run history: `sqlite://path` or `postgres://…`."),
            "api": section("`listen` and `tokens` with roles."),
            "env": {"type": "array", "items": {"type": "string"}, "description": "Environment variables templates may read."},
            "secrets": {"type": "object", "additionalProperties": {"type": "string"}},
            "service": section("The long-running service's settings (docs/service.md)."),
            "alerting": section("Routes, receivers, inhibition, silences, maintenance windows."),
            "hooks": section("Webhook triggers and their sender authentication."),
            "vault": {
                "type": "object", "additionalProperties": false, "required": ["address"],
                "description": "HashiCorp Vault / OpenBao (KV v2) for `${VAULT:path#key}` in any string (docs/notifications.md).",
                "properties": {
                    "address": s("`https://vault.example:8200`."),
                    "token": s("A token, e.g. `${VAULT_TOKEN}`; or `approle`."),
                    "approle": {"type": "object", "additionalProperties": false, "required": ["role_id", "secret_id"],
                        "properties": {"role_id": s("AppRole role ID."), "secret_id": s("AppRole secret ID."), "mount": s("Auth mount (default `approle`).")}},
                    "mount": s("The KV v2 engine's mount (default `secret`)."),
                    "namespace": s("Namespace (Vault Enterprise, OpenBao)."),
                    "timeout": s("Per request (default 10s).")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_schema_describes_every_driver() {
        let s = config_schema();
        let t = &s["properties"]["targets"]["additionalProperties"]["properties"];
        for driver in ["process", "ssh", "systemd", "compose", "kubernetes"] {
            assert_eq!(t[driver]["type"], "object", "{driver}");
            assert_eq!(t[driver]["additionalProperties"], false, "{driver}");
        }
        assert!(t["ssh"]["properties"]["hosts"]["items"]["properties"]["labels"].is_object());
        assert_eq!(
            t["kubernetes"]["properties"]["kind"]["enum"][1],
            "StatefulSet"
        );
    }
}
