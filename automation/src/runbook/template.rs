//! Templates in runbooks: handlebars in strict mode (a missing variable is an
//! error, never an empty string), a few helpers, shell quoting for `shell`
//! steps, and static analysis of which variables a template reads.
//!
//! Helpers: `default v fallback`, `json v`, `date ts "%Y%m%d"` (ts an RFC 3339
//! string or `now`), `seconds "10m"` (duration → seconds), `duration 90`
//! (seconds → `1m30s`), plus handlebars' `eq ne gt gte lt lte and or not len`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    Renderable, ScopedJson, Template,
};
use serde_json::Value as J;

use crate::duration::Duration;

/// A template that failed to compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// How rendered values are written into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As they are (HTTP bodies, arguments of `exec`, messages).
    None,
    /// Each `{{value}}` single-quoted for POSIX sh.
    Shell,
}

fn registry(escape: Escape) -> &'static Handlebars<'static> {
    static PLAIN: OnceLock<Handlebars<'static>> = OnceLock::new();
    static SHELL: OnceLock<Handlebars<'static>> = OnceLock::new();
    let cell = match escape {
        Escape::None => &PLAIN,
        Escape::Shell => &SHELL,
    };
    cell.get_or_init(|| {
        let mut h = Handlebars::new();
        h.set_strict_mode(true);
        h.set_prevent_indent(true);
        match escape {
            Escape::None => h.register_escape_fn(handlebars::no_escape),
            Escape::Shell => h.register_escape_fn(shell_quote),
        }
        h.register_helper("default", Box::new(DefaultHelper));
        h.register_helper("json", Box::new(JsonHelper));
        h.register_helper("date", Box::new(DateHelper));
        h.register_helper("seconds", Box::new(SecondsHelper));
        h.register_helper("duration", Box::new(DurationHelper));
        h
    })
}

/// Helper names: handlebars' built-ins and ours. Anything else in `{{name}}` is a variable.
pub const HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len", "default", "json", "date", "seconds", "duration",
];

pub fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name)
}

/// Renders `text` against the context. Text without `{{` is returned as is.
pub fn render(text: &str, ctx: &Context, escape: Escape) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let fail = |e: RenderError| TemplateError(describe_render_error(&e));
    let template = compiled(text).map_err(|e| fail(e.into()))?;
    let mut out = Rendered(String::new());
    let mut rc = RenderContext::new(None);
    template
        .render(registry(escape), ctx, &mut rc, &mut out)
        .map_err(fail)?;
    Ok(out.0)
}

/// Templates compiled so far, by text: a runbook's templates are rendered
/// on every run, and compiling one costs more than rendering it.
const MAX_COMPILED: usize = 4096;

fn compiled(text: &str) -> Result<Arc<Template>, handlebars::TemplateError> {
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<Template>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.read().ok().and_then(|c| c.get(text).cloned()) {
        return Ok(t);
    }
    // Compiling does not depend on the registry (its `prevent_indent` only
    // concerns partials, which runbooks have none of): one entry serves either escape.
    let template = Arc::new(Template::compile(text)?);
    if let Ok(mut c) = cache.write() {
        // Texts built at run time could grow it without end: start over instead.
        if c.len() >= MAX_COMPILED {
            c.clear();
        }
        c.insert(text.to_string(), template.clone());
    }
    Ok(template)
}

/// Output into a string grown as needed (handlebars' own reserves 8 KiB per render).
struct Rendered(String);

impl handlebars::Output for Rendered {
    fn write(&mut self, seg: &str) -> std::io::Result<()> {
        self.0.push_str(seg);
        Ok(())
    }
}

fn describe_render_error(e: &RenderError) -> String {
    match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => format!("variable `{path}` is not set"),
        RenderErrorReason::MissingVariable(None) => {
            "a variable used by the template is not set".to_string()
        }
        RenderErrorReason::TemplateError(t) => format!("template does not compile: {t}"),
        other => other.to_string(),
    }
}

/// Compiles without rendering (validation).
pub fn compile(text: &str) -> Result<Template, TemplateError> {
    Template::compile(text).map_err(|e| {
        let reason = e.reason().to_string();
        match e.pos() {
            Some((line, col)) => TemplateError(format!(
                "template does not compile (line {line}, column {col} of the template): {reason}"
            )),
            None => TemplateError(format!("template does not compile: {reason}")),
        }
    })
}

/// A variable read by a template, as its dotted path (`params.breaker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    pub path: Vec<String>,
    /// Raw `{{{…}}}` output (not escaped).
    pub raw: bool,
}

