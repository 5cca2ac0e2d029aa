//! `recordctl probe`: blackbox probes (HTTP with phase timings and assertions, TCP), one-shot
//! or continuous, reported as a table, JSON, or Prometheus text with blackbox_exporter's
//! metric names so existing dashboards work.

pub mod args;
pub mod conn;
pub mod spec;
pub mod x509;

pub use args::{ProbeArgs, ProbeFormat};

use std::fmt::Write;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use regex::Regex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::exit::{CommandResult, Outcome, UsageError};
use crate::output::Delivery;
use crate::units::parse_duration;
pub use conn::{Phases, ProbeResult};
use spec::{HttpSpec, ProbeSpec, TcpSpec};

/// Builds the probe list from the command line: a file, or one URL with flags.
pub fn specs_from_args(args: &ProbeArgs) -> Result<Vec<ProbeSpec>, UsageError> {
    let timeout = parse_duration(&args.timeout).map_err(|e| format!("--timeout: {e}"))?;
    if let Some(file) = &args.file {
        if args.url.is_some() {
            return Err("give a URL or --file, not both".into());
        }
        let text = if file == "sample" {
            spec::SAMPLE.to_string()
        } else {
            std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?
        };
        return spec::parse(&text, file, args.target.as_deref()).map_err(|e| UsageError(e.to_string()));
    }
    let Some(url) = &args.url else {
        return Err("give a URL to probe (http://…, https://…, tcp://host:port) or --file probes.toml".into());
    };
    if let Some(address) = url.strip_prefix("tcp://") {
        let expect = args
            .expect
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| format!("--expect: {e}"))?;
        return Ok(vec![ProbeSpec::Tcp(TcpSpec {
            name: url.clone(),
            address: address.to_string(),
            send: args.send.clone(),
            expect,
            timeout,
        })]);
    }
    let url = spec::resolve_url(url, args.target.as_deref())?;
    let regexes = |patterns: &[String], flag: &str| -> Result<Vec<Regex>, UsageError> {
        patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| UsageError(format!("{flag} {p:?}: {e}"))))
            .collect()
    };
    let header_regex = args
        .header_regex
        .iter()
        .map(|h| {
            let (name, pattern) = h
                .split_once(':')
                .ok_or_else(|| format!("--header-regex {h:?}: expected 'Name: regex'"))?;
            Regex::new(pattern.trim())
                .map(|re| (name.trim().to_string(), re))
                .map_err(|e| format!("--header-regex {h:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let headers = args
        .header
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))
        })
        .collect::<Result<_, _>>()?;
    let max_latency = args
        .max_latency
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| format!("--max-latency: {e}"))?;
    Ok(vec![ProbeSpec::Http(HttpSpec {
        name: url.clone(),
        url,
        method: args.method.to_uppercase(),
        headers,
        expect_status: args.expect_status.clone(),
        max_latency,
        body_regex: regexes(&args.body_regex, "--body-regex")?,
        body_not_regex: regexes(&args.body_not_regex, "--body-not-regex")?,
        header_regex,
        follow_redirects: !args.no_follow_redirects,
        insecure: args.insecure,
        timeout,
    })])
}

/// Runs every probe once, concurrently; results in the order of `specs`.
pub async fn run_all(specs: &[ProbeSpec]) -> Vec<ProbeResult> {
    let mut set = tokio::task::JoinSet::new();
    for (i, spec) in specs.iter().cloned().enumerate() {
        set.spawn(async move { (i, conn::run(&spec).await) });
    }
    let mut results: Vec<(usize, ProbeResult)> = set.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Availability and latency of one probe over a continuous run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowSummary {
    pub name: String,
    pub target: String,
    pub checks: u64,
    pub successes: u64,
    pub availability: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The last failure seen, if any.
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The JSON document's version: a field is only ever added within one.
    pub schema_version: u32,
    /// One-shot results, or the last round of a continuous run.
    pub results: Vec<ProbeResult>,
    /// Continuous runs only.
    pub window: Option<Vec<WindowSummary>>,
    pub passed: bool,
}

/// How the probes run: once, or every `every` for `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Once,
    Continuous { every: Duration, window: Duration },
}

