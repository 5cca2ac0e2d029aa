//! Pushes a run's summary to a Prometheus Pushgateway as text exposition, grouped by job
//! `recordctl_load_test` and the run id.

use std::fmt::Write;

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

pub async fn push(gateway: &str, r: &LoadReport) -> Result<(), String> {
    put_exposition(
        gateway,
        &format!("job/recordctl_load_test/run_id/{}", r.run_id),
        exposition(r),
    )
    .await
}

/// PUTs text exposition to `{gateway}/metrics/{group}` (replacing that group's metrics).
pub async fn put_exposition(gateway: &str, group: &str, body: String) -> Result<(), String> {
    let url = format!("{}/metrics/{group}", gateway.trim_end_matches('/'));
    let response = crate::backends::http_client()
        .put(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!("cannot push to the Pushgateway at {url}: {e} (is it running? docker compose up -d pushgateway)")
        })?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("the Pushgateway at {url} answered {status}: {}", body.trim()));
    }
    Ok(())
}