/// Variables a template reads at its top level. Paths inside `#each`/`#with`
/// blocks are relative to the block and are not reported.
pub fn variables(t: &Template) -> Vec<VarRef> {
    let mut out = Vec::new();
    walk_template(t, &mut out);
    out
}

fn walk_template(t: &Template, out: &mut Vec<VarRef>) {
    for el in &t.elements {
        match el {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                let raw = matches!(el, TemplateElement::HtmlExpression(_));
                let helper = h.name.as_name().is_some_and(is_helper);
                if h.params.is_empty() && h.hash.is_empty() && !helper {
                    param_vars(&h.name, raw, out);
                } else {
                    h.params
                        .iter()
                        .chain(h.hash.values())
                        .for_each(|p| param_vars(p, raw, out));
                }
            }
            TemplateElement::HelperBlock(h) => {
                h.params
                    .iter()
                    .chain(h.hash.values())
                    .for_each(|p| param_vars(p, false, out));
                let scoped = matches!(h.name.as_name(), Some("each" | "with"));
                if !scoped {
                    h.template.iter().for_each(|t| walk_template(t, out));
                }
                h.inverse.iter().for_each(|t| walk_template(t, out));
            }
            _ => {}
        }
    }
}

fn param_vars(p: &Parameter, raw: bool, out: &mut Vec<VarRef>) {
    match p {
        Parameter::Path(handlebars::Path::Relative((_, raw_path))) => push_path(raw_path, raw, out),
        Parameter::Name(n) if !is_helper(n) => push_path(n, raw, out),
        Parameter::Subexpression(sub) => {
            sub.params()
                .into_iter()
                .flatten()
                .for_each(|p| param_vars(p, raw, out));
            sub.hash()
                .into_iter()
                .flat_map(|h| h.values())
                .for_each(|p| param_vars(p, raw, out));
        }
        _ => {}
    }
}

fn push_path(raw_path: &str, raw: bool, out: &mut Vec<VarRef>) {
    if raw_path.is_empty()
        || raw_path.starts_with('@')
        || raw_path.starts_with("this")
        || raw_path.starts_with("..")
    {
        return;
    }
    let path = raw_path
        .split(['.', '/'])
        .map(|s| s.trim_matches(['[', ']']).to_string())
        .filter(|s| !s.is_empty())
        .collect();
    out.push(VarRef { path, raw });
}

/// Single-quotes a value for POSIX sh: nothing inside is interpreted.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Why quoting cannot protect a template at some place of a shell script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellHazard {
    /// Inside `'…'` or `"…"`: the added quotes end the author's (`"…$(x)…"` still runs `x`).
    InQuotes,
    /// In a `#` comment: a newline in the value ends the comment and starts a command.
    InComment,
    /// In a here-document body: the shell expands `$(…)` and backticks there, quotes or not.
    InHereDoc,
    /// In `$((…))`, `((…))` or `[[ … -eq … ]]`: evaluated as code, quotes or not.
    InArithmetic,
    /// Right after `\`: the backslash cancels the opening quote.
    AfterBackslash,
}

impl ShellHazard {
    pub fn message(self) -> &'static str {
        match self {
            ShellHazard::InQuotes => {
                "a template inside quotes in a shell script is not protected by quoting; write `{{value}}` outside quotes (it is quoted for you) or pass it through `env:`"
            }
            ShellHazard::InComment => {
                "a template inside a shell comment is not protected: a newline in the value ends the comment; remove it or pass the value through `env:`"
            }
            ShellHazard::InHereDoc => {
                "a template inside a here-document is not protected by quoting (the shell expands `$(…)` there); pass the value through `env:` and write `$NAME`"
            }
            ShellHazard::InArithmetic => {
                "a template inside shell arithmetic (`$((…))`, `((…))`, `[[ … -eq … ]]`) is evaluated as code even when quoted; compute the value in an earlier step or use an `int` parameter through `env:`"
            }
            ShellHazard::AfterBackslash => {
                "a template right after a backslash is not protected: the backslash cancels the opening quote"
            }
        }
    }
}

/// Whether the mustache tag starting at `tag` (`{{…}}`) writes a value; block
/// open/close tags, `else` and comments write nothing.
fn writes_value(tag: &str) -> bool {
    let inner = tag
        .trim_start_matches('{')
        .trim_start_matches('~')
        .trim_start();
    !(inner.starts_with(['#', '/', '^', '!']) || inner.starts_with("else"))
}

const ARITHMETIC_TESTS: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

