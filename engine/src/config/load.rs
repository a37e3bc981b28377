//! Reading and checking the config: YAML errors and semantic problems (bad
//! SQL, impossible limits) all become [`Diagnostic`]s naming file, line,
//! column and field path. Checking is pure: no I/O besides reading the file.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde_saphyr::Location;

use super::{EngineConfig, Pos, path_at};
use crate::diagnostic::Diagnostic;

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads and checks a config file.
pub fn load_file(path: &Path) -> Result<EngineConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic::new(
            &file,
            (0, 0),
            "",
            format!("cannot read: {e}"),
        )],
    })?;
    load_str(&file, &text)
}

/// `--config-check`: the same as [`load_file`].
pub fn check_file(path: &Path) -> Result<EngineConfig, ConfigError> {
    load_file(path)
}

/// Parses and checks config text; `file` names it in diagnostics.
pub fn load_str(file: &str, text: &str) -> Result<EngineConfig, ConfigError> {
    let config: EngineConfig = if text.trim().is_empty() {
        EngineConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError {
            diagnostics: vec![yaml_diagnostic(file, text, &e)],
        })?
    };
    let diagnostics = check(file, text, &config);
    if diagnostics.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { diagnostics })
    }
}

fn yaml_diagnostic(file: &str, text: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let loc = e.location().unwrap_or(Location::UNKNOWN);
    let (line, col) = (loc.line() as usize, loc.column() as usize);
    let rendered = e.to_string();
    // The crate's message carries its own position and snippet; keep the first line, minus the position.
    let first = rendered.lines().next().unwrap_or("invalid YAML").to_owned();
    let message = regex::Regex::new(r"(?i)\s*(at )?line \d+,? col(umn)? \d+:?\s*")
        .map(|re| {
            re.replace_all(&first, " ")
                .trim()
                .trim_end_matches(':')
                .to_owned()
        })
        .unwrap_or(first);
    let message = message.trim_start_matches("error:").trim().to_owned();
    let found = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.get(col.saturating_sub(1)..))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
        .unwrap_or_default();
    let message = match message.as_str() {
        "invalid u64" | "invalid u32" | "invalid usize" => {
            format!("expected a non-negative integer, found `{found}`")
        }
        "invalid i32" | "invalid i64" => format!("expected an integer, found `{found}`"),
        "invalid f64" => format!("expected a number, found `{found}`"),
        "invalid bool" => format!("expected true or false, found `{found}`"),
        _ => message,
    };
    let mut path = if line > 0 {
        path_at(text, line)
    } else {
        String::new()
    };
    // A missing field is reported at the end of its mapping: name the field itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        let parent = match path.rfind(['.', '[']) {
            Some(i) if path[i..].starts_with('.') => path[..i].to_owned(),
            _ => String::new(),
        };
        path = if parent.is_empty() {
            field.to_owned()
        } else {
            format!("{parent}.{field}")
        };
    }
    Diagnostic::new(file, (line, col), path, message)
}

fn at<T>(p: &Pos<T>) -> (usize, usize) {
    (p.referenced.line() as usize, p.referenced.column() as usize)
}

