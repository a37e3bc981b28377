//! Prometheus rule files, unchanged format, parsed with positions so every
//! problem points at its line and column — like `promtool check rules`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::duration::parse_duration_ms;
use crate::diagnostic::Diagnostic;
use crate::gotmpl;

/// A whole rule file after validation.
#[derive(Debug, Clone)]
pub struct RuleFile {
    pub path: PathBuf,
    pub groups: Vec<RuleGroup>,
}

/// One `groups[]` entry.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub name: String,
    /// The file the group came from (groups are identified by file + name).
    pub file: PathBuf,
    /// Evaluation interval; `None` uses the global default.
    pub interval_ms: Option<i64>,
    /// Evaluate at `t - query_offset`.
    pub query_offset_ms: Option<i64>,
    /// Maximum alerts / series per rule evaluation; 0 means no limit.
    pub limit: u64,
    /// Labels added to every rule of the group (Prometheus 3).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
}

/// One rule: alerting or recording.
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: RuleKind,
    /// The PromQL text as written.
    pub expr: String,
    /// The parsed expression.
    pub ast: promql_parser::parser::Expr,
    pub labels: BTreeMap<String, String>,
    /// 1-based line of the rule in its file.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    Alert {
        name: String,
        for_ms: i64,
        keep_firing_for_ms: i64,
        annotations: BTreeMap<String, String>,
    },
    Record {
        name: String,
    },
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Alert { name, .. } | RuleKind::Record { name } => name,
        }
    }
}

/// A YAML mapping kept in file order with the position of every key and value.
#[derive(Debug, Default)]
pub(crate) struct SpannedMap(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for SpannedMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SpannedMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of strings to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SpannedMap, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    out.push((k, m.next_value::<Spanned<String>>()?));
                }
                Ok(SpannedMap(out))
            }
            fn visit_unit<E>(self) -> Result<SpannedMap, E> {
                Ok(SpannedMap::default())
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    interval: Option<Spanned<String>>,
    query_offset: Option<Spanned<String>>,
    limit: Option<Spanned<u64>>,
    labels: Option<SpannedMap>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<Spanned<String>>,
    alert: Option<Spanned<String>>,
    expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    keep_firing_for: Option<Spanned<String>>,
    labels: Option<SpannedMap>,
    annotations: Option<SpannedMap>,
}

/// Legacy Prometheus label name syntax (what promtool 2.x enforces).
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Legacy Prometheus metric name syntax.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c == ':' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == ':' || c.is_ascii_alphanumeric())
}

fn pos<T>(s: &Spanned<T>) -> (usize, usize) {
    (s.referenced.line() as usize, s.referenced.column() as usize)
}

/// The message part of a serde-saphyr error, without its rendered snippet.
fn yaml_error(path: &Path, err: &serde_saphyr::Error) -> Diagnostic {
    let (line, col) = err
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    let rendered = err.without_snippet().to_string();
    // The first line holds the message; drop a trailing " at line X column Y".
    let first = rendered
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .to_string();
    let message = match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first,
    };
    Diagnostic::new(path, line, col, message)
}

/// Collects problems of one file; `ctx` prefixes messages with the rule they concern.
struct Checker<'a> {
    path: &'a Path,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, at: (usize, usize), msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(self.path, at.0, at.1, msg));
    }

    fn duration(&mut self, ctx: &str, field: &str, d: &Option<Spanned<String>>) -> Option<i64> {
        let d = d.as_ref()?;
        match parse_duration_ms(&d.value) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.at(pos(d), format!("{ctx}field '{field}': {e}"));
                None
            }
        }
    }

    fn labels(
        &mut self,
        ctx: &str,
        what: &str,
        map: &Option<SpannedMap>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in map.iter().flat_map(|m| m.0.iter()) {
            if !is_valid_label_name(&k.value) {
                self.at(pos(k), format!("{ctx}invalid {what} name: {:?}", k.value));
            }
            if out.insert(k.value.clone(), v.value.clone()).is_some() {
                self.at(pos(k), format!("{ctx}duplicate {what} {:?}", k.value));
            }
        }
        out
    }
}

/// Parses and validates rule file text. On success every group and rule is
/// usable; otherwise all problems found are returned.
pub fn parse_rule_file(path: &Path, text: &str) -> Result<RuleFile, Vec<Diagnostic>> {
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        serde_saphyr::from_str(text).map_err(|e| vec![yaml_error(path, &e)])?
    };
    let mut ck = Checker {
        path,
        diags: Vec::new(),
    };
    let mut seen_groups = HashSet::new();
    let mut groups = Vec::new();
    for g in &raw.groups {
        let graw = &g.value;
        let gname = graw.name.value.clone();
        if gname.is_empty() {
            ck.at(pos(&graw.name), "Groupname must not be empty");
        } else if !seen_groups.insert(gname.clone()) {
            ck.at(
                pos(&graw.name),
                format!("groupname: {gname:?} is repeated in the same file"),
            );
        }
        let gctx = format!("group {gname:?}: ");
        let interval_ms = ck.duration(&gctx, "interval", &graw.interval);
        if let (Some(0), Some(i)) = (interval_ms, &graw.interval) {
            ck.at(pos(i), format!("{gctx}interval must be greater than 0"));
        }
        let query_offset_ms = ck.duration(&gctx, "query_offset", &graw.query_offset);
        let group_labels = ck.labels(&gctx, "label", &graw.labels);
        let mut rules = Vec::new();
        for (i, r) in graw.rules.iter().enumerate() {
            if let Some(rule) = check_rule(&mut ck, &gname, i + 1, r) {
                rules.push(rule);
            }
        }
        groups.push(RuleGroup {
            name: gname,
            file: path.to_path_buf(),
            interval_ms,
            query_offset_ms,
            limit: graw.limit.as_ref().map(|l| l.value).unwrap_or(0),
            labels: group_labels,
            rules,
        });
    }
    if ck.diags.is_empty() {
        Ok(RuleFile {
            path: path.to_path_buf(),
            groups,
        })
    } else {
        Err(ck.diags)
    }
}

