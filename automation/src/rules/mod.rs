//! Alert and recording rules in Prometheus's rule-file format: parsing with
//! positions, validation like `promtool check rules`, and promtool-format unit
//! tests (`sluice rules test`).

pub mod duration;
mod file;
pub mod unittest;

pub use file::{
    Rule, RuleFile, RuleGroup, RuleKind, check_rule_file, is_valid_label_name,
    is_valid_metric_name, load_rule_file, parse_rule_file,
};

/// Whether the evaluator supports everything `ast` uses. Rejecting at load time
/// gives the rule's file:line instead of a failure at every evaluation.
pub(crate) fn supported(ast: &promql_parser::parser::Expr) -> Result<(), String> {
    sluice_promql::check_supported(ast)
}
