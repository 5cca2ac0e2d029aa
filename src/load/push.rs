//! Pushes a run's summary to a Prometheus Pushgateway as text exposition, grouped by job
//! `recordctl_load_test` and the run id.

use std::fmt::Write;

use crate::backends::pushgateway::PushError;
use crate::load::report::LoadReport;

/// The summary as Prometheus text: requests, errors, throughput, latency quantiles,
/// threshold results.
pub fn exposition(r: &LoadReport) -> String {
    let mut out = String::new();
    let labels = format!(
        "model=\"{}\",scenario=\"{}\"",
        r.model,
        r.scenario.as_deref().unwrap_or("")
    );
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP recordctl_load_test_{name} {help}");
        let _ = writeln!(out, "# TYPE recordctl_load_test_{name} gauge");
        for (extra, value) in samples {
            let sep = if extra.is_empty() { "" } else { "," };
            let _ = writeln!(out, "recordctl_load_test_{name}{{{labels}{sep}{extra}}} {value}");
        }
    };
    gauge(
        "requests",
        "Requests made in the run.",
        vec![(String::new(), r.requests as f64)],
    );
    gauge(
        "errors",
        "Requests that failed.",
        vec![(String::new(), r.errors as f64)],
    );
    gauge(
        "throughput_rps",
        "Requests per second over the run.",
        vec![(String::new(), r.throughput_rps)],
    );
    gauge(
        "duration_seconds",
        "Length of the run.",
        vec![(String::new(), r.duration_s)],
    );
    let l = &r.latency;
    gauge(
        "latency_seconds",
        "Latency quantiles from the intended send time.",
        [
            (0.5, l.p50_us),
            (0.9, l.p90_us),
            (0.95, l.p95_us),
            (0.99, l.p99_us),
            (0.999, l.p999_us),
            (1.0, l.max_us),
        ]
        .into_iter()
        .map(|(q, us)| (format!("quantile=\"{q}\""), us as f64 / 1e6))
        .collect(),
    );
    gauge(
        "threshold_passed",
        "1 when the threshold held, 0 when it failed.",
        r.thresholds
            .iter()
            .map(|t| {
                (
                    format!(
                        "threshold=\"{}\"",
                        t.threshold.replace('\\', "\\\\").replace('"', "\\\"")
                    ),
                    f64::from(u8::from(t.passed)),
                )
            })
            .collect(),
    );
    out
}

/// Pushes the report's totals as the group `job/recordctl_load_test/run_id/RUN`.
pub async fn push(gateway: &str, r: &LoadReport) -> Result<(), PushError> {
    let group = format!("job/recordctl_load_test/run_id/{}", r.run_id);
    crate::backends::pushgateway::put(gateway, &group, exposition(r)).await
}
