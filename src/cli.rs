//! Command-line definitions only; parsed arguments become plain config in each command.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "recordctl",
    version,
    about = "Drive traffic at a system, break it on purpose, and prove from metrics, logs and traces what happened",
    arg_required_else_help = true,
    after_help = "Exit codes: 0 passed; 1 a check failed; 2 usage or config error; 3 something needed is unreachable; 130 interrupted.\n\n\
Examples:\n  recordctl store                 # run the embedded recordstore in the foreground\n  recordctl --version"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded recordstore (API + worker, SQLite) in the foreground until Ctrl-C.
    #[command(
        after_help = "Examples:\n  recordctl store\n  recordctl store --listen 127.0.0.1:8000 --database sqlite:///tmp/store.db"
    )]
    Store(StoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
    /// Database URL (sqlite://… or postgres://…); default a fresh SQLite file in a temp dir.
    #[arg(long)]
    pub database: Option<String>,
}
