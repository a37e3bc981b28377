//! Maps a line of a block-style YAML document back to the dotted field path
//! enclosing it (`queries[1].sink_topic`), so parse errors can name the field.
//! Indentation-based: enough for config files, which are block YAML.

/// The field path at `line` (1-based) of `src`, including the key on that line.
pub fn path_at(src: &str, line: usize) -> String {
    #[derive(Clone)]
    enum Seg {
        Key(String),
        Index(usize),
    }
    // (indent, segment); index segments sit at the indent of their dash.
    let mut stack: Vec<(usize, Seg)> = Vec::new();
    let mut block_scalar_indent: Option<usize> = None;
    for raw in src.lines().take(line) {
        let trimmed = raw.trim_start();
        let mut indent = raw.len() - trimmed.len();
        if let Some(bi) = block_scalar_indent {
            if trimmed.is_empty() || indent > bi {
                continue;
            }
            block_scalar_indent = None;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut rest = trimmed;
        while rest == "-" || rest.starts_with("- ") {
            // The previous item of this sequence is still on the stack at this indent.
            let next = stack
                .iter()
                .rev()
                .find_map(|(i, s)| match s {
                    Seg::Index(n) if *i == indent => Some(n + 1),
                    _ => None,
                })
                .unwrap_or(0);
            stack.retain(|(i, s)| *i < indent || (*i == indent && matches!(s, Seg::Key(_))));
            stack.push((indent, Seg::Index(next)));
            let after = &rest[1..];
            let stripped = after.trim_start();
            indent += 1 + (after.len() - stripped.len());
            rest = stripped;
            if rest.is_empty() {
                break;
            }
        }
        if let Some((key, value)) = split_key(rest) {
            stack.retain(|(i, _)| *i < indent);
            stack.push((indent, Seg::Key(key.to_owned())));
            let v = value.trim_start();
            if v.starts_with('|') || v.starts_with('>') {
                block_scalar_indent = Some(indent);
            }
        }
    }
    let mut out = String::new();
    for (_, seg) in &stack {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// `key: value` → (key, value) for plain or quoted keys.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let (key, rest) = if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = s[1..].find(q)? + 1;
        (&s[1..end], &s[end + 1..])
    } else {
        let colon = s
            .find(": ")
            .or_else(|| s.strip_suffix(':').map(|k| k.len()))?;
        let key = &s[..colon];
        if key.contains(['{', '[', '"', '\'']) {
            return None;
        }
        (key, &s[colon..])
    };
    let rest = rest.strip_prefix(':')?;
    Some((key.trim_end(), rest))
}

#[cfg(test)]
mod tests {
    use super::path_at;

    const DOC: &str = "\
kafka:
  brokers: embedded
  consumer:
    fetch.min.bytes: 1
queries:
  - name: a
    sql: |
      SELECT x: y
      FROM t
    sink_topic: out
  - name: b
    source_topic: in
admin:
  listen: x
";

    #[test]
    fn nested_keys_and_sequence_indexes() {
        assert_eq!(path_at(DOC, 2), "kafka.brokers");
        assert_eq!(path_at(DOC, 4), "kafka.consumer.fetch.min.bytes");
        assert_eq!(path_at(DOC, 6), "queries[0].name");
        assert_eq!(path_at(DOC, 8), "queries[0].sql");
        assert_eq!(path_at(DOC, 10), "queries[0].sink_topic");
        assert_eq!(path_at(DOC, 12), "queries[1].source_topic");
        assert_eq!(path_at(DOC, 14), "admin.listen");
    }

    #[test]
    fn sequence_at_parent_indent() {
        let doc = "queries:\n- name: a\n  sql: x\n- name: b\n  bad: 1\n";
        assert_eq!(path_at(doc, 5), "queries[1].bad");
    }
}
