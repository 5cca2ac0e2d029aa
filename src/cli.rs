//! Command-line definitions only; parsed arguments become plain config in each command.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "recordctl",
    version,
    about = "Drive traffic at a system, break it on purpose, and prove from metrics, logs and traces what happened",
    arg_required_else_help = true,
    after_help = "Exit codes: 0 passed; 1 a check failed; 2 usage or config error; 3 something needed is unreachable; 130 interrupted.\n\n\
Examples:\n  \
recordctl journey --trace                           # one purchase through the embedded store, followed in traces, logs, metrics\n  \
recordctl load-test --scenario purchase --users 20 --duration 1m --threshold 'p95<300ms'\n  \
recordctl load-test --target http://localhost:8000 --rate 200/s --duration 30s\n  \
recordctl drill db-outage                           # against the compose stack (docker compose up -d)\n  \
recordctl smoke --target http://localhost:8000 --junit smoke.xml\n  \
recordctl doctor                                    # what answers, and how to start what does not\n  \
recordctl store                                     # run the embedded recordstore in the foreground\n\n\
Each command has its own --help with examples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive load at a target: a scenario in a closed model (users) or an open model (a fixed
    /// arrival rate), or raw throughput against one URL (--connections).
    #[command(after_help = LOAD_TEST_EXAMPLES)]
    LoadTest(Box<LoadTestArgs>),
    /// Run one scripted purchase (browse → product → checkout → poll the order) and, with
    /// --trace, show it as one timeline of spans, log lines and metrics.
    #[command(after_help = JOURNEY_EXAMPLES)]
    Journey(JourneyArgs),
    /// Show the traces, log lines and metrics of one correlation id, trace id or order id
    /// seen earlier, as one timeline, from the stack's Jaeger, Loki and Prometheus.
    #[command(
        after_help = "Examples:\n  recordctl correlate journey-1a2b3c4d\n  recordctl correlate 4bf92f3577b34da6a3ce929d0e0e4736\n  recordctl correlate 42 --target http://localhost:8000   # an order id, resolved through the API\n\nExit codes: 0 all three pillars found; 1 a pillar is missing; 2 bad id; 3 the id cannot be resolved because a backend is unreachable."
    )]
    Correlate(CorrelateArgs),
    /// Break the system on purpose while traffic runs (drills/NAME.toml), measure time to
    /// detect and to recover, check no acknowledged order was lost, and put everything back.
    #[command(after_help = DRILL_EXAMPLES)]
    Drill(DrillArgs),
    /// Probe HTTP(S) or TCP endpoints like blackbox_exporter: phase timings, status, body and
    /// header expressions, latency limit, certificate expiry; once or continuously.
    #[command(after_help = PROBE_EXAMPLES)]
    Probe(ProbeArgs),
    /// The CI gate: health, readiness, one purchase journey (traced when backends are
    /// configured), the sample probes. Embedded store by default.
    #[command(after_help = SMOKE_EXAMPLES)]
    Smoke(SmokeArgs),
    /// Check every endpoint recordctl would use (target, Prometheus, Loki, Jaeger,
    /// Alertmanager, Docker and the compose project) and say how to fix what is missing.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
    /// Work with saved reports: merge HdrHistogram logs from several load generators.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Run the embedded recordstore (API + worker, SQLite) in the foreground until Ctrl-C.
    #[command(
        after_help = "Examples:\n  recordctl store\n  recordctl store --listen 127.0.0.1:8000 --database sqlite:///tmp/store.db"
    )]
    Store(StoreArgs),
    /// Internal: the drill's packet delayer, run in the network helper container on kernels
    /// without sch_netem. Delays every packet the namespace sends until SIGTERM.
    #[command(hide = true)]
    NetworkDelayQueue {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        delay_ms: u64,
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        jitter_ms: u64,
    },
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

const PROBE_EXAMPLES: &str = "Exit codes: 0 every probe passed (continuous: availability at least --min-availability);
1 a probe failed; 2 bad flag or probes file; 3 the Pushgateway is unreachable; 130 interrupted.