/// The probe run's plan, from its flags alone (a probes file is read, nothing is dialled).
#[derive(Debug)]
pub struct ProbePlan {
    pub specs: Vec<ProbeSpec>,
    pub schedule: Schedule,
}

impl ProbePlan {
    /// `Err` is the message for a usage error (exit 2).
    pub fn from_args(args: &ProbeArgs) -> Result<ProbePlan, UsageError> {
        let specs = specs_from_args(args)?;
        let every = args
            .every
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("--every: {e}"))?;
        let window = args
            .r#for
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("--for: {e}"))?;
        let schedule = match (every, window) {
            (None, None) => Schedule::Once,
            (Some(every), Some(window)) if !every.is_zero() => Schedule::Continuous { every, window },
            _ => {
                return Err("continuous probing needs both --every and --for (e.g. --every 10s --for 5m)".into());
            }
        };
        Ok(ProbePlan { specs, schedule })
    }
}

pub async fn run(args: ProbeArgs, interrupt: CancellationToken) -> CommandResult {
    let plan = ProbePlan::from_args(&args)?;
    let report = match plan.schedule {
        Schedule::Once => {
            let results = run_all(&plan.specs).await;
            let passed = results.iter().all(|r| r.success);
            ProbeReport {
                schema_version: 1,
                results,
                window: None,
                passed,
            }
        }
        Schedule::Continuous { every, window } => {
            continuous(&plan.specs, every, window, args.min_availability, &interrupt).await
        }
    };
    let text = match args.format {
        ProbeFormat::Table => render_table(&report),
        ProbeFormat::Prometheus => exposition(&report.results),
        ProbeFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    };
    let mut delivery = Delivery::default();
    delivery.show(&text, &report, args.json.as_deref());
    if let Some(gateway) = &args.push_gateway
        && let Err(e) =
            crate::backends::pushgateway::put(gateway, "job/recordctl_probe", exposition(&report.results)).await
    {
        delivery.failed_to_send(e.to_string());
    }
    delivery.conclude(if interrupt.is_cancelled() {
        Outcome::Interrupted
    } else {
        Outcome::checks(report.passed)
    })
}

async fn continuous(
    specs: &[ProbeSpec],
    every: Duration,
    window: Duration,
    min_availability: f64,
    interrupt: &CancellationToken,
) -> ProbeReport {
    let start = Instant::now();
    let mut histograms: Vec<Histogram<u64>> = specs
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"))
        .collect();
    let mut summaries: Vec<WindowSummary> = specs
        .iter()
        .map(|s| WindowSummary {
            name: s.name().to_string(),
            target: String::new(),
            checks: 0,
            successes: 0,
            availability: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            last_failure: None,
        })
        .collect();
    let mut last = Vec::new();
    let mut round = 0u32;
    while start.elapsed() < window && !interrupt.is_cancelled() {
        let results = run_all(specs).await;
        for ((result, summary), histogram) in results.iter().zip(&mut summaries).zip(&mut histograms) {
            summary.target = result.target.clone();
            summary.checks += 1;
            if result.success {
                summary.successes += 1;
            } else {
                summary.last_failure = result.failure.clone();
            }
            histogram.saturating_record((result.duration_s * 1e6).max(1.0) as u64);
            eprintln!(
                "[{:>6.1}s] {:<24} {} {:>8.1} ms{}",
                start.elapsed().as_secs_f64(),
                result.name,
                if result.success { "ok  " } else { "FAIL" },
                result.duration_s * 1000.0,
                result.failure.as_deref().map(|f| format!("  {f}")).unwrap_or_default()
            );
        }
        last = results;
        round += 1;
        let next = start + every * round;
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = interrupt.cancelled() => {}
        }
    }
    for (summary, histogram) in summaries.iter_mut().zip(&histograms) {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        summary.availability = if summary.checks == 0 {
            0.0
        } else {
            summary.successes as f64 / summary.checks as f64 * 100.0
        };
        summary.p50_ms = ms(0.5);
        summary.p95_ms = ms(0.95);
        summary.p99_ms = ms(0.99);
        summary.max_ms = histogram.max() as f64 / 1000.0;
    }
    let passed = summaries
        .iter()
        .all(|s| s.checks > 0 && s.availability >= min_availability);
    ProbeReport {
        schema_version: 1,
        results: last,
        window: Some(summaries),
        passed,
    }
}

