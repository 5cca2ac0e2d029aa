//! `recordctl drill`'s flags.

use crate::config::StackArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// A built-in drill name or a drill TOML file.
    pub drill: Option<String>,
    /// List the built-in drills.
    #[arg(long)]
    pub list: bool,
    /// Undo every change the journal says is still in place (after a killed drill).
    #[arg(long, conflicts_with_all = ["drill", "list", "dry_run"])]
    pub restore: bool,
    /// With --restore: drop the journal's entries without undoing them (their containers are
    /// gone); asks first unless --yes.
    #[arg(long, requires = "restore")]
    pub forget: bool,
    /// Print the plan (containers, faults, undo steps) and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation on a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Base URL of the deployed store.
    #[arg(long, env = "RECORDCTL_TARGET", default_value = "http://localhost:8000")]
    pub target: String,
    /// Compose project whose containers the drill may touch [default: the one project that
    /// has the drill's services].
    #[arg(long, env = "COMPOSE_PROJECT_NAME")]
    pub project: Option<String>,
    /// The store's admin token, for payment faults.
    #[arg(long, env = "RECORDSTORE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Lower the drill's cap on how long any fault is held (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub max_fault: Option<String>,
    /// Where the undo journal lives.
    #[arg(long, default_value = ".recordctl/drill-journal.json")]
    pub journal: String,
    /// Write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Write a JUnit XML report (one test case per promise) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<String>,
    /// Write a self-contained HTML page to FILE: the timeline chart (traffic, the fault, the
    /// alerts, detect and recover), the ledger, the alerts, the first failed request's links.
    #[arg(long, value_name = "FILE")]
    pub html: Option<String>,
    /// The image of the helper container that applies network faults (needs sh, ip, tc,
    /// iptables).
    #[arg(
        long,
        value_name = "IMAGE",
        env = "RECORDCTL_NETWORK_HELPER_IMAGE",
        default_value = crate::drill::network::DEFAULT_HELPER_IMAGE
    )]
    pub network_helper_image: String,
    #[command(flatten)]
    pub stack: StackArgs,
}