Examples:
  recordctl probe http://localhost:8000/health/ready --expect-status 200 --max-latency 500ms
  recordctl probe https://example.internal/ --insecure --format prometheus
  recordctl probe http://localhost:8000/products --body-regex '\"products\"' --header-regex 'content-type: json'
  recordctl probe tcp://localhost:5432
  recordctl probe --file probes.toml --target http://localhost:8000
  recordctl probe --file probes.toml --target http://localhost:8000 --every 10s --for 5m --json -
  recordctl probe --file sample --target http://localhost:8000 --push-gateway http://localhost:9091";

const SMOKE_EXAMPLES: &str =
    "Checks: live, ready, journey (an order completed; with backends configured, its trace, log
lines and metrics too), then each sample probe (probes.toml).

Exit codes: 0 every check passed; 1 a check failed; 2 bad flag; 3 the target is unreachable.

Examples:
  recordctl smoke                                   # embedded store: passes in any CI with no setup
  recordctl smoke --junit smoke.xml
  recordctl smoke --target http://localhost:8000 --trace --json smoke.json";

const DOCTOR_EXAMPLES: &str = "Exit codes: 0 everything required answered (warnings allowed); 3 something required is
missing (each row says how to fix it).

Examples:
  recordctl doctor
  recordctl doctor --target http://localhost:8000 --prometheus http://localhost:9090 --json -
  recordctl doctor --skip docker";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeFormat {
    Table,
    Json,
    Prometheus,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// http://…, https://… or tcp://host:port (a path like /health/ready needs --target).
    pub url: Option<String>,
    /// A probes file (TOML, [[probe]] entries); `sample` for the built-in probes.toml.
    #[arg(long, short = 'f')]
    pub file: Option<String>,
    /// Base URL that paths in the file (or the URL argument) are joined to.
    #[arg(long, env = "RECORDCTL_TARGET")]
    pub target: Option<String>,
    /// Accepted status codes (comma-separated) [default: any 2xx].
    #[arg(long, value_delimiter = ',')]
    pub expect_status: Vec<u16>,
    /// Fail when the whole probe takes longer (e.g. 500ms).
    #[arg(long)]
    pub max_latency: Option<String>,
    /// The body must match (repeatable).
    #[arg(long)]
    pub body_regex: Vec<String>,
    /// The body must not match (repeatable).
    #[arg(long)]
    pub body_not_regex: Vec<String>,
    /// A header must match: 'Name: regex' (repeatable).
    #[arg(long)]
    pub header_regex: Vec<String>,
    /// Extra request header: 'Name: value' (repeatable).
    #[arg(long, short = 'H')]
    pub header: Vec<String>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Report a redirect instead of following it.
    #[arg(long)]
    pub no_follow_redirects: bool,
    /// Accept any TLS certificate (its expiry is still reported).
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Give up on a probe after this long.
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// TCP: send this after connecting.
    #[arg(long)]
    pub send: Option<String>,
    /// TCP: the answer must match this regex.
    #[arg(long)]
    pub expect: Option<String>,
    /// Continuous: probe every DURATION ...
    #[arg(long)]
    pub every: Option<String>,
    /// ... for DURATION, then report availability and latency percentiles over the window.
    #[arg(long = "for", value_name = "DURATION")]
    pub r#for: Option<String>,
    /// Continuous: lowest availability (percent) that passes.
    #[arg(long, default_value_t = 100.0)]
    pub min_availability: f64,
    #[arg(long, value_enum, default_value_t = ProbeFormat::Table)]
    pub format: ProbeFormat,
    /// Also write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Push the results (blackbox_exporter's metric names) to a Pushgateway.
    #[arg(long, value_name = "URL")]
    pub push_gateway: Option<String>,
}

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

const DRILL_EXAMPLES: &str = "Built-in drills: db-outage, db-freeze, db-freeze-long, worker-crash, api-restart,
network-partition, payment-latency, slow-payment, db-latency, api-packet-loss (a drills/NAME.toml
in the working directory takes precedence).