/// Finds the first template in a shell script at a place where the added
/// single quotes would not protect it (see [`ShellHazard`]); the byte offset
/// of its `{{` and why. Only tags that write a value count; template tags are
/// skipped as units, so quotes inside them (`{{date now "%Y"}}`) are theirs.
pub fn unprotected_shell_template(script: &str) -> Option<(usize, ShellHazard)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        Plain,
        Single,
        Double,
        Comment,
        Arith(u32),
    }
    let b = script.as_bytes();
    let mut ctx = Ctx::Plain;
    // `[[ … ]]` spans holding an arithmetic comparison: (start, end).
    let mut arith_tests: Vec<(usize, usize)> = Vec::new();
    // Here-documents announced on the current line: (delimiter, strip leading tabs).
    let mut pending: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{{") {
            let end = script[i + 2..]
                .find("}}")
                .map_or(b.len(), |e| i + 2 + e + 2);
            if writes_value(&script[i..end]) {
                let hazard = match ctx {
                    Ctx::Single | Ctx::Double => Some(ShellHazard::InQuotes),
                    Ctx::Comment => Some(ShellHazard::InComment),
                    Ctx::Arith(_) => Some(ShellHazard::InArithmetic),
                    Ctx::Plain if i > 0 && b[i - 1] == b'\\' => Some(ShellHazard::AfterBackslash),
                    Ctx::Plain if arith_tests.iter().any(|(s, e)| (*s..*e).contains(&i)) => {
                        Some(ShellHazard::InArithmetic)
                    }
                    Ctx::Plain => None,
                };
                if let Some(h) = hazard {
                    return Some((i, h));
                }
            }
            i = end;
            continue;
        }
        let c = b[i];
        match ctx {
            Ctx::Single => {
                if c == b'\'' {
                    ctx = Ctx::Plain;
                }
            }
            Ctx::Double => match c {
                b'\\' => i += 1,
                b'"' => ctx = Ctx::Plain,
                _ => {}
            },
            Ctx::Comment => {
                if c == b'\n' {
                    ctx = Ctx::Plain;
                    continue; // the newline itself may start here-documents
                }
            }
            Ctx::Arith(depth) => match c {
                b'(' => ctx = Ctx::Arith(depth + 1),
                b')' if depth <= 1 => ctx = Ctx::Plain,
                b')' => ctx = Ctx::Arith(depth - 1),
                _ => {}
            },
            Ctx::Plain => match c {
                b'\\' => i += 1,
                b'\'' => ctx = Ctx::Single,
                b'"' => ctx = Ctx::Double,
                b'#' if i == 0 || b" \t\n;&|(".contains(&b[i - 1]) => ctx = Ctx::Comment,
                b'(' if b.get(i + 1) == Some(&b'(') => {
                    ctx = Ctx::Arith(2);
                    i += 1;
                }
                b'[' if b.get(i + 1) == Some(&b'[') => {
                    if let Some(len) = script[i..].find("]]") {
                        let span = &script[i..i + len];
                        if ARITHMETIC_TESTS.iter().any(|op| span.contains(op)) {
                            arith_tests.push((i, i + len));
                        }
                    }
                }
                b'<' if b[i..].starts_with(b"<<") && !b[i..].starts_with(b"<<<") => {
                    let mut j = i + 2;
                    let strip = b.get(j) == Some(&b'-');
                    if strip {
                        j += 1;
                    }
                    while b.get(j).is_some_and(|c| *c == b' ' || *c == b'\t') {
                        j += 1;
                    }
                    let word_end = (j..b.len())
                        .find(|&k| b" \t\n;&|<>()".contains(&b[k]))
                        .unwrap_or(b.len());
                    let delim: String = script[j..word_end]
                        .chars()
                        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
                        .collect();
                    if !delim.is_empty() {
                        pending.push((delim, strip));
                    }
                    i = word_end;
                    continue;
                }
                b'\n' if !pending.is_empty() => {
                    // Bodies follow this line, one per announced here-document.
                    let mut pos = i + 1;
                    for (delim, strip) in std::mem::take(&mut pending) {
                        loop {
                            if pos >= b.len() {
                                break;
                            }
                            let line_end = script[pos..].find('\n').map_or(b.len(), |e| pos + e);
                            let line = &script[pos..line_end];
                            let bare = if strip {
                                line.trim_start_matches('\t')
                            } else {
                                line
                            };
                            if bare == delim {
                                pos = line_end + 1;
                                break;
                            }
                            let mut k = 0;
                            while let Some(off) = line[k..].find("{{") {
                                let at = k + off;
                                let tag_end = line[at + 2..]
                                    .find("}}")
                                    .map_or(line.len(), |e| at + 2 + e + 2);
                                if writes_value(&line[at..tag_end]) {
                                    return Some((pos + at, ShellHazard::InHereDoc));
                                }
                                k = tag_end;
                            }
                            pos = line_end + 1;
                        }
                    }
                    i = pos;
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Whether a template writes unescaped output anywhere (`{{{x}}}`, `{{&x}}`,
/// `{{~{x}~}}`), blocks included.
pub fn has_raw_output(t: &Template) -> bool {
    t.elements.iter().any(|el| match el {
        TemplateElement::HtmlExpression(_) => true,
        TemplateElement::HelperBlock(h) => {
            h.template.iter().any(has_raw_output) || h.inverse.iter().any(has_raw_output)
        }
        _ => false,
    })
}

/// Truthiness of a rendered `if:`: empty, `false`, `0`, `null`, `no` are false.
pub fn truthy(rendered: &str) -> bool {
    !matches!(
        rendered.trim(),
        "" | "false" | "0" | "null" | "no" | "False" | "FALSE"
    )
}

struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h
            .param(0)
            .filter(|p| !p.is_value_missing())
            .map(|p| p.value().clone());
        match value {
            Some(v) if !v.is_null() && v != J::String(String::new()) => Ok(ScopedJson::Derived(v)),
            _ => {
                let fallback = h
                    .param(1)
                    .ok_or(RenderErrorReason::ParamNotFoundForIndex("default", 1))?
                    .value()
                    .clone();
                Ok(ScopedJson::Derived(fallback))
            }
        }
    }
}

fn param<'a>(h: &'a Helper<'_>, idx: usize, name: &'static str) -> Result<&'a J, RenderError> {
    h.param(idx)
        .filter(|p| !p.is_value_missing())
        .map(|p| p.value())
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(name, idx).into())
}

