//! The subset of Go's `text/template` that Prometheus alert labels and
//! annotations use, with Prometheus's template functions, so that rule files
//! written for Prometheus expand to the same text here.
//!
//! Entry points: [`Template::parse`] + [`Template::execute`] for any data, and
//! [`expand_alert`] / [`check_alert_template`] for alert rules, which add the
//! `$labels`, `$externalLabels`, `$externalURL` and `$value` variables exactly
//! as Prometheus does (by prepending their definitions to the text).

mod exec;
pub mod format;
pub mod funcs;
mod parse;
pub mod value;

use std::collections::BTreeMap;

pub use funcs::{Env, QueryFn, QuerySample};
pub use value::Value;

use parse::{Node, Operand, Pipeline};

/// A template that failed to parse or to execute.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        message: String,
    },
    #[error("template: {name}:{line}: executing {name:?}: {message}")]
    Exec {
        name: String,
        line: usize,
        message: String,
    },
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `text`; undefined variables and unknown functions are parse errors, as in Go.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let nodes = parse::parse(name, text)?;
        let mut scope = vec![String::new()];
        check_vars(name, &nodes, &mut scope)?;
        Ok(Template {
            name: name.to_string(),
            nodes,
        })
    }

    /// Executes the template with `data` as `.` and `$`.
    pub fn execute(&self, data: &Value, env: &Env) -> Result<String, TemplateError> {
        exec::execute(&self.name, &self.nodes, data, env)
    }
}

fn check_pipeline(name: &str, p: &Pipeline, scope: &mut Vec<String>) -> Result<(), TemplateError> {
    fn operand(
        name: &str,
        line: usize,
        op: &Operand,
        scope: &mut Vec<String>,
    ) -> Result<(), TemplateError> {
        match op {
            Operand::Var(v, _) if !scope.iter().any(|s| s == v) => Err(TemplateError::Parse {
                name: name.to_string(),
                line,
                message: format!("undefined variable \"${v}\""),
            }),
            Operand::Sub(inner, _) => check_pipeline(name, inner, scope),
            _ => Ok(()),
        }
    }
    for cmd in &p.cmds {
        for op in &cmd.args {
            operand(name, p.line, op, scope)?;
        }
    }
    if p.assign {
        for v in &p.vars {
            if !scope.contains(v) {
                return Err(TemplateError::Parse {
                    name: name.to_string(),
                    line: p.line,
                    message: format!("undefined variable \"${v}\""),
                });
            }
        }
    } else {
        scope.extend(p.vars.iter().cloned());
    }
    Ok(())
}

fn check_vars(name: &str, nodes: &[Node], scope: &mut Vec<String>) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(_) | Node::Break | Node::Continue => {}
            Node::Action(p) => check_pipeline(name, p, scope)?,
            Node::If {
                cond,
                then,
                otherwise,
            }
            | Node::With {
                cond,
                then,
                otherwise,
            } => {
                let mark = scope.len();
                check_pipeline(name, cond, scope)?;
                check_vars(name, then, scope)?;
                check_vars(name, otherwise, scope)?;
                scope.truncate(mark);
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => {
                let mark = scope.len();
                check_pipeline(name, pipe, scope)?;
                check_vars(name, body, scope)?;
                check_vars(name, otherwise, scope)?;
                scope.truncate(mark);
            }
        }
    }
    Ok(())
}

/// The definitions Prometheus prepends to every alert label and annotation template.
const ALERT_DEFS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// What an alert template sees: Prometheus's `AlertTemplateData`.
#[derive(Debug, Clone)]
pub struct AlertData<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
}

impl AlertData<'_> {
    fn to_value(&self) -> Value {
        let map = |m: &BTreeMap<String, String>| {
            Value::string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        };
        Value::Struct(vec![
            ("Labels".to_string(), map(self.labels)),
            ("ExternalLabels".to_string(), map(self.external_labels)),
            (
                "ExternalURL".to_string(),
                Value::Str(self.external_url.to_string()),
            ),
            ("Value".to_string(), Value::Float(self.value)),
        ])
    }
}

/// Template name Prometheus uses for a rule's templates.
fn alert_template_name(alert: &str) -> String {
    format!("__alert_{alert}")
}

/// Checks that an alert label/annotation template parses (what `promtool check rules` does).
pub fn check_alert_template(alert: &str, text: &str) -> Result<(), TemplateError> {
    Template::parse(&alert_template_name(alert), &format!("{ALERT_DEFS}{text}")).map(|_| ())
}

/// Expands an alert label or annotation template as Prometheus does.
/// `now_secs` is the evaluation time; `query` backs the `query` function.
pub fn expand_alert(
    alert: &str,
    text: &str,
    data: &AlertData,
    now_secs: f64,
    query: Option<QueryFn>,
) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let tmpl = Template::parse(&alert_template_name(alert), &format!("{ALERT_DEFS}{text}"))?;
    let env = Env {
        now_secs,
        external_url: data.external_url,
        query,
    };
    tmpl.execute(&data.to_value(), &env)
}

/// Expands like [`expand_alert`] but returns Prometheus's in-band error text on failure,
/// which is what ends up in the alert when a template is broken.
pub fn expand_alert_or_error(
    alert: &str,
    text: &str,
    data: &AlertData,
    now_secs: f64,
    query: Option<QueryFn>,
) -> String {
    expand_alert(alert, text, data, now_secs, query).unwrap_or_else(|e| {
        let stage = match e {
            TemplateError::Parse { .. } => "parsing",
            TemplateError::Exec { .. } => "executing",
        };
        format!(
            "<error expanding template: error {stage} template {}: {e}>",
            alert_template_name(alert)
        )
    })
}

#[cfg(test)]
mod tests;