Network faults (network-delay, network-loss, network-bandwidth) run `tc`/`iptables` in a
short-lived helper container that joins the target's network namespace with NET_ADMIN; the
helper is removed as soon as it has run. Its image needs sh, ip, tc and iptables
(--network-helper-image; default nicolaka/netshoot:v0.13, pulled if missing). Delays need the
Docker host's kernel to have sch_netem.

Only containers of the compose project (label com.docker.compose.project) and only the
services the drill names are touched. Before each change a journal entry is written
(.recordctl/drill-journal.json); every change is undone on success, failure, Ctrl-C, SIGTERM
or panic. After a SIGKILL, run `recordctl drill --restore`.

Exit codes: 0 hypothesis held, alerts fired in time, no order lost; 1 a check failed (or the
steady state did not hold beforehand: nothing touched); 2 bad drill file or flag;
3 Docker, Prometheus or the target unreachable; 130 interrupted (after restoring).

Examples:
  recordctl drill --list
  recordctl drill db-outage --dry-run
  recordctl drill db-outage --yes --json report.json --junit drill.xml --html drill.html
  recordctl drill db-latency --yes --network-helper-image my-registry/nettools:1
  recordctl drill drills/my-drill.toml --project recordstore --target http://localhost:8000
  recordctl drill --restore
  recordctl drill --restore --forget   # entries whose containers compose removed";

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

const LOAD_TEST_EXAMPLES: &str = "Models:
  closed   --users N [--ramp-up 10s] [--iterations N]   users loop through the scenario (goose)
  open     --rate 500/s [--stage 30s:1000/s ...]         arrivals on schedule; latency from the intended send time
  plain    --connections N                               back-to-back GETs of one URL, for raw throughput

Without --target the embedded recordstore is started and loaded.
Exit codes: 0 thresholds passed; 1 a threshold failed; 2 bad flag or scenario; 3 target unreachable; 130 interrupted.

Examples:
  recordctl load-test                                   # browse scenario, embedded store
  recordctl load-test --scenario purchase --users 20 --duration 1m --threshold 'p95<300ms'
  recordctl load-test --target http://localhost:8000 --scenario browse --rate 200/s --duration 30s
  recordctl load-test --target http://localhost:8000/products --connections 50 --duration 10s --json -
  recordctl load-test --scenario scenarios/my.toml --threshold 'error_rate<1%' --html report.html";

#[derive(Debug, Clone, clap::Args)]
pub struct LoadTestArgs {
    /// Base URL of the target (plain mode: the exact URL to GET); default the embedded recordstore.
    #[arg(long, env = "RECORDCTL_TARGET")]
    pub target: Option<String>,
    /// A built-in scenario (browse, purchase, checkout, smoke) or a TOML file.
    #[arg(long, short = 's')]
    pub scenario: Option<String>,
    /// Closed model: concurrent users.
    #[arg(long, short = 'u')]
    pub users: Option<usize>,
    /// Closed model: time over which users start.
    #[arg(long)]
    pub ramp_up: Option<String>,
    /// Closed model: iterations per user (then stop, whatever the duration).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Open model: arrivals per second, e.g. 500/s or 30/m.
    #[arg(long, short = 'r')]
    pub rate: Option<String>,
    /// Open model: a ramp stage DURATION:RATE, moving linearly to RATE over DURATION (repeatable).
    #[arg(long = "stage")]
    pub stages: Vec<String>,
    /// Open model: requests in flight at most; later arrivals wait (and count as late).
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Open model: arrivals that may wait for a free slot before further ones are dropped.
    #[arg(long, default_value_t = 100_000)]
    pub max_queue: usize,
    /// Plain mode: connections sending back-to-back requests to --target.
    #[arg(long, short = 'c')]
    pub connections: Option<usize>,
    /// How long to run, e.g. 30s or 2m.
    #[arg(long, short = 'd')]
    pub duration: Option<String>,
    /// Pause between a user's requests: 500ms or 200ms..800ms (overrides the scenario).
    #[arg(long)]
    pub think_time: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Pass/fail rule, e.g. 'p95<300ms', 'p99.9<1s', 'error_rate<1%', 'rps>200' (repeatable).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Write the report as JSON to FILE, or - for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Write a self-contained HTML report with latency charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<String>,
    /// Push the summary as Prometheus metrics to this Pushgateway.
    #[arg(long, value_name = "URL")]
    pub push_gateway: Option<String>,
    /// Stream the generator's own metrics while the run goes: `prometheus-rw=URL` sends them
    /// every second with Prometheus remote write (requests, errors by kind, latency quantiles,
    /// in flight, late and dropped arrivals; labelled run_id, model, scenario, shard).
    #[arg(long, value_name = "OUTPUT")]
    pub out: Vec<String>,
    /// Save the latency histograms (HdrHistogram log) for `recordctl report merge`.
    #[arg(long, value_name = "FILE")]
    pub hdr_out: Option<String>,
    /// Run shard K of N (1-based) of this load, e.g. on N machines: the open model's
    /// arrivals, the closed model's users and plain mode's connections are split between the
    /// shards deterministically, so together they send what one run would. Merge their
    /// --hdr-out logs with `recordctl report merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// The run id the correlation ids start with (shards of one load share it; each adds
    /// its own `-sK`).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge latency histograms saved with `load-test --hdr-out` (e.g. from several machines)
    /// and print the combined percentiles.
    #[command(
        after_help = "Examples:\n  recordctl report merge a.hlog b.hlog\n  recordctl report merge runs/*.hlog --json -"
    )]
    Merge {
        /// HdrHistogram interval logs written by --hdr-out.
        #[arg(required = true)]
        files: Vec<String>,
        /// Print the merged summary as JSON (to FILE, or - for stdout).
        #[arg(long, value_name = "FILE")]
        json: Option<String>,
    },
}