pub fn render_table(report: &ProbeReport) -> String {
    let mut out = String::new();
    if let Some(window) = &report.window {
        let mut table = crate::output::table();
        table.set_header([
            "probe",
            "checks",
            "availability",
            "p50",
            "p95",
            "p99",
            "max",
            "last failure",
        ]);
        for w in window {
            table.add_row([
                w.name.clone(),
                w.checks.to_string(),
                format!("{:.2}%", w.availability),
                format!("{:.1} ms", w.p50_ms),
                format!("{:.1} ms", w.p95_ms),
                format!("{:.1} ms", w.p99_ms),
                format!("{:.1} ms", w.max_ms),
                w.last_failure.clone().unwrap_or_default(),
            ]);
        }
        let _ = writeln!(out, "{table}");
        return out;
    }
    let mut table = crate::output::table();
    table.set_header([
        "probe",
        "result",
        "status",
        "total ms",
        "resolve ms",
        "connect ms",
        "tls ms",
        "processing ms",
        "transfer ms",
        "detail",
    ]);
    let ms = |s: f64| format!("{:.1}", s * 1000.0);
    // A TCP probe has no TLS, processing or transfer phase: a dash, not a zero.
    let http_ms = |r: &ProbeResult, s: f64| if r.kind == "tcp" { "-".to_string() } else { ms(s) };
    for r in &report.results {
        let mut detail = r.failure.clone().unwrap_or_default();
        if let Some(expiry) = r.cert_expiry_unix {
            let days = (expiry - recordstore::clock::now_ms() / 1000) as f64 / 86_400.0;
            let _ = write!(
                detail,
                "{}certificate expires in {days:.1} days",
                if detail.is_empty() { "" } else { "; " }
            );
        }
        if r.redirects > 0 {
            let _ = write!(
                detail,
                "{}{} redirect(s)",
                if detail.is_empty() { "" } else { "; " },
                r.redirects
            );
        }
        table.add_row([
            r.name.clone(),
            if r.success { "ok".into() } else { "FAIL".into() },
            if r.kind == "tcp" {
                "-".into()
            } else {
                r.status_code.to_string()
            },
            ms(r.duration_s),
            ms(r.phases.resolve),
            ms(r.phases.connect),
            http_ms(r, r.phases.tls),
            http_ms(r, r.phases.processing),
            http_ms(r, r.phases.transfer),
            detail,
        ]);
    }
    let _ = writeln!(out, "{table}");
    out
}

