//! Executes a parsed template against a value, as Go's `text/template` does.

use super::TemplateError;
use super::format::print_value;
use super::funcs::{self, Env};
use super::parse::{Command, Node, Operand, Pipeline};
use super::value::Value;

enum Flow {
    Normal,
    Break,
    Continue,
}

struct State<'a> {
    name: &'a str,
    env: &'a Env<'a>,
    vars: Vec<(String, Value)>,
    out: String,
    line: usize,
}

/// Runs `nodes` with `data` as dot and `$`.
pub fn execute(
    name: &str,
    nodes: &[Node],
    data: &Value,
    env: &Env,
) -> Result<String, TemplateError> {
    let mut st = State {
        name,
        env,
        vars: vec![(String::new(), data.clone())],
        out: String::new(),
        line: 1,
    };
    st.walk(nodes, data)?;
    Ok(st.out)
}

impl State<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Exec {
            name: self.name.to_string(),
            line: self.line,
            message: message.into(),
        }
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        self.out.push_str(&print(&v));
                    }
                }
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
                    let mark = self.vars.len();
                    let v = self.pipeline(cond, dot)?;
                    let is_with = matches!(node, Node::With { .. });
                    let flow = if v.is_true() {
                        let inner_dot = if is_with { v } else { dot.clone() };
                        self.walk(then, &inner_dot)?
                    } else {
                        self.walk(otherwise, dot)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    self.range(pipe, body, otherwise, dot)?;
                    self.vars.truncate(mark);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), TemplateError> {
        // The range pipeline's variables are bound per element, not to the whole value.
        let plain = Pipeline {
            vars: Vec::new(),
            assign: false,
            ..pipe.clone()
        };
        let v = self.pipeline(&plain, dot)?;
        let items: Vec<(Value, Value)> = match v {
            Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
            Value::List(l) => l
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v))
                .collect(),
            Value::Int(n) => (0..n.max(0))
                .map(|i| (Value::Int(i), Value::Int(i)))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(self.err(format!("range can't iterate over {}", print_value(&other))));
            }
        };
        if items.is_empty() {
            self.walk(otherwise, dot)?;
            return Ok(());
        }
        let mark = self.vars.len();
        for (key, elem) in items {
            self.vars.truncate(mark);
            match pipe.vars.as_slice() {
                [] => {}
                [v] => self.vars.push((v.clone(), elem.clone())),
                [k, v, ..] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), elem.clone()));
                }
            }
            match self.walk(body, &elem)? {
                Flow::Break => break,
                Flow::Continue | Flow::Normal => {}
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        self.line = p.line;
        let mut value: Option<Value> = None;
        for cmd in &p.cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for name in &p.vars {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => return Err(self.err(format!("undefined variable: ${name}"))),
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Some(first) = cmd.args.first() else {
            return Err(self.err("empty command"));
        };
        if let Operand::Func(name) = first {
            return self.call(name, &cmd.args[1..], dot, piped);
        }
        if cmd.args.len() > 1 || piped.is_some() {
            return Err(self.err(format!(
                "can't give argument to non-function {}",
                describe(first)
            )));
        }
        self.operand(first, dot)
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Operand],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        // `and`/`or` stop evaluating at the first decisive argument, like Go 1.18+.
        if name == "and" || name == "or" {
            let total = args.len() + usize::from(piped.is_some());
            if total == 0 {
                return Err(self.err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                )));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.operand(a, dot)?;
                if (name == "and") != last.is_true() {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.operand(a, dot)?);
        }
        values.extend(piped);
        funcs::call(name, values, self.env)
            .map_err(|e| self.err(format!("error calling {name}: {e}")))
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        match op {
            Operand::Dot(fields) => self.fields(dot.clone(), fields),
            Operand::Var(name, fields) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.err(format!("undefined variable: ${name}")))?;
                self.fields(v, fields)
            }
            Operand::Func(name) => self.call(name, &[], dot, None),
            Operand::Str(s) => Ok(Value::Str(s.clone())),
            Operand::Int(i) => Ok(Value::Int(*i)),
            Operand::Float(f) => Ok(Value::Float(*f)),
            Operand::Bool(b) => Ok(Value::Bool(*b)),
            Operand::Nil => Err(self.err("nil is not a command")),
            Operand::Sub(p, fields) => {
                let v = self.pipeline(p, dot)?;
                self.fields(v, fields)
            }
        }
    }

    fn fields(&self, mut v: Value, fields: &[String]) -> Result<Value, TemplateError> {
        for f in fields {
            v = v.field(f).map_err(|e| self.err(e))?;
        }
        Ok(v)
    }
}

fn describe(op: &Operand) -> String {
    match op {
        Operand::Dot(f) if f.is_empty() => ".".to_string(),
        Operand::Dot(f) => format!(".{}", f.join(".")),
        Operand::Var(n, f) if f.is_empty() => format!("${n}"),
        Operand::Var(n, f) => format!("${n}.{}", f.join(".")),
        Operand::Str(s) => format!("{s:?}"),
        Operand::Int(i) => i.to_string(),
        Operand::Float(x) => x.to_string(),
        Operand::Bool(b) => b.to_string(),
        _ => "operand".to_string(),
    }
}

/// Prints an action's result; a nil (missing) value prints as Go does.
fn print(v: &Value) -> String {
    match v {
        Value::Nil => "<no value>".to_string(),
        other => print_value(other),
    }
}
