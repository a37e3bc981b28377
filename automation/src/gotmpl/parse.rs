//! Lexer and parser for the Go `text/template` subset: text, actions with
//! pipelines, variables, `if`/`else if`/`else`, `range`, `with`, `break`,
//! `continue`, comments and `{{-`/`-}}` whitespace trimming.

use super::TemplateError;

/// A parsed node of the template tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares a variable.
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

/// `$x := cmd | cmd …` (declaration optional).
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub line: usize,
    /// Declared or assigned variable names (without `$`).
    pub vars: Vec<String>,
    /// `=` instead of `:=`.
    pub assign: bool,
    pub cmds: Vec<Command>,
}

/// One command of a pipeline: a function call or a single operand.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub args: Vec<Operand>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `.` followed by zero or more fields: `.`, `.Labels.instance`.
    Dot(Vec<String>),
    /// `$name.field…`; `$` alone is the root data.
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).field…`
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Ident(String),
    /// `.a.b` (empty for bare `.`)
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

/// The pieces of a template source: text and raw action bodies, after trimming.
enum Piece {
    Text(String),
    Action { body: String, line: usize },
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits the source at `{{`/`}}`, applying trim markers and dropping comments.
fn split(name: &str, src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1usize;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("{{") else {
            let mut text = rest.to_string();
            if trim_next {
                text = text.trim_start_matches(is_space).to_string();
            }
            pieces.push(Piece::Text(text));
            break;
        };
        let mut text = rest[..start].to_string();
        line += text.matches('\n').count();
        if trim_next {
            text = text.trim_start_matches(is_space).to_string();
        }
        let mut inner = &rest[start + 2..];
        // `{{- ` trims the text before; the dash must be followed by a space.
        if inner.starts_with('-') && inner[1..].starts_with(is_space) {
            text = text.trim_end_matches(is_space).to_string();
            inner = &inner[1..];
        }
        pieces.push(Piece::Text(text));
        let action_line = line;
        let end = find_action_end(inner).map_err(|message| TemplateError::Parse {
            name: name.to_string(),
            line: action_line,
            message: message.to_string(),
        })?;
        let mut body = &inner[..end];
        let after = &inner[end + 2..];
        // ` -}}` trims the text after.
        trim_next = false;
        if body.ends_with('-') && body[..body.len() - 1].ends_with(is_space) {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        line += body.matches('\n').count();
        let trimmed = body.trim_matches(is_space);
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err(TemplateError::Parse {
                    name: name.to_string(),
                    line: action_line,
                    message: "comment ends before closing delimiter".to_string(),
                });
            }
        } else {
            pieces.push(Piece::Action {
                body: body.to_string(),
                line: action_line,
            });
        }
        rest = after;
    }
    Ok(pieces)
}

/// Position of the closing `}}` outside string literals and comments.
fn find_action_end(s: &str) -> Result<usize, &'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    let trimmed_start = s.len() - s.trim_start_matches(is_space).len();
    if s[trimmed_start..].starts_with("/*") {
        let close = s[trimmed_start + 2..]
            .find("*/")
            .ok_or("unclosed comment")?
            + trimmed_start
            + 4;
        return s[close..]
            .find("}}")
            .map(|p| p + close)
            .ok_or("unclosed action");
    }
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b'\n' {
                        return Err("unterminated quoted string");
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err("unterminated quoted string");
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'\'' => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err("unclosed action")
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn unquote(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or("unterminated escape")?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .map_err(|_| format!("invalid escape \\{e}{hex}"))?;
                out.push(char::from_u32(code).ok_or("invalid code point")?);
            }
            d if d.is_digit(8) => {
                let rest: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&format!("{d}{rest}"), 8)
                    .map_err(|_| "invalid octal escape")?;
                out.push(char::from_u32(code).ok_or("invalid code point")?);
            }
            other => return Err(format!("unknown escape sequence \\{other}")),
        }
    }
    Ok(out)
}

fn parse_number(text: &str) -> Result<Tok, String> {
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let radix_int = |prefix: &str, radix: u32| -> Option<i64> {
        let d = digits
            .strip_prefix(prefix)
            .or_else(|| digits.strip_prefix(&prefix.to_uppercase()))?;
        i64::from_str_radix(d, radix).ok()
    };
    let int = radix_int("0x", 16)
        .or_else(|| radix_int("0o", 8))
        .or_else(|| radix_int("0b", 2))
        .or_else(|| {
            if digits.len() > 1
                && digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                i64::from_str_radix(&digits[1..], 8).ok()
            } else {
                digits.parse::<i64>().ok()
            }
        });
    if let Some(i) = int {
        return Ok(Tok::Int(if neg { -i } else { i }));
    }
    match digits.parse::<f64>() {
        Ok(f) if digits.contains(['.', 'e', 'E']) => Ok(Tok::Float(if neg { -f } else { f })),
        _ => Err(format!("bad number syntax: {text:?}")),
    }
}

fn lex(body: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    // Reads `.a.b` chains starting at `i` (which points at a '.').
    let fields = |i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < chars.len()
            && chars[*i] == '.'
            && chars.get(*i + 1).is_some_and(|c| is_ident_char(*c))
        {
            *i += 1;
            let start = *i;
            while *i < chars.len() && is_ident_char(chars[*i]) {
                *i += 1;
            }
            out.push(chars[start..*i].iter().collect());
        }
        out
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if is_space(c) => {
                while i < chars.len() && is_space(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Space);
            }
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '"' => {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if i < chars.len() && chars[i] == '\n' {
                        return Err("unterminated quoted string".into());
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated quoted string".into());
                }
                let raw: String = chars[start..i].iter().collect();
                toks.push(Tok::Str(unquote(&raw)?));
                i += 1;
            }
            '`' => {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated raw quoted string".into());
                }
                toks.push(Tok::Str(chars[start..i].iter().collect()));
                i += 1;
            }
            '\'' => {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated character constant".into());
                }
                let raw: String = chars[start..i].iter().collect();
                let s = unquote(&raw)?;
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(ch), None) => toks.push(Tok::Int(ch as i64)),
                    _ => return Err(format!("malformed character constant: '{raw}'")),
                }
                i += 1;
            }
            '$' => {
                i += 1;
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let f = fields(&mut i);
                toks.push(Tok::Var(name, f));
            }
            '.' if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                toks.push(parse_number(&text)?);
            }
            '.' => {
                let f = fields(&mut i);
                if f.is_empty() {
                    i += 1;
                }
                toks.push(Tok::Field(f));
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars
                        .get(i + 1)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    let prev = chars[i - 1];
                    if d.is_ascii_alphanumeric()
                        || d == '.'
                        || d == '_'
                        || ((d == '-' || d == '+') && matches!(prev, 'e' | 'E' | 'p' | 'P'))
                    {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let text: String = chars[start..i].iter().collect();
                toks.push(parse_number(&text)?);
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

/// Functions a template may call: Go's builtins and Prometheus's additions.
pub const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "urlquery",
    "html",
    "js",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "title",
    "toUpper",
    "toLower",
    "reReplaceAll",
    "match",
    "stripPort",
    "stripDomain",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "args",
    "safeHtml",
    "now",
    "externalURL",
    "pathPrefix",
    "parseDuration",
    "urlQueryEscape",
    "graphLink",
    "tableLink",
];

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    line: usize,
    name: &'a str,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            name: self.name.to_string(),
            line: self.line,
            message: message.into(),
        }
    }

    fn skip_space(&mut self) {
        while self.toks.get(self.pos) == Some(&Tok::Space) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<&Tok> {
        self.skip_space();
        self.toks.get(self.pos)
    }

    fn pipeline(&mut self, context: &str) -> Result<Pipeline, TemplateError> {
        let mut vars = Vec::new();
        let mut assign = false;
        // A declaration looks like `$x :=`, `$x =` or `$k, $v :=`.
        let save = self.pos;
        loop {
            match self.peek().cloned() {
                Some(Tok::Var(name, f)) if f.is_empty() => {
                    self.pos += 1;
                    match self.peek() {
                        Some(Tok::Declare) => {
                            vars.push(name);
                            self.pos += 1;
                            break;
                        }
                        Some(Tok::Assign) => {
                            vars.push(name);
                            assign = true;
                            self.pos += 1;
                            break;
                        }
                        Some(Tok::Comma) if context == "range" && vars.is_empty() => {
                            vars.push(name);
                            self.pos += 1;
                        }
                        _ => {
                            vars.clear();
                            self.pos = save;
                            break;
                        }
                    }
                }
                _ => {
                    if !vars.is_empty() {
                        return Err(self.err("expected variable after comma in range"));
                    }
                    self.pos = save;
                    break;
                }
            }
        }
        let mut cmds = Vec::new();
        loop {
            let cmd = self.command()?;
            if cmd.args.is_empty() {
                return Err(self.err(format!("missing value for {context}")));
            }
            cmds.push(cmd);
            match self.peek() {
                Some(Tok::Pipe) => {
                    self.pos += 1;
                }
                _ => break,
            }
        }
        Ok(Pipeline {
            line: self.line,
            vars,
            assign,
            cmds,
        })
    }

    fn command(&mut self) -> Result<Command, TemplateError> {
        let mut args = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::Pipe) | Some(Tok::RParen) => break,
                _ => args.push(self.operand()?),
            }
        }
        Ok(Command { args })
    }

    fn operand(&mut self) -> Result<Operand, TemplateError> {
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| self.err("unexpected end of action"))?;
        self.pos += 1;
        let op = match tok {
            Tok::Field(f) => Operand::Dot(f),
            Tok::Var(name, f) => Operand::Var(name, f),
            Tok::Str(s) => Operand::Str(s),
            Tok::Int(i) => Operand::Int(i),
            Tok::Float(f) => Operand::Float(f),
            Tok::Ident(id) => match id.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                _ if FUNCTIONS.contains(&id.as_str()) => Operand::Func(id),
                _ => return Err(self.err(format!("function {id:?} not defined"))),
            },
            Tok::LParen => {
                let inner = self.pipeline("parenthesized pipeline")?;
                match self.peek() {
                    Some(Tok::RParen) => self.pos += 1,
                    _ => return Err(self.err("unclosed left paren")),
                }
                // A field chain directly after `)` (no space) applies to the result.
                let fields = match self.toks.get(self.pos) {
                    Some(Tok::Field(f)) if !f.is_empty() => {
                        let f = f.clone();
                        self.pos += 1;
                        f
                    }
                    _ => Vec::new(),
                };
                Operand::Sub(Box::new(inner), fields)
            }
            other => return Err(self.err(format!("unexpected {} in operand", describe(&other)))),
        };
        Ok(op)
    }
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::Pipe => "\"|\"",
        Tok::RParen => "\")\"",
        Tok::Declare => "\":=\"",
        Tok::Assign => "\"=\"",
        Tok::Comma => "\",\"",
        _ => "token",
    }
}

