//! `recordctl load-test`'s flags.

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
    /// Open model (and plain mode on a schedule): send the arrivals in groups, one per TICK:
    /// each is due at the start of the tick it falls in, and latency counts from there.
    /// `auto` (the default): a 500us tick from 2,000 arrivals/s at the peak (a shard's), each
    /// arrival at its own instant below that. `0`: each at its own instant at any rate (a
    /// wake-up per arrival: 1.1–2.5× oha's CPU per request at 5,000/s and 20,000/s). A
    /// duration (e.g. 1ms): fewer wake-ups, at the price of bursts the target sees.
    #[arg(long, value_name = "TICK")]
    pub tick: Option<String>,
    /// Open model (and plain mode on a schedule): arrivals that may wait for a free slot
    /// before further ones are dropped (at least 1).
    #[arg(long, default_value_t = 100_000)]
    pub max_queue: usize,
    /// Plain mode: connections sending requests to --target, back to back, on a load thread
    /// per core (less one left to a target on this machine, a loopback address); with --rate
    /// or --stage, on the open model's schedule (each connection takes the next due arrival).
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
