//! The command line: the subcommands, their help texts and examples. Each command's flags
//! live with the command (`load::args`, `drill::args`, …) and are re-exported here.

use clap::{Parser, Subcommand};

pub use crate::config::StackArgs;
pub use crate::correlate::CorrelateArgs;
pub use crate::doctor::DoctorArgs;
pub use crate::drill::DrillArgs;
pub use crate::journey::JourneyArgs;
pub use crate::load::LoadTestArgs;
pub use crate::probe::{ProbeArgs, ProbeFormat};
pub use crate::smoke::SmokeArgs;
pub use crate::store_cmd::StoreArgs;

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

const LOAD_TEST_EXAMPLES: &str = "Models:
  closed   --users N [--ramp-up 10s] [--iterations N]   users loop through the scenario (goose)
  open     --rate 500/s [--stage 30s:1000/s ...]         arrivals on schedule; latency from the intended send time
  plain    --connections N                               back-to-back GETs of one URL, for raw throughput
  plain    --connections N --rate 20000/s                GETs of one URL on schedule over N connections
  --tick auto|0|1ms (open, plain on schedule)             arrivals in groups, one per tick: fewer wake-ups
                                                         (auto: 500us from 2,000/s; 0: each at its own instant)

Without --target the embedded recordstore is started and loaded.
Exit codes: 0 thresholds passed; 1 a threshold failed; 2 bad flag or scenario; 3 target unreachable; 130 interrupted.

Examples:
  recordctl load-test                                   # browse scenario, embedded store
  recordctl load-test --scenario purchase --users 20 --duration 1m --threshold 'p95<300ms'
  recordctl load-test --target http://localhost:8000 --scenario browse --rate 200/s --duration 30s
  recordctl load-test --target http://localhost:8000/products --connections 50 --duration 10s --json -
  recordctl load-test --target http://localhost:8000/products --connections 64 --rate 5000/s --duration 10s
  recordctl load-test --target http://localhost:8000/products --connections 64 --rate 20000/s --tick 0
  recordctl load-test --scenario scenarios/my.toml --threshold 'error_rate<1%' --html report.html";

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

/// The subcommand `recordctl <words…>` parses to: what the plans' unit tests start from.
#[cfg(test)]
pub(crate) fn parse_for_test(words: &[&str]) -> Command {
    use clap::Parser;
    let argv = std::iter::once("recordctl").chain(words.iter().copied());
    Cli::try_parse_from(argv).expect("the test's flags parse").command
}