/// What an action's first word makes it.
enum Action {
    Pipe(Pipeline),
    If(Pipeline),
    With(Pipeline),
    Range(Pipeline),
    ElseIf(Pipeline),
    ElseWith(Pipeline),
    Else,
    End,
    Break,
    Continue,
}

fn parse_action(name: &str, body: &str, line: usize) -> Result<Action, TemplateError> {
    let toks = lex(body).map_err(|message| TemplateError::Parse {
        name: name.to_string(),
        line,
        message,
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        line,
        name,
    };
    let keyword = match p.peek() {
        Some(Tok::Ident(id)) => Some(id.clone()),
        None => return Err(p.err("missing value for command")),
        _ => None,
    };
    let finish = |p: &mut Parser, a: Action| -> Result<Action, TemplateError> {
        match p.peek() {
            None => Ok(a),
            Some(t) => {
                let d = describe(&t.clone());
                Err(p.err(format!("unexpected {d} in command")))
            }
        }
    };
    match keyword.as_deref() {
        Some(kw @ ("if" | "with" | "range")) => {
            p.pos += 1;
            let pipe = p.pipeline(kw)?;
            let a = match kw {
                "if" => Action::If(pipe),
                "with" => Action::With(pipe),
                _ => Action::Range(pipe),
            };
            finish(&mut p, a)
        }
        Some("else") => {
            p.pos += 1;
            match p.peek().cloned() {
                Some(Tok::Ident(kw)) if kw == "if" || kw == "with" => {
                    p.pos += 1;
                    let pipe = p.pipeline(&kw)?;
                    let a = if kw == "if" {
                        Action::ElseIf(pipe)
                    } else {
                        Action::ElseWith(pipe)
                    };
                    finish(&mut p, a)
                }
                _ => finish(&mut p, Action::Else),
            }
        }
        Some("end") => {
            p.pos += 1;
            finish(&mut p, Action::End)
        }
        Some("break") => {
            p.pos += 1;
            finish(&mut p, Action::Break)
        }
        Some("continue") => {
            p.pos += 1;
            finish(&mut p, Action::Continue)
        }
        Some(kw @ ("define" | "template" | "block")) => {
            Err(p.err(format!("{kw:?} is not supported")))
        }
        _ => {
            let pipe = p.pipeline("command")?;
            finish(&mut p, Action::Pipe(pipe))
        }
    }
}

/// How a list of nodes ended.
enum Stop {
    Eof,
    End,
    Else,
    ElseIf(Pipeline),
    ElseWith(Pipeline),
}

struct TreeBuilder<'a> {
    name: &'a str,
    pieces: std::vec::IntoIter<Piece>,
    range_depth: usize,
    line: usize,
}