struct JsonHelper;

impl HelperDef for JsonHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let v = param(h, 0, "json")?;
        Ok(ScopedJson::Derived(J::String(v.to_string())))
    }
}

struct DateHelper;

impl HelperDef for DateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let ts = param(h, 0, "date")?;
        let format = h
            .param(1)
            .and_then(|p| p.value().as_str())
            .unwrap_or("%Y-%m-%dT%H:%M:%SZ");
        let when = match ts.as_str() {
            Some("now") => chrono::Utc::now(),
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    RenderErrorReason::Other(format!("date: `{s}` is not an RFC 3339 time: {e}"))
                })?
                .with_timezone(&chrono::Utc),
            None => {
                return Err(RenderErrorReason::Other("date: expected a time string".into()).into());
            }
        };
        let mut out = String::new();
        use std::fmt::Write;
        write!(out, "{}", when.format(format))
            .map_err(|_| RenderErrorReason::Other(format!("date: invalid format `{format}`")))?;
        Ok(ScopedJson::Derived(J::String(out)))
    }
}

struct SecondsHelper;

impl HelperDef for SecondsHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let v = param(h, 0, "seconds")?;
        let s = v.as_str().ok_or_else(|| {
            RenderErrorReason::Other("seconds: expected a duration string".into())
        })?;
        let d: Duration = s
            .parse()
            .map_err(|e: crate::duration::DurationError| RenderErrorReason::Other(e.to_string()))?;
        Ok(ScopedJson::Derived(J::from(d.std().as_secs())))
    }
}

struct DurationHelper;