fn check_rule(ck: &mut Checker, group: &str, index: usize, r: &Spanned<RawRule>) -> Option<Rule> {
    let raw = &r.value;
    let rule_at = pos(r);
    let name = raw
        .alert
        .as_ref()
        .or(raw.record.as_ref())
        .map(|n| n.value.clone())
        .unwrap_or_default();
    let ctx = format!("group {group:?}, rule {index}, {name:?}: ");
    let before = ck.diags.len();
    match (&raw.record, &raw.alert) {
        (Some(_), Some(a)) => ck.at(
            pos(a),
            format!("{ctx}only one of 'record' and 'alert' must be set"),
        ),
        (None, None) => ck.at(
            rule_at,
            format!("{ctx}one of 'record' or 'alert' must be set"),
        ),
        (Some(rec), None) => {
            if !is_valid_metric_name(&rec.value) {
                ck.at(
                    pos(rec),
                    format!("{ctx}invalid recording rule name: {}", rec.value),
                );
            }
            if let Some(a) = &raw.annotations {
                let at = a.0.first().map(|(k, _)| pos(k)).unwrap_or(rule_at);
                ck.at(
                    at,
                    format!("{ctx}invalid field 'annotations' in recording rule"),
                );
            }
            if let Some(f) = &raw.for_ {
                ck.at(
                    pos(f),
                    format!("{ctx}invalid field 'for' in recording rule"),
                );
            }
            if let Some(f) = &raw.keep_firing_for {
                ck.at(
                    pos(f),
                    format!("{ctx}invalid field 'keep_firing_for' in recording rule"),
                );
            }
        }
        (None, Some(a)) => {
            if a.value.is_empty() {
                ck.at(pos(a), format!("{ctx}alert name must not be empty"));
            }
        }
    }
    let ast = match &raw.expr {
        None => {
            ck.at(rule_at, format!("{ctx}field 'expr' must be set in rule"));
            None
        }
        Some(e) if e.value.trim().is_empty() => {
            ck.at(pos(e), format!("{ctx}field 'expr' must be set in rule"));
            None
        }
        Some(e) => match promql_parser::parser::parse(&e.value) {
            Ok(ast) => {
                if let Err(msg) = super::supported(&ast) {
                    ck.at(pos(e), format!("{ctx}{msg}"));
                }
                Some(ast)
            }
            Err(msg) => {
                ck.at(pos(e), format!("{ctx}could not parse expression: {msg}"));
                None
            }
        },
    };
    let for_ms = ck.duration(&ctx, "for", &raw.for_).unwrap_or(0);
    let keep_firing_for_ms = ck
        .duration(&ctx, "keep_firing_for", &raw.keep_firing_for)
        .unwrap_or(0);
    let labels = ck.labels(&ctx, "label", &raw.labels);
    let annotations = ck.labels(&ctx, "annotation", &raw.annotations);
    // Templates must parse; label and annotation values are expanded per alert.
    if raw.alert.is_some() {
        let templated = raw
            .labels
            .iter()
            .flat_map(|m| m.0.iter())
            .chain(raw.annotations.iter().flat_map(|m| m.0.iter()));
        for (k, v) in templated {
            if let Err(e) = gotmpl::check_alert_template(&name, &v.value) {
                ck.at(
                    pos(v),
                    format!("{ctx}{:?}: template: {}", k.value, template_message(&e)),
                );
            }
        }
    }
    if ck.diags.len() > before {
        return None;
    }
    let kind = match (&raw.alert, &raw.record) {
        (Some(a), _) => RuleKind::Alert {
            name: a.value.clone(),
            for_ms,
            keep_firing_for_ms,
            annotations,
        },
        (None, Some(r)) => RuleKind::Record {
            name: r.value.clone(),
        },
        (None, None) => return None,
    };
    Some(Rule {
        kind,
        expr: raw
            .expr
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default(),
        ast: ast?,
        labels,
        line: rule_at.0,
    })
}

fn template_message(e: &gotmpl::TemplateError) -> String {
    match e {
        gotmpl::TemplateError::Parse { message, .. }
        | gotmpl::TemplateError::Exec { message, .. } => message.clone(),
    }
}

/// Reads and validates one rule file.
pub fn load_rule_file(path: &Path) -> Result<RuleFile, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            path,
            format!("cannot read rule file: {e}"),
        )]
    })?;
    parse_rule_file(path, &text)
}

/// Every problem in one rule file (empty when the file is valid). This is what
/// `sluice validate` and `sluice rules check` report.
pub fn check_rule_file(path: &Path) -> Vec<Diagnostic> {
    match load_rule_file(path) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}
