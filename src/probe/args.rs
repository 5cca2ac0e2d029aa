//! `recordctl probe`'s flags.

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