impl HelperDef for DurationHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let v = param(h, 0, "duration")?;
        let secs = v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| RenderErrorReason::Other("duration: expected seconds".into()))?;
        let d = Duration::from_millis((secs.max(0.0) * 1000.0) as u64);
        Ok(ScopedJson::Derived(J::String(d.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::from(
            json!({"params": {"name": "a'b; rm -rf /", "n": 3, "empty": null}, "now": "2026-11-23T08:00:00Z"}),
        )
    }

    #[test]
    fn a_compiled_template_renders_each_context_and_each_escape_anew() {
        let t = "x={{params.name}}";
        let other = Context::from(json!({"params": {"name": "b"}}));
        assert_eq!(render(t, &ctx(), Escape::None).unwrap(), "x=a'b; rm -rf /");
        assert_eq!(render(t, &other, Escape::None).unwrap(), "x=b");
        // The same compiled template, quoted by the shell registry.
        assert_eq!(
            render(t, &ctx(), Escape::Shell).unwrap(),
            r"x='a'\''b; rm -rf /'"
        );
        // A template that does not compile fails every time, never cached as text.
        for _ in 0..2 {
            let e = render("{{#if}}", &ctx(), Escape::None).unwrap_err();
            assert!(e.0.starts_with("template does not compile"), "{e}");
        }
    }

    #[test]
    fn strict_mode_refuses_missing_variables() {
        let err = render("x {{params.nope}}", &ctx(), Escape::None).unwrap_err();
        assert_eq!(err.0, "variable `params.nope` is not set");
    }

    #[test]
    fn helpers() {
        let c = ctx();
        assert_eq!(
            render("{{default params.empty 'x'}}", &c, Escape::None).unwrap(),
            "x"
        );
        assert_eq!(
            render("{{default params.missing 'y'}}", &c, Escape::None).unwrap(),
            "y"
        );
        assert_eq!(
            render("{{default params.n 7}}", &c, Escape::None).unwrap(),
            "3"
        );
        assert_eq!(
            render("{{date now '%Y%m%d'}}", &c, Escape::None).unwrap(),
            "20261123"
        );
        assert_eq!(
            render("{{seconds '1h30m'}}", &c, Escape::None).unwrap(),
            "5400"
        );
        assert_eq!(
            render("{{duration 90}}", &c, Escape::None).unwrap(),
            "1m30s"
        );
        assert_eq!(
            render("{{json params}}", &c, Escape::None).unwrap(),
            r#"{"empty":null,"n":3,"name":"a'b; rm -rf /"}"#
        );
        assert_eq!(
            render("{{#if (gt params.n 2)}}big{{/if}}", &c, Escape::None).unwrap(),
            "big"
        );
    }

    #[test]
    fn shell_escape_quotes_every_value() {
        let out = render("echo {{params.name}}", &ctx(), Escape::Shell).unwrap();
        assert_eq!(out, r"echo 'a'\''b; rm -rf /'");
    }

    #[test]
    fn finds_variables() {
        let t = compile("{{params.a}} {{default alert.labels.x 'y'}} {{#if steps.s.ok}}{{now}}{{/if}} {{#each params.l}}{{this.z}}{{/each}}").unwrap();
        let paths: Vec<String> = variables(&t)
            .into_iter()
            .map(|v| v.path.join("."))
            .collect();
        assert_eq!(
            paths,
            [
                "params.a",
                "alert.labels.x",
                "steps.s.ok",
                "now",
                "params.l"
            ]
        );
    }

    #[test]
    fn finds_templates_quoting_cannot_protect() {
        use ShellHazard::*;
        let hazard = |s: &str| unprotected_shell_template(s).map(|(_, h)| h);
        for ok in [
            "echo {{params.a}}",
            "echo \"it's\" {{params.a}} # no template here",
            "printf '%s' \"$X\" > {{params.d}}/r_{{date now \"%Y%m\"}}.json",
            "{{#if params.a}}echo \"on\"{{/if}}",
            "cat <<EOF\nplain $HOME\nEOF\necho {{params.a}}",
            "cat <<< {{params.a}}",
            "[[ {{params.a}} == x ]] && echo {{params.a}}",
            "echo a#{{params.a}}",
        ] {
            assert_eq!(hazard(ok), None, "{ok:?}");
        }
        for (bad, want) in [
            ("echo \"x {{params.a}}\"", InQuotes),
            ("echo 'x {{params.a}}'", InQuotes),
            ("echo x # say {{params.a}}", InComment),
            ("cat <<EOF\n{{params.a}}\nEOF", InHereDoc),
            ("cat <<-'END' >f\n\t{{params.a}}\n\tEND", InHereDoc),
            ("echo $(( {{params.a}} + 1 ))", InArithmetic),
            ("(( n = {{params.a}} ))", InArithmetic),
            ("[[ {{params.a}} -gt 3 ]]", InArithmetic),
            ("echo \\\\{{params.a}}", AfterBackslash),
        ] {
            assert_eq!(hazard(bad), Some(want), "{bad:?}");
        }
        // A value after a here-document is plain again.
        assert_eq!(
            hazard("cat <<EOF\nx\nEOF\necho \"{{params.a}}\""),
            Some(InQuotes)
        );
    }

    #[test]
    fn finds_raw_output_in_every_spelling() {
        for raw in ["{{{x}}}", "{{&x}}", "{{~{x}~}}", "{{#if y}}{{{x}}}{{/if}}"] {
            assert!(has_raw_output(&compile(raw).unwrap()), "{raw}");
        }
        assert!(!has_raw_output(
            &compile("{{x}} {{#if y}}{{x}}{{/if}}").unwrap()
        ));
    }

    #[test]
    fn compile_errors_are_reported() {
        assert!(
            compile("{{#if x}}unclosed")
                .unwrap_err()
                .0
                .starts_with("template does not compile")
        );
    }
}
