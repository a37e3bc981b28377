//! Running runbooks: the executor, what steps see while running, the stages
//! wrapped around every step, the step kinds, and rehearsals (runs whose
//! steps are mocked, for `sluice test`).

pub mod context;
pub mod executor;
pub mod rehearsal;
pub mod stage;
pub mod steps;
