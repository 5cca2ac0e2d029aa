//! recordctl: a toolkit that drives traffic at recordstore (or any HTTP target), breaks it
//! on purpose, and proves from metrics, logs and traces what happened.

pub mod cli;
pub mod exit;
mod store_cmd;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: cli::Cli) -> u8 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("recordctl: cannot start the async runtime: {err}");
            return exit::UNREACHABLE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            cli::Command::Store(args) => store_cmd::run(args).await,
        }
    })
}
