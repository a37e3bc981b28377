//! `sluice-engine`: parse arguments, run, map the result to an exit code.

fn main() {
    std::process::exit(sluice_engine::cli::main());
}
