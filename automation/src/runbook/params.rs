//! Parameter values: typed, checked against their spec, defaults filled in.

use std::collections::BTreeMap;

use serde_json::Value as J;

use super::model::{ParamSpec, ParamType, Runbook};
use crate::duration::Duration;

/// Converts a given value (JSON, or a string from `--param k=v`) to the parameter's type and checks it.
pub fn coerce(name: &str, spec: &ParamSpec, value: &J) -> Result<J, String> {
    let bad = |what: &str| format!("parameter `{name}`: expected {what}, got {value}");
    let out = match spec.ty {
        ParamType::String => match value {
            J::String(s) => J::String(s.clone()),
            J::Number(n) => J::String(n.to_string()),
            J::Bool(b) => J::String(b.to_string()),
            _ => return Err(bad("a string")),
        },
        ParamType::Int => match value {
            J::Number(n) if n.is_i64() => J::from(n.as_i64().unwrap_or_default()),
            J::String(s) => J::from(s.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
            _ => return Err(bad("an integer")),
        },
        ParamType::Float => match value {
            J::Number(n) => J::from(n.as_f64().unwrap_or_default()),
            J::String(s) => J::from(s.trim().parse::<f64>().map_err(|_| bad("a number"))?),
            _ => return Err(bad("a number")),
        },
        ParamType::Bool => match value {
            J::Bool(b) => J::Bool(*b),
            J::String(s) if matches!(s.as_str(), "true" | "yes" | "1") => J::Bool(true),
            J::String(s) if matches!(s.as_str(), "false" | "no" | "0") => J::Bool(false),
            _ => return Err(bad("true or false")),
        },
        ParamType::Duration => match value {
            J::String(s) => {
                let d: Duration = s.parse().map_err(|e| format!("parameter `{name}`: {e}"))?;
                J::String(d.to_string())
            }
            _ => return Err(bad("a duration like `10m`")),
        },
        ParamType::Enum => {
            let s = match value {
                J::String(s) => s.clone(),
                J::Number(n) => n.to_string(),
                _ => return Err(bad("a string")),
            };
            if !spec.values.contains(&s) {
                return Err(format!(
                    "parameter `{name}`: `{s}` is not one of {}",
                    spec.values.join(", ")
                ));
            }
            J::String(s)
        }
    };
    if let Some(n) = out.as_f64() {
        if let Some(min) = spec.min
            && n < min
        {
            return Err(format!(
                "parameter `{name}`: {n} is below the minimum {min}"
            ));
        }
        if let Some(max) = spec.max
            && n > max
        {
            return Err(format!(
                "parameter `{name}`: {n} is above the maximum {max}"
            ));
        }
    }
    if let (Some(pattern), J::String(s)) = (&spec.pattern, &out) {
        let re = regex::Regex::new(&format!("^(?:{})$", pattern.value))
            .map_err(|e| format!("parameter `{name}`: invalid pattern: {e}"))?;
        if !re.is_match(s) {
            return Err(format!(
                "parameter `{name}`: `{s}` does not match `{}`",
                pattern.value
            ));
        }
    }
    Ok(out)
}

/// Resolves every declared parameter from the given values; `render` expands templated defaults.
/// Returns every problem (unknown, missing, invalid), not just the first.
pub fn resolve(
    runbook: &Runbook,
    given: &BTreeMap<String, J>,
    render: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Map<String, J>, Vec<String>> {
    let mut errors = Vec::new();
    for name in given.keys() {
        if runbook.param(name).is_none() {
            let names: Vec<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
            errors.push(crate::yaml::de::unknown_message("parameter", name, &names));
        }
    }
    let mut out = serde_json::Map::new();
    for p in &runbook.params {
        let name = p.name.as_str();
        let value = match (given.get(name), &p.spec.default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(default)) => match &default.value {
                J::String(s) if s.contains("{{") => match render(s) {
                    Ok(r) => Some(J::String(r)),
                    Err(e) => {
                        errors.push(format!("parameter `{name}`: default: {e}"));
                        continue;
                    }
                },
                other => Some(other.clone()),
            },
            (None, None) if p.spec.required => {
                errors.push(format!("missing required parameter `{name}`"));
                continue;
            }
            (None, None) => None,
        };
        match value {
            Some(v) => match coerce(name, &p.spec, &v) {
                Ok(v) => {
                    out.insert(name.to_string(), v);
                }
                Err(e) => errors.push(e),
            },
            None => {
                out.insert(name.to_string(), J::Null);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(ty: ParamType) -> ParamSpec {
        ParamSpec {
            ty,
            ..ParamSpec::default()
        }
    }

    #[test]
    fn coerces_cli_strings() {
        assert_eq!(
            coerce("n", &spec(ParamType::Int), &json!("42")).unwrap(),
            json!(42)
        );
        assert_eq!(
            coerce("b", &spec(ParamType::Bool), &json!("yes")).unwrap(),
            json!(true)
        );
        assert_eq!(
            coerce("d", &spec(ParamType::Duration), &json!("90m")).unwrap(),
            json!("1h30m")
        );
        assert!(coerce("n", &spec(ParamType::Int), &json!("4x")).is_err());
    }

    #[test]
    fn enforces_bounds_pattern_and_values() {
        let mut s = spec(ParamType::Int);
        s.min = Some(1.0);
        s.max = Some(10.0);
        assert!(
            coerce("n", &s, &json!(11))
                .unwrap_err()
                .contains("above the maximum")
        );
        let mut s = spec(ParamType::String);
        s.pattern = Some(crate::yaml::de::At::new(
            crate::yaml::Pos::UNKNOWN,
            "[a-z]+".into(),
        ));
        assert!(
            coerce("s", &s, &json!("abc; rm -rf /"))
                .unwrap_err()
                .contains("does not match")
        );
        let mut s = spec(ParamType::Enum);
        s.values = vec!["increase".into(), "decrease".into()];
        assert!(coerce("a", &s, &json!("explode")).is_err());
    }
}