/// Prometheus text with blackbox_exporter's names, one `target` label per probe.
pub fn exposition(results: &[ProbeResult]) -> String {
    let mut out = String::new();
    let label = |r: &ProbeResult| format!("probe=\"{}\",target=\"{}\"", escape(&r.name), escape(&r.target));
    let mut family = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    family(
        "probe_success",
        "Displays whether or not the probe was a success",
        results
            .iter()
            .map(|r| (label(r), f64::from(u8::from(r.success))))
            .collect(),
    );
    family(
        "probe_duration_seconds",
        "Returns how long the probe took to complete in seconds",
        results.iter().map(|r| (label(r), r.duration_s)).collect(),
    );
    family(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds",
        results.iter().map(|r| (label(r), r.phases.resolve)).collect(),
    );
    let http: Vec<&ProbeResult> = results.iter().filter(|r| r.kind == "http").collect();
    family(
        "probe_http_duration_seconds",
        "Duration of http request by phase, summed over all redirects",
        http.iter()
            .flat_map(|r| {
                let p = r.phases;
                [
                    ("resolve", p.resolve),
                    ("connect", p.connect),
                    ("tls", p.tls),
                    ("processing", p.processing),
                    ("transfer", p.transfer),
                ]
                .map(|(phase, v)| (format!("{},phase=\"{phase}\"", label(r)), v))
            })
            .collect(),
    );
    family(
        "probe_http_status_code",
        "Response HTTP status code",
        http.iter().map(|r| (label(r), f64::from(r.status_code))).collect(),
    );
    family(
        "probe_http_content_length",
        "Length of http content response",
        http.iter()
            .map(|r| (label(r), r.content_length.map(|l| l as f64).unwrap_or(-1.0)))
            .collect(),
    );
    family(
        "probe_http_uncompressed_body_length",
        "Length of uncompressed response body",
        http.iter().map(|r| (label(r), r.body_length as f64)).collect(),
    );
    family(
        "probe_http_redirects",
        "The number of redirects",
        http.iter().map(|r| (label(r), f64::from(r.redirects))).collect(),
    );
    family(
        "probe_http_ssl",
        "Indicates if SSL was used for the final redirect",
        http.iter().map(|r| (label(r), f64::from(u8::from(r.tls)))).collect(),
    );
    family(
        "probe_http_version",
        "Returns the version of HTTP of the probe response",
        http.iter().filter_map(|r| Some((label(r), r.http_version?))).collect(),
    );
    family(
        "probe_failed_due_to_regex",
        "Indicates if probe failed due to regex",
        results
            .iter()
            .map(|r| (label(r), f64::from(u8::from(r.failed_due_to_regex))))
            .collect(),
    );
    family(
        "probe_ssl_earliest_cert_expiry",
        "Returns last SSL chain expiry in unixtime",
        results
            .iter()
            .filter_map(|r| Some((label(r), r.cert_expiry_unix? as f64)))
            .collect(),
    );
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ProbeArgs {
        let words: Vec<&str> = std::iter::once("probe").chain(extra.iter().copied()).collect();
        match crate::cli::parse_for_test(&words) {
            crate::cli::Command::Probe(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_url_is_one_probe_run_once() {
        let plan = ProbePlan::from_args(&args(&["http://127.0.0.1:9/health"])).unwrap();
        assert_eq!(plan.specs.len(), 1);
        assert_eq!(plan.schedule, Schedule::Once);
        let plan = ProbePlan::from_args(&args(&["tcp://127.0.0.1:5432", "--every", "2s", "--for", "1m"])).unwrap();
        assert!(matches!(plan.specs[0], ProbeSpec::Tcp(_)));
        assert_eq!(
            plan.schedule,
            Schedule::Continuous {
                every: Duration::from_secs(2),
                window: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn a_schedule_needs_both_every_and_for_and_a_nonzero_interval() {
        for extra in [
            &["--every", "2s"][..],
            &["--for", "1m"],
            &["--every", "0s", "--for", "1m"],
        ] {
            let mut words = vec!["http://127.0.0.1:9/"];
            words.extend_from_slice(extra);
            let e = ProbePlan::from_args(&args(&words)).unwrap_err().to_string();
            assert!(e.contains("needs both --every and --for"), "{extra:?}: {e}");
        }
        let e = ProbePlan::from_args(&args(&["http://127.0.0.1:9/", "--every", "soon", "--for", "1m"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--every: "), "{e}");
    }

    #[test]
    fn a_url_and_a_file_or_neither_are_refused() {
        let e = ProbePlan::from_args(&args(&["http://127.0.0.1:9/", "--file", "sample"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = ProbePlan::from_args(&args(&[])).unwrap_err().to_string();
        assert!(e.contains("give a URL to probe"), "{e}");
        let plan = ProbePlan::from_args(&args(&["--file", "sample", "--target", "http://127.0.0.1:9"])).unwrap();
        assert!(plan.specs.len() > 1);
    }
}
