//! Integration tests of runbooks: fixtures, step kinds against real local
//! servers and files, the run store, hostile input. One test binary.

mod fixtures;
