//! The JSON Schema (draft-07) of runbook files, generated from the model and
//! the step-kind registry, for editors (yaml-language-server) and CI.

use serde_json::{Value as J, json};

use super::model::{RUNBOOK_FIELDS, STEP_FIELDS};
use crate::exec::steps::KINDS;

const DURATION: &str = "^([0-9]+(ms|s|m|h|d|w))+$";

/// The schema document.
pub fn runbook_schema() -> J {
    let duration = json!({"type": "string", "pattern": DURATION, "description": "Duration such as `30s`, `10m`, `1h30m`, `7d`."});
    let channels = json!({"type": "array", "items": {"type": "string"}, "description": "Channel names from sluice.yaml."});
    let mut step_props = serde_json::Map::new();
    step_props.insert("id".into(), json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "Unique id; outputs are `steps.<id>.output`."}));
    step_props.insert("name".into(), json!({"type": "string"}));
    step_props.insert(
        "if".into(),
        json!({"type": "string", "description": "Template; the step runs when it renders truthy."}),
    );
    step_props.insert("timeout".into(), json!({"$ref": "#/definitions/duration"}));
    step_props.insert("retry".into(), json!({"$ref": "#/definitions/retry"}));
    step_props.insert(
        "continue_on_error".into(),
        json!({"type": "boolean", "default": false}),
    );
    step_props.insert("idempotent".into(), json!({"type": "boolean", "default": false, "description": "Safe to re-run if interrupted."}));
    debug_assert_eq!(step_props.len(), STEP_FIELDS.len());
    let mut one_of = Vec::new();
    for k in KINDS.iter() {
        let mut s = (k.schema)(k.name);
        if let Some(obj) = s.as_object_mut()
            && !obj.contains_key("description")
        {
            obj.insert("description".into(), J::String(k.summary.into()));
        }
        step_props.insert(k.name.into(), s);
        one_of.push(json!({"required": [k.name]}));
    }
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://sluice.dev/schema/runbook.json",
        "title": "Sluice runbook",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "steps"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$"},
            "description": {"type": "string"},
            "triggers": {"type": "array", "items": {"$ref": "#/definitions/trigger"}},
            "guards": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "concurrency": {"type": "string", "enum": ["skip", "queue", "allow"], "default": "skip"},
                    "cooldown": {"$ref": "#/definitions/duration"},
                    "max_runs": {"type": "object", "additionalProperties": false, "required": ["count", "window"],
                        "properties": {"count": {"type": "integer", "minimum": 1}, "window": {"$ref": "#/definitions/duration"}}},
                    "escalate": {"type": "object", "additionalProperties": false, "required": ["channels"],
                        "properties": {"channels": channels, "text": {"type": "string"}}},
                    "scope": {"type": "string", "description": "What guards count per (template, e.g. {{alert.labels.instance}}); default: the alert fingerprint, or the whole runbook."}
                }
            },
            "params": {"type": "object", "additionalProperties": {"$ref": "#/definitions/param"}},
            "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}},
            "on_failure": {"type": "array", "items": {"$ref": "#/definitions/step"}},
            "notify": {"type": "object", "additionalProperties": false, "properties": {
                "on_start": channels, "on_success": channels, "on_failure": channels, "on_approval": channels
            }},
            "timeout": {"$ref": "#/definitions/duration"}
        },
        "definitions": {
            "duration": duration,
            "trigger": {
                "oneOf": [
                    {"const": "manual"},
                    {"type": "object", "additionalProperties": false, "required": ["alert"], "properties": {
                        "alert": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "matchers": {"type": "array", "items": {"type": "string"}, "description": "Alertmanager matchers, e.g. severity=~\"critical|page\"."},
                        "on_resolved": {"type": "boolean"}}},
                    {"type": "object", "additionalProperties": false, "required": ["schedule"], "properties": {
                        "schedule": {"type": "string", "description": "Crontab line (5 fields, optional seconds, @daily…)."},
                        "timezone": {"type": "string", "description": "IANA zone, default UTC."},
                        "catch_up": {"type": "string", "enum": ["skip", "once"]}}},
                    {"type": "object", "additionalProperties": false, "required": ["webhook"], "properties": {"webhook": {"type": "string"}}},
                    {"type": "object", "additionalProperties": false, "required": ["manual"], "properties": {"manual": {"type": "boolean"}}}
                ]
            },
            "param": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "type": {"type": "string", "enum": ["string", "int", "float", "bool", "duration", "enum"], "default": "string"},
                    "description": {"type": "string"},
                    "default": {},
                    "required": {"type": "boolean"},
                    "pattern": {"type": "string"},
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "values": {"type": "array", "items": {"type": "string"}}
                }
            },
            "retry": {
                "type": "object", "additionalProperties": false, "required": ["attempts"],
                "properties": {
                    "attempts": {"type": "integer", "minimum": 1},
                    "backoff": {"$ref": "#/definitions/duration"},
                    "max_backoff": {"$ref": "#/definitions/duration"},
                    "jitter": {"type": "boolean", "default": true},
                    "on": {"type": "array", "items": {"type": "string", "enum": ["transient", "timeout", "any"]}}
                }
            },
            "step": {"type": "object", "additionalProperties": false, "properties": step_props, "oneOf": one_of}
        }
    });
    debug_assert_eq!(
        schema["properties"].as_object().map(|o| o.len()),
        Some(RUNBOOK_FIELDS.len())
    );
    schema
}