const JOURNEY_EXAMPLES: &str = "Without --target the embedded recordstore is started; its spans, log lines and
metrics are read in memory, so --trace works with nothing else running. With --target,
--trace reads Jaeger, Loki and Prometheus (--jaeger, --loki, --prometheus, or the
RECORDCTL_*_URL variables; default the compose ports).
Exit codes: 0 every journey completed (and, with --trace, every pillar was found); 1 a journey
failed or a pillar is missing; 2 bad flag; 3 target unreachable; 130 interrupted.

Examples:
  recordctl journey --trace
  recordctl journey --correlation-id my-test-1 --json -
  recordctl journey --trace --html journey.html
  recordctl journey --count 20 --concurrency 4
  recordctl journey --target http://localhost:8000 --trace        # traces from Jaeger, logs from Loki, metrics from Prometheus";

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

/// Where the stack's backends answer: flag, then environment, then `[backends]` in
/// recordctl.toml (or --config), then the compose ports.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Prometheus base URL [default: http://localhost:9090].
    #[arg(long = "prometheus", env = "RECORDCTL_PROMETHEUS_URL")]
    pub prometheus: Option<String>,
    /// Loki base URL [default: http://localhost:3100].
    #[arg(long = "loki", env = "RECORDCTL_LOKI_URL")]
    pub loki: Option<String>,
    /// Jaeger query base URL [default: http://localhost:16686].
    #[arg(long = "jaeger", env = "RECORDCTL_JAEGER_URL")]
    pub jaeger: Option<String>,
    /// Alertmanager base URL [default: http://localhost:9093].
    #[arg(long = "alertmanager", env = "RECORDCTL_ALERTMANAGER_URL")]
    pub alertmanager: Option<String>,
    /// Grafana base URL, for links in reports [default: http://localhost:3000].
    #[arg(long = "grafana", env = "RECORDCTL_GRAFANA_URL")]
    pub grafana: Option<String>,
    /// A recordctl.toml with a [backends] table (default: ./recordctl.toml when present).
    #[arg(long = "config", env = "RECORDCTL_CONFIG", value_name = "FILE")]
    pub config: Option<String>,
}

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

/// The subcommand `recordctl <words…>` parses to: what the plans' unit tests start from.
#[cfg(test)]
pub(crate) fn parse_for_test(words: &[&str]) -> Command {
    use clap::Parser;
    let argv = std::iter::once("recordctl").chain(words.iter().copied());
    Cli::try_parse_from(argv).expect("the test's flags parse").command
}
