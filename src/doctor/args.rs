//! `recordctl doctor`'s flags.

use crate::config::StackArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// The store's base URL.
    #[arg(long, env = "RECORDCTL_TARGET", default_value = "http://localhost:8000")]
    pub target: String,
    /// Compose project to inspect [default: the one with recordstore's services].
    #[arg(long, env = "COMPOSE_PROJECT_NAME")]
    pub project: Option<String>,
    /// Leave out checks: target, prometheus, loki, jaeger, alertmanager, grafana, docker (repeatable
    /// or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}
