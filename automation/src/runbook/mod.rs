//! Runbooks: the model, loading from files, parameters, templates,
//! validation and the JSON Schema.

pub mod lint;
pub mod model;
pub mod params;
pub mod schema;
pub mod template;
pub mod unittest;
pub mod validate;

use std::path::Path;

pub use model::Runbook;

use crate::diagnostic::Diagnostic;

/// Parses and decodes one runbook file; every problem is a diagnostic.
pub fn load_str(path: &Path, text: &str) -> Result<Runbook, Vec<Diagnostic>> {
    let diag = |pos: crate::yaml::Pos, msg: String| {
        Diagnostic::new(path, pos.line as usize, pos.column as usize, msg)
    };
    let node = crate::yaml::parse(text).map_err(|e| vec![diag(e.pos, e.message)])?;
    model::decode(&node).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| diag(p.pos, p.message))
            .collect()
    })
}

/// Decodes a runbook and runs the semantic checks, even on a partly invalid
/// file, so one pass reports every problem. Problems are sorted by position.
pub fn check_str(
    path: &Path,
    text: &str,
    known: validate::Known<'_>,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    let diag = |pos: crate::yaml::Pos, msg: String| {
        Diagnostic::new(path, pos.line as usize, pos.column as usize, msg)
    };
    let node = match crate::yaml::parse(text) {
        Ok(n) => n,
        Err(e) => return (None, vec![diag(e.pos, e.message)]),
    };
    let (rb, mut problems) = model::decode_partial(&node);
    if let Some(rb) = &rb {
        problems.extend(validate::validate(rb, known));
    }
    problems.sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.message.cmp(&b.message)));
    problems.dedup();
    let ok = problems.is_empty();
    (
        rb.filter(|_| ok),
        problems
            .into_iter()
            .map(|p| diag(p.pos, p.message))
            .collect(),
    )
}

/// Reads and decodes a runbook file.
pub fn load_file(path: &Path) -> Result<Runbook, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Diagnostic::whole_file(path, format!("cannot read: {e}"))])?;
    load_str(path, &text)
}