/// Semantic checks that serde cannot express; collects every problem.
pub fn check(file: &str, text: &str, c: &EngineConfig) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut err = |pos: (usize, usize), path: &str, msg: String| {
        out.push(Diagnostic::new(file, pos, path, msg))
    };

    let rl = &c.resource_limits;
    if rl.max_total_memory.value == 0 {
        err(
            at(&rl.max_total_memory),
            "resource_limits.max_total_memory",
            "must be greater than 0".into(),
        );
    }
    if rl.max_operator_memory.value > rl.max_total_memory.value {
        err(
            at(&rl.max_operator_memory),
            "resource_limits.max_operator_memory",
            format!(
                "{} exceeds max_total_memory ({}); one operator cannot hold more than the whole engine",
                rl.max_operator_memory.value, rl.max_total_memory.value
            ),
        );
    }
    if rl.max_windows_per_key.value == 0 {
        err(
            at(&rl.max_windows_per_key),
            "resource_limits.max_windows_per_key",
            "must be at least 1".into(),
        );
    }
    if rl.max_aggregation_groups.value == 0 {
        err(
            at(&rl.max_aggregation_groups),
            "resource_limits.max_aggregation_groups",
            "must be at least 1".into(),
        );
    }
    let gc = &c.memory_management.gc_threshold;
    if !(gc.value > 0.0 && gc.value <= 1.0) {
        err(
            at(gc),
            "memory_management.gc_threshold",
            format!("{} is not in (0, 1]", gc.value),
        );
    }
    if c.memory_management.cleanup_interval.value == 0 {
        err(
            at(&c.memory_management.cleanup_interval),
            "memory_management.cleanup_interval",
            "must be at least 1 second".into(),
        );
    }
    let p = &c.processing;
    if p.batch_size.value == 0 {
        err(
            at(&p.batch_size),
            "processing.batch_size",
            "must be at least 1".into(),
        );
    }
    if p.parallelism.value == 0 {
        err(
            at(&p.parallelism),
            "processing.parallelism",
            "must be at least 1".into(),
        );
    } else if p.parallelism.value > p.max_parallelism.value {
        err(
            at(&p.parallelism),
            "processing.parallelism",
            format!(
                "{} exceeds max_parallelism ({})",
                p.parallelism.value, p.max_parallelism.value
            ),
        );
    }
    let cb = &c.circuit_breaker;
    if cb.failure_threshold.value == 0 {
        err(
            at(&cb.failure_threshold),
            "circuit_breaker.failure_threshold",
            "must be at least 1".into(),
        );
    }
    if cb.success_threshold.value == 0 {
        err(
            at(&cb.success_threshold),
            "circuit_breaker.success_threshold",
            "must be at least 1".into(),
        );
    }
    let k = &c.kafka;
    if k.brokers.value.trim().is_empty() {
        err(
            at(&k.brokers),
            "kafka.brokers",
            "must be `embedded` or host:port[,host:port…]".into(),
        );
    }
    if k.group_id.trim().is_empty() {
        err((0, 0), "kafka.group_id", "must not be empty".into());
    }
    for (key, why) in [
        (
            "enable.auto.commit",
            "offsets are committed by the engine after delivery",
        ),
        ("group.id", "set kafka.group_id instead"),
        ("bootstrap.servers", "set kafka.brokers instead"),
    ] {
        if k.consumer.contains_key(key) {
            err(
                position_of_key(text, "consumer", key),
                &format!("kafka.consumer.{key}"),
                format!("cannot be set: {why}"),
            );
        }
    }
    if let Some(acks) = k.producer.get("acks")
        && acks.0 != "all"
        && acks.0 != "-1"
    {
        err(
            position_of_key(text, "producer", "acks"),
            "kafka.producer.acks",
            "must be `all` (at-least-once delivery)".into(),
        );
    }
    if k.demo.enabled && k.demo.rate_per_second.value == 0 {
        err(
            at(&k.demo.rate_per_second),
            "kafka.demo.rate_per_second",
            "must be at least 1".into(),
        );
    }
    if c.admin.listen.value.parse::<SocketAddr>().is_err() {
        err(
            at(&c.admin.listen),
            "admin.listen",
            format!(
                "`{}` is not an address like 127.0.0.1:8080",
                c.admin.listen.value
            ),
        );
    }

    let mut names = HashSet::new();
    for (i, q) in c.queries.iter().enumerate() {
        let base = format!("queries[{i}]");
        if q.name.value.trim().is_empty() {
            err(
                at(&q.name),
                &format!("{base}.name"),
                "must not be empty".into(),
            );
        } else if !names.insert(q.name.value.as_str()) {
            err(
                at(&q.name),
                &format!("{base}.name"),
                format!("duplicate query name `{}`", q.name.value),
            );
        }
        for (field, v) in [
            ("source_topic", &q.source_topic),
            ("sink_topic", &q.sink_topic),
        ] {
            if v.value.trim().is_empty() {
                err(
                    at(v),
                    &format!("{base}.{field}"),
                    "must not be empty".into(),
                );
            }
        }
        if q.source_topic.value == q.sink_topic.value {
            err(
                at(&q.sink_topic),
                &format!("{base}.sink_topic"),
                "must differ from source_topic (the query would read its own output)".into(),
            );
        }
        match crate::sql::plan(&q.sql.value) {
            Err(e) => err(
                sql_position(text, &q.sql, e.position),
                &format!("{base}.sql"),
                e.message,
            ),
            Ok(plan) => {
                if let Some(kc) = &q.key_column
                    && !plan.outputs.iter().any(|o| o.name == kc.value)
                {
                    let cols: Vec<&str> = plan.outputs.iter().map(|o| o.name.as_str()).collect();
                    err(
                        at(kc),
                        &format!("{base}.key_column"),
                        format!(
                            "`{}` is not an output column of the query (columns: {})",
                            kc.value,
                            cols.join(", ")
                        ),
                    );
                }
            }
        }
    }
    out
}

