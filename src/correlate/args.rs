//! `recordctl correlate`'s flags.

use crate::config::StackArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct CorrelateArgs {
    /// A correlation id, a trace id (32 or 16 hex characters) or an order id (digits).
    pub id: String,
    /// The store's base URL, to resolve an order id.
    #[arg(long, env = "RECORDCTL_TARGET", default_value = "http://localhost:8000")]
    pub target: String,
    /// How far back to look for log lines.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}
