//! One diagnostic type for every file Sluice reads: runbooks, rule files,
//! promtool test files, sluice.yaml. Printed as `file:line:column: message`
//! followed by the offending line and a caret, like rustc and promtool.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found in an input file, with a position when one is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// What is wrong, including the field path when there is one.
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl AsRef<Path>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.as_ref().to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A problem with the whole file (unreadable, empty) rather than a place in it.
    pub fn whole_file(file: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self::new(file, 0, 0, message)
    }

    /// Renders the diagnostic with the offending source line and a caret under the column.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = self.to_string();
        if let Some(text) = source.and_then(|s| s.lines().nth(self.line.checked_sub(1)?)) {
            let gutter = self.line.to_string();
            out.push('\n');
            out.push_str(&format!("{gutter} | {text}\n"));
            let pad = " ".repeat(gutter.len());
            let caret_at = self.column.saturating_sub(1).min(text.chars().count());
            let lead: String = text
                .chars()
                .take(caret_at)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{pad} | {lead}^"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.column) {
            (0, _) => write!(f, "{file}: {}", self.message),
            (line, 0) => write!(f, "{file}:{line}: {}", self.message),
            (line, col) => write!(f, "{file}:{line}:{col}: {}", self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_unknown_positions() {
        assert_eq!(
            Diagnostic::whole_file("a.yaml", "empty").to_string(),
            "a.yaml: empty"
        );
        assert_eq!(
            Diagnostic::new("a.yaml", 3, 0, "x").to_string(),
            "a.yaml:3: x"
        );
        assert_eq!(
            Diagnostic::new("a.yaml", 3, 7, "x").to_string(),
            "a.yaml:3:7: x"
        );
    }

    #[test]
    fn render_points_at_the_column() {
        let d = Diagnostic::new(
            "r.yaml",
            2,
            5,
            "unknown field `stpes`, did you mean `steps`?",
        );
        let src = "name: x\nstpes: []\n";
        assert_eq!(
            d.render(Some(src)),
            "r.yaml:2:5: unknown field `stpes`, did you mean `steps`?\n2 | stpes: []\n  |     ^"
        );
    }
}
