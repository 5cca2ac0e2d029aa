//! `recordctl smoke`'s flags.

use crate::config::StackArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {
    /// The store's base URL; default the embedded recordstore.
    #[arg(long, env = "RECORDCTL_TARGET")]
    pub target: Option<String>,
    /// Also check the journey's trace, log lines and metrics (on by default for the embedded
    /// store; for a deployed one it needs the stack's backends).
    #[arg(long)]
    pub trace: bool,
    /// How long the journey may wait for its order (and telemetry).
    #[arg(long, default_value = "30s")]
    pub wait: String,
    /// Probes to run [default: the built-in probes.toml].
    #[arg(long)]
    pub probes: Option<String>,
    /// Write a JUnit XML report (one test case per check) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<String>,
    /// Write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}
