//! Integration tests of runbooks: fixtures, step kinds against real local
//! servers, processes and files, the run store, hostile input. One test binary.

mod channels;
mod cli;
mod fixtures;
mod harness;
mod hostile;
mod kubernetes;
mod steps;
mod targets;
mod unittest;
