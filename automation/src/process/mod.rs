//! Supervised local processes: the engine started by `sluice up`, and the
//! engine instances that `process.*` steps start, stop, restart and scale.
//!
//! Each child runs in its own process group, so stopping it also stops
//! anything it spawned; a stop is SIGTERM, then SIGKILL after a grace period.
//! A child that exits on its own is restarted with exponential backoff, up to a
//! limit, and every transition is visible in [`ProcessStatus`].
//! [`instance`] says how the N engine processes of one target are derived.

pub mod instance;
pub mod orphan;
mod supervisor;

pub use supervisor::{
    ProcessSpec, ProcessState, ProcessStatus, RestartPolicy, Supervisor, SupervisorError,
};
