//! A problem found in a file the engine reads (its config, the SQL inside it),
//! printed as `file:line:column: field.path: message` like rustc and promtool.

use std::fmt;

/// One problem, with a position when one is known (0 = unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Dotted path of the offending field (`queries[0].sql`); empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<String>,
        (line, column): (usize, usize),
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line,
            column,
            path: path.into(),
            message: message.into(),
        }
    }

    /// Renders the diagnostic followed by the offending source line and a caret.
    pub fn render(&self, source: &str) -> String {
        let mut out = self.to_string();
        let Some(text) = self.line.checked_sub(1).and_then(|i| source.lines().nth(i)) else {
            return out;
        };
        let gutter = self.line.to_string();
        let pad = " ".repeat(gutter.len());
        let lead: String = text
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("\n{gutter} | {text}\n{pad} | {lead}^"));
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match (self.line, self.column) {
            (0, _) => {}
            (line, 0) => write!(f, ":{line}")?,
            (line, col) => write!(f, ":{line}:{col}")?,
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_column_path_and_message() {
        let d = Diagnostic::new("e.yaml", (3, 7), "kafka.brokers", "must not be empty");
        assert_eq!(
            d.to_string(),
            "e.yaml:3:7: kafka.brokers: must not be empty"
        );
        let whole = Diagnostic::new("e.yaml", (0, 0), "", "file is empty");
        assert_eq!(whole.to_string(), "e.yaml: file is empty");
    }

    #[test]
    fn render_points_a_caret_at_the_column() {
        let d = Diagnostic::new("e.yaml", (2, 3), "a.b", "bad");
        let out = d.render("a:\n  b: 1\n");
        assert!(out.ends_with("2 |   b: 1\n  |   ^"), "{out}");
    }
}
