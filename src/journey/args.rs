//! `recordctl journey`'s flags.

use crate::config::StackArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct JourneyArgs {
    /// Base URL of the store; default the embedded recordstore.
    #[arg(long, env = "RECORDCTL_TARGET")]
    pub target: Option<String>,
    /// Correlation id for the journey (with --count, a prefix); default a generated one.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Number of journeys.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Journeys run at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Fetch the journey's trace, log lines and metrics and print one correlated timeline.
    #[arg(long)]
    pub trace: bool,
    /// How long to wait for the order to finish, and for its telemetry with --trace.
    #[arg(long, default_value = "30s")]
    pub wait: String,
    /// Write a self-contained HTML page to FILE: the first journey's waterfall (client steps,
    /// spans, log lines at their times) and the pillar verdicts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<String>,
    /// Write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}