/// Maps a position inside a query's SQL to the YAML file.
fn sql_position(text: &str, sql: &Pos<String>, inner: Option<(usize, usize)>) -> (usize, usize) {
    let (line, col) = at(sql);
    let Some((l, c)) = inner else {
        return (line, col);
    };
    if line == 0 {
        return (0, 0);
    }
    let yaml_line = text.lines().nth(line - 1).unwrap_or("");
    let tail = yaml_line
        .get(col.saturating_sub(1)..)
        .unwrap_or("")
        .trim_start();
    if tail.starts_with('|') || tail.starts_with('>') {
        // Block scalar: SQL line l is YAML line line+l, after its indentation.
        let content = text.lines().nth(line - 1 + l).unwrap_or("");
        let indent = content.len() - content.trim_start().len();
        (line + l, indent + c)
    } else if l == 1 {
        let quote = usize::from(tail.starts_with('"') || tail.starts_with('\''));
        (line, col + quote + c - 1)
    } else {
        // Multi-line scalar whose position is its first content line.
        let content = text.lines().nth(line + l - 2).unwrap_or("");
        let indent = content.len() - content.trim_start().len();
        (line + l - 1, indent + c)
    }
}

/// Position of `section.key` in a block-style document (for map entries that
/// are not spanned); (0, 0) when not found.
fn position_of_key(text: &str, section: &str, key: &str) -> (usize, usize) {
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with(&format!("{section}:")) {
            in_section = true;
            continue;
        }
        if in_section
            && (t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":")))
        {
            return (i + 1, line.len() - t.len() + 1);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_config() {
        let c = load_str("e.yaml", "").unwrap();
        assert_eq!(c.kafka.brokers.value, "embedded");
        assert_eq!(c.admin.listen.value, "127.0.0.1:8080");
    }

    #[test]
    fn fixtures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config");
        let mut seen = 0;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            if name.ends_with(".good.yaml") {
                if let Err(e) = load_str(&name, &text) {
                    panic!("{name} should be valid:\n{e}");
                }
                seen += 1;
            } else if name.ends_with(".bad.yaml") {
                // The first line of a bad fixture is `# expect: <diagnostic>`.
                let expect = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# expect: "))
                    .unwrap_or_else(|| panic!("{name}: no `# expect:` line"));
                let err = load_str(&name, &text).expect_err(&name).to_string();
                assert!(
                    err.contains(expect),
                    "{name}:\n  expected: {expect}\n  got:      {err}"
                );
                seen += 1;
            }
        }
        assert!(seen >= 8, "only {seen} fixtures found");
    }
}
