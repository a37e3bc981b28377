//! The `sluice-engine` binary, built as part of this crate so the end-to-end
//! tests and benchmarks get its path from Cargo (`CARGO_BIN_EXE_…`).

fn main() {
    std::process::exit(sluice_engine::cli::main());
}
