//! Parses one continuous query with `sqlparser` and rejects, with a position,
//! every statement shape the engine does not run (joins, ORDER BY, LIMIT …).

use sqlparser::ast::{self, SetExpr, Spanned, Statement, TableFactor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};

use super::PlanError;

/// The parts of a `SELECT` the planner works from.
#[derive(Debug)]
pub struct ParsedQuery {
    pub select: ast::Select,
    /// The FROM name (informational: the source is the query's `source_topic`).
    pub from: String,
}

/// Parses `sql` into a single plain `SELECT … FROM one_source …`.
pub fn parse(sql: &str) -> Result<ParsedQuery, PlanError> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(parser_error)?;
    let mut statements = statements.into_iter();
    let (Some(stmt), None) = (statements.next(), statements.next()) else {
        return Err(PlanError::new(
            "expected exactly one SELECT statement",
            None,
        ));
    };
    let Statement::Query(query) = stmt else {
        return Err(PlanError::at("only SELECT queries are supported", &stmt));
    };
    let ast::Query {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        ..
    } = *query;
    if let Some(with) = with {
        return Err(PlanError::at(
            "WITH (common table expressions) is not supported",
            &with,
        ));
    }
    if let Some(order_by) = order_by {
        return Err(PlanError::at(
            "ORDER BY is not supported on an unbounded stream",
            &order_by,
        ));
    }
    if let Some(limit) = limit_clause {
        return Err(PlanError::at(
            "LIMIT/OFFSET is not supported on an unbounded stream",
            &limit,
        ));
    }
    if fetch.is_some() {
        return Err(PlanError::new(
            "FETCH is not supported on an unbounded stream",
            None,
        ));
    }
    let select = match *body {
        SetExpr::Select(select) => *select,
        other => {
            return Err(PlanError::at(
                "only a plain SELECT is supported (no UNION, VALUES or nested queries)",
                &other,
            ));
        }
    };
    if select.distinct.is_some() {
        return Err(PlanError::new("SELECT DISTINCT is not supported", None));
    }
    if select.qualify.is_some() || !select.named_window.is_empty() {
        return Err(PlanError::new(
            "QUALIFY and WINDOW clauses are not supported",
            None,
        ));
    }
    if !select.cluster_by.is_empty()
        || !select.sort_by.is_empty()
        || !select.distribute_by.is_empty()
    {
        return Err(PlanError::new(
            "CLUSTER/SORT/DISTRIBUTE BY are not supported",
            None,
        ));
    }
    let from = match select.from.as_slice() {
        [one] => {
            if let Some(join) = one.joins.first() {
                return Err(PlanError::at("JOIN is not supported", join));
            }
            match &one.relation {
                TableFactor::Table { name, .. } => name.to_string(),
                other => {
                    return Err(PlanError::at(
                        "FROM must name one source (no subqueries)",
                        other,
                    ));
                }
            }
        }
        [] => {
            return Err(PlanError::new(
                "a FROM clause naming the source is required",
                None,
            ));
        }
        [_, second, ..] => {
            return Err(PlanError::at(
                "FROM must name exactly one source (no joins)",
                second,
            ));
        }
    };
    Ok(ParsedQuery { select, from })
}

fn parser_error(e: ParserError) -> PlanError {
    let text = match &e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.clone(),
        ParserError::RecursionLimitExceeded => "query nests too deeply".to_owned(),
    };
    // sqlparser appends " at Line: L, Column: C"; lift it into the position.
    let re = regex::Regex::new(r"\s*at Line: (\d+), Column: (\d+)").ok();
    if let Some(caps) = re.as_ref().and_then(|re| re.captures(&text)) {
        let line = caps[1].parse().unwrap_or(0);
        let col = caps[2].parse().unwrap_or(0);
        let message = re
            .as_ref()
            .map(|re| re.replace(&text, "").into_owned())
            .unwrap_or(text);
        return PlanError::new(format!("syntax error: {message}"), Some((line, col)));
    }
    PlanError::new(format!("syntax error: {text}"), None)
}

/// Start position of any AST node, when sqlparser recorded one.
pub fn position_of(node: &impl Spanned) -> Option<(usize, usize)> {
    let start = node.span().start;
    (start.line > 0).then_some((start.line as usize, start.column as usize))
}
