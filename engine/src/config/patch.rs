//! `PUT /admin/config`: a JSON merge patch (RFC 7386) applied to the current
//! config and validated exactly like `--config-check`.

use serde_json::Value;

use super::{ConfigError, EngineConfig, load_str};

/// Applies `patch` to `target` in place (RFC 7386: null removes a member).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The config that results from patching `current`, or every problem with it.
pub fn apply_patch(current: &EngineConfig, patch: &Value) -> Result<EngineConfig, ConfigError> {
    let mut doc = serde_json::to_value(current).unwrap_or(Value::Null);
    merge_patch(&mut doc, patch);
    // JSON is YAML: validate the merged document through the one loader.
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    load_str("PUT /admin/config", &text).map_err(|mut e| {
        for d in &mut e.diagnostics {
            // Positions in the merged document mean nothing to the caller; the field path does.
            d.line = 0;
            d.column = 0;
        }
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_semantics() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut t, &json!({"a": {"b": null, "e": 3}, "d": {"x": 1}}));
        assert_eq!(t, json!({"a": {"c": 2, "e": 3}, "d": {"x": 1}}));
    }

    #[test]
    fn valid_patch_applies_and_invalid_names_the_field() {
        let base = EngineConfig::default();
        let c = apply_patch(
            &base,
            &json!({"resource_limits": {"max_total_memory": 2147483648u64}}),
        )
        .unwrap();
        assert_eq!(c.resource_limits.max_total_memory.value, 2147483648);
        let err =
            apply_patch(&base, &json!({"resource_limits": {"max_total_memory": 10}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("resource_limits.max_operator_memory"),
            "{err}"
        );
        let err = apply_patch(&base, &json!({"performance": {"batch_size": 1}})).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `performance`"),
            "{err}"
        );
        let err = apply_patch(&base, &json!({"processing": {"parallelism": "x"}})).unwrap_err();
        assert!(err.to_string().contains("processing.parallelism"), "{err}");
    }
}
