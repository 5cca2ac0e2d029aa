//! `recordctl`: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = recordctl::cli::Cli::parse();
    ExitCode::from(recordctl::run(cli))
}
