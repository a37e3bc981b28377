//! What starts runbooks (alerts, schedules, webhooks, people) and the guardrails
//! every start passes through.

pub mod guard;
