//! Running runbooks: the executor, what steps see while running, the stages
//! wrapped around every step, and the step kinds.

pub mod context;
pub mod executor;
pub mod stage;
pub mod steps;
