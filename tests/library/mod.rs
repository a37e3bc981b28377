//! The shipped runbook library on real engines. Each test builds its own
//! [`World`](sluice_tests::world::World) (engines on free loopback ports, a
//! fresh store), injects the fault where there is one, runs the runbook, and
//! checks the engine afterwards.

mod consistency;
mod lifecycle;
mod maintenance;
mod process_steps;
mod remediation;
mod scaling;