impl TreeBuilder<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            name: self.name.to_string(),
            line: self.line,
            message: message.into(),
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (body, line) = match piece {
                Piece::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Piece::Action { body, line } => (body, line),
            };
            self.line = line;
            match parse_action(self.name, &body, line)? {
                Action::Pipe(p) => nodes.push(Node::Action(p)),
                Action::If(cond) => {
                    let (then, otherwise) = self.branches("if")?;
                    nodes.push(Node::If {
                        cond,
                        then,
                        otherwise,
                    });
                }
                Action::With(cond) => {
                    let (then, otherwise) = self.branches("with")?;
                    nodes.push(Node::With {
                        cond,
                        then,
                        otherwise,
                    });
                }
                Action::Range(pipe) => {
                    self.range_depth += 1;
                    let (body, otherwise) = self.branches("range")?;
                    self.range_depth -= 1;
                    nodes.push(Node::Range {
                        pipe,
                        body,
                        otherwise,
                    });
                }
                Action::Break | Action::Continue if self.range_depth == 0 => {
                    return Err(self.err("break or continue outside range"));
                }
                Action::Break => nodes.push(Node::Break),
                Action::Continue => nodes.push(Node::Continue),
                Action::End => return Ok((nodes, Stop::End)),
                Action::Else => return Ok((nodes, Stop::Else)),
                Action::ElseIf(p) => return Ok((nodes, Stop::ElseIf(p))),
                Action::ElseWith(p) => return Ok((nodes, Stop::ElseWith(p))),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// Body of an if/with/range up to its `end`, with the optional else part.
    fn branches(&mut self, kw: &str) -> Result<(Vec<Node>, Vec<Node>), TemplateError> {
        let (then, stop) = self.list()?;
        let otherwise = match stop {
            Stop::End => Vec::new(),
            Stop::Eof => return Err(self.err(format!("unexpected EOF: missing end of {kw}"))),
            Stop::Else => match self.list()? {
                (nodes, Stop::End) => nodes,
                _ => return Err(self.err(format!("expected end after else in {kw}"))),
            },
            Stop::ElseIf(cond) if kw == "if" => {
                // `else if` shares the outer `end`.
                let (then, otherwise) = self.branches("if")?;
                vec![Node::If {
                    cond,
                    then,
                    otherwise,
                }]
            }
            Stop::ElseWith(cond) if kw == "with" => {
                let (then, otherwise) = self.branches("with")?;
                vec![Node::With {
                    cond,
                    then,
                    otherwise,
                }]
            }
            Stop::ElseIf(_) | Stop::ElseWith(_) => {
                return Err(self.err(format!("unexpected else-chain in {kw}")));
            }
        };
        Ok((then, otherwise))
    }
}

/// Parses a whole template source.
pub fn parse(name: &str, src: &str) -> Result<Vec<Node>, TemplateError> {
    let pieces = split(name, src)?;
    let mut b = TreeBuilder {
        name,
        pieces: pieces.into_iter(),
        range_depth: 0,
        line: 1,
    };
    match b.list()? {
        (nodes, Stop::Eof) => Ok(nodes),
        (_, Stop::End) => Err(b.err("unexpected {{end}}")),
        _ => Err(b.err("unexpected {{else}}")),
    }
}
