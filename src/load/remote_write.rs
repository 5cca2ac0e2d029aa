//! `load-test --out prometheus-rw=URL`: the generator's own metrics, sent every second while
//! the run goes with Prometheus remote write (protocol 1.0: a snappy-compressed protobuf
//! `WriteRequest`), labelled with the run id, the model, the scenario and the shard. The last
//! push, after the run, carries the report's own totals, so that what Prometheus holds at the
//! end equals the report.
//!
//! Series (all with `run_id`, `model`, `scenario`, `shard`):
//! - `recordctl_requests_total`, `recordctl_errors_total{kind}` (counters);
//! - `recordctl_request_duration_seconds{quantile}`: the last whole second's p50, p90, p95,
//!   p99 and max (`quantile="1"`), from the intended send time;
//! - `recordctl_requests_in_flight`, `recordctl_arrivals_late_total`,
//!   `recordctl_arrivals_dropped_total` (open model);
//! - after the run: `recordctl_run_duration_seconds{quantile}` over the whole run and
//!   `recordctl_run_finished` = 1.
//!
//! The encoders are ours: the protobuf messages are four fields deep, and a snappy block of
//! literals is valid snappy, which every remote-write receiver decodes.

use std::sync::Arc;
use std::time::Duration;

use super::report::LoadReport;
use crate::traffic::stats::{ErrorKind, Live, Recorder};

/// Every metric name the generator sends.
pub const SERIES: &[&str] = &[
    "recordctl_requests_total",
    "recordctl_errors_total",
    "recordctl_request_duration_seconds",
    "recordctl_requests_in_flight",
    "recordctl_arrivals_late_total",
    "recordctl_arrivals_dropped_total",
    "recordctl_run_duration_seconds",
    "recordctl_run_finished",
];

/// One sample of one series: the metric name, its own labels (beyond the run's), the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Point {
    fn new(name: &'static str, value: f64) -> Point {
        Point {
            name,
            labels: Vec::new(),
            value,
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<String>) -> Point {
        self.labels.push((key, value.into()));
        self
    }
}

const QUANTILES: [(f64, &str); 5] = [(0.5, "0.5"), (0.9, "0.9"), (0.95, "0.95"), (0.99, "0.99"), (1.0, "1")];

/// What the generator knows now: counters so far, the last whole second's latency quantiles,
/// in-flight and late arrivals. `second`: the whole seconds elapsed since the start.
pub fn snapshot(recorder: &Recorder, plain_live: &Live, second: usize) -> Vec<Point> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut points = Vec::new();
    let stats = recorder.stats.lock().unwrap_or_else(|e| e.into_inner());
    let plain_requests = plain_live.requests.load(Relaxed);
    if stats.attempts() == 0 && plain_requests > 0 {
        // The plain model counts in its workers; only the live counters exist until the end.
        points.push(Point::new("recordctl_requests_total", plain_requests as f64));
        points.push(Point::new("recordctl_errors_total", plain_live.errors.load(Relaxed) as f64).with("kind", "any"));
        return points;
    }
    points.push(Point::new("recordctl_requests_total", stats.requests as f64));
    // Every kind from zero, so that a run without errors shows 0 errors, not no data.
    for kind in ErrorKind::ALL {
        let n = stats.errors.get(&kind).copied().unwrap_or(0);
        points.push(Point::new("recordctl_errors_total", n as f64).with("kind", kind.label()));
    }
    if let Some(last) = second.checked_sub(1).and_then(|s| stats.timeline.get(s))
        && !last.latency.is_empty()
    {
        for (q, label) in QUANTILES {
            let us = last.latency.value_at_quantile(q) as f64;
            points.push(Point::new("recordctl_request_duration_seconds", us / 1e6).with("quantile", label));
        }
    }
    drop(stats);
    points.push(Point::new(
        "recordctl_requests_in_flight",
        recorder.live.in_flight.load(Relaxed).max(0) as f64,
    ));
    points.push(Point::new(
        "recordctl_arrivals_late_total",
        recorder.live.late.load(Relaxed) as f64,
    ));
    points
}

/// The report's own numbers: what Prometheus holds once the run is over.
pub fn final_points(r: &LoadReport) -> Vec<Point> {
    let mut points = vec![Point::new("recordctl_requests_total", r.requests as f64)];
    for kind in ErrorKind::ALL {
        let label = kind.label();
        let n = r.error_kinds.get(&label).copied().unwrap_or(0);
        points.push(Point::new("recordctl_errors_total", n as f64).with("kind", label));
    }
    if let Some(s) = &r.schedule {
        points.push(Point::new("recordctl_arrivals_late_total", s.late as f64));
        points.push(Point::new("recordctl_arrivals_dropped_total", s.dropped as f64));
    }
    points.push(Point::new("recordctl_requests_in_flight", 0.0));
    let l = &r.latency;
    for (us, label) in [
        (l.p50_us, "0.5"),
        (l.p90_us, "0.9"),
        (l.p95_us, "0.95"),
        (l.p99_us, "0.99"),
        (l.max_us, "1"),
    ] {
        points.push(Point::new("recordctl_run_duration_seconds", us as f64 / 1e6).with("quantile", label));
    }
    points.push(Point::new("recordctl_run_finished", 1.0));
    points
}

/// Sends points to one remote-write URL.
pub struct RemoteWriter {
    url: String,
    http: reqwest::Client,
    /// The run's labels, on every series.
    run_labels: Vec<(&'static str, String)>,
}

impl RemoteWriter {
    pub fn new(url: &str, run_id: &str, model: &str, scenario: &str, shard: &str) -> RemoteWriter {
        RemoteWriter {
            url: url.to_string(),
            http: crate::backends::client_with_timeout(Duration::from_secs(5)),
            run_labels: vec![
                ("run_id", run_id.to_string()),
                ("model", model.to_string()),
                ("scenario", scenario.to_string()),
                ("shard", shard.to_string()),
            ],
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One remote-write request with `points` at `timestamp_ms`.
    pub async fn send(&self, points: &[Point], timestamp_ms: i64) -> Result<(), RemoteWriteError> {
        let body = snappy_literals(&write_request(points, &self.run_labels, timestamp_ms));
        let response = self
            .http
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|e| RemoteWriteError::Unreachable {
                url: self.url.clone(),
                reason: crate::backends::error_chain(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(300).collect();
        Err(RemoteWriteError::Refused {
            url: self.url.clone(),
            status: status.as_u16(),
            body: text,
            hint: if status == reqwest::StatusCode::NOT_FOUND {
                " (is it a Prometheus started with --web.enable-remote-write-receiver? the path is /api/v1/write)"
            } else {
                ""
            },
        })
    }
}

/// A remote-write request that did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("remote write to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("remote write to {url} answered {status}: {body}{hint}")]
    Refused {
        url: String,
        status: u16,
        body: String,
        hint: &'static str,
    },
}

/// Pushes a snapshot every second until `stop` is cancelled; returns how many pushes failed
/// and the first failure.
pub async fn stream(
    writer: Arc<RemoteWriter>,
    recorder: Arc<Recorder>,
    plain_live: Arc<Live>,
    start: std::time::Instant,
    stop: tokio_util::sync::CancellationToken,
) -> (u64, Option<String>) {
    let (mut failed, mut first) = (0, None);
    let mut next = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until((start + next).into()) => {}
            _ = stop.cancelled() => return (failed, first),
        }
        let points = snapshot(&recorder, &plain_live, next.as_secs() as usize);
        if let Err(e) = writer.send(&points, recordstore::clock::now_ms()).await {
            failed += 1;
            if first.is_none() {
                eprintln!("recordctl: {e} (the run goes on; the report is unaffected)");
                first = Some(e.to_string());
            }
        }
        next += Duration::from_secs(1);
    }
}

/// `prometheus.WriteRequest` with one sample per series. Labels are sorted by name, as the
/// protocol requires (`__name__` sorts first).
pub fn write_request(points: &[Point], run_labels: &[(&str, String)], timestamp_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for p in points {
        let mut labels: Vec<(&str, &str)> = vec![("__name__", p.name)];
        labels.extend(run_labels.iter().map(|(k, v)| (*k, v.as_str())));
        labels.extend(p.labels.iter().map(|(k, v)| (*k, v.as_str())));
        labels.sort_by(|a, b| a.0.cmp(b.0));
        let mut series = Vec::new();
        for (name, value) in labels {
            let mut label = Vec::new();
            field_bytes(&mut label, 1, name.as_bytes());
            field_bytes(&mut label, 2, value.as_bytes());
            field_bytes(&mut series, 1, &label);
        }
        let mut sample = Vec::new();
        // value: double, field 1 (wire type 1, fixed 64-bit little-endian)
        sample.push(1 << 3 | 1);
        sample.extend_from_slice(&p.value.to_le_bytes());
        // timestamp: int64, field 2 (varint of the two's complement)
        sample.push(2 << 3);
        varint(&mut sample, timestamp_ms as u64);
        field_bytes(&mut series, 2, &sample);
        field_bytes(&mut out, 1, &series);
    }
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The snappy block format with every byte a literal: the uncompressed length as a varint,
/// then literal elements of at most 64 KiB (tag 61: a two-byte little-endian length − 1).
pub fn snappy_literals(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65536 * 3 + 8);
    varint(&mut out, data.len() as u64);
    for chunk in data.chunks(65536) {
        let n = chunk.len() - 1;
        if n < 60 {
            out.push((n as u8) << 2);
        } else if n < 256 {
            out.push(60 << 2);
            out.push(n as u8);
        } else {
            out.push(61 << 2);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a snappy block of literals (what `snappy_literals` writes), for the test.
    fn unsnappy(data: &[u8]) -> Vec<u8> {
        let mut i = 0;
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let b = data[i];
            i += 1;
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let mut out = Vec::new();
        while i < data.len() {
            let tag = data[i];
            i += 1;
            assert_eq!(tag & 3, 0, "literals only");
            let n = match tag >> 2 {
                60 => {
                    i += 1;
                    usize::from(data[i - 1])
                }
                61 => {
                    i += 2;
                    usize::from(u16::from_le_bytes([data[i - 2], data[i - 1]]))
                }
                n => usize::from(n),
            } + 1;
            out.extend_from_slice(&data[i..i + n]);
            i += n;
        }
        assert_eq!(out.len() as u64, len);
        out
    }

    #[test]
    fn snappy_literals_round_trip_at_every_tag_size() {
        for size in [1, 59, 60, 61, 255, 256, 257, 65535, 65536, 65537, 200_000] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            assert_eq!(unsnappy(&snappy_literals(&data)), data, "size {size}");
        }
    }

    #[test]
    fn a_write_request_is_the_protobuf_prometheus_expects() {
        let points = [Point::new("m", 1.5).with("kind", "timeout")];
        let bytes = write_request(&points, &[("run_id", "r1".into())], 1_700_000_000_000);
        // WriteRequest.timeseries (1) → TimeSeries.labels (1) sorted: __name__, kind, run_id
        let mut expected = Vec::new();
        let mut series = Vec::new();
        for (k, v) in [("__name__", "m"), ("kind", "timeout"), ("run_id", "r1")] {
            let mut label = Vec::new();
            field_bytes(&mut label, 1, k.as_bytes());
            field_bytes(&mut label, 2, v.as_bytes());
            field_bytes(&mut series, 1, &label);
        }
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1.5f64.to_le_bytes());
        sample.push(0x10);
        varint(&mut sample, 1_700_000_000_000);
        field_bytes(&mut series, 2, &sample);
        field_bytes(&mut expected, 1, &series);
        assert_eq!(bytes, expected);
        // The label bytes as protobuf spells them: field 1 length-delimited, "__name__".
        assert_eq!(&bytes[4..14], b"\x0a\x08__name__");
    }

    #[test]
    fn every_name_sent_is_listed_in_series() {
        let stats = Recorder::default();
        let live = Live::default();
        let mut names: Vec<&str> = snapshot(&stats, &live, 0).iter().map(|p| p.name).collect();
        let report: LoadReport = serde_json::from_value(serde_json::json!({
            "schema_version": 2, "run_id": "r", "model": "open", "target": "t", "scenario": null,
            "started_at": "", "duration_s": 1.0, "requests": 1, "errors": 0, "error_rate": 0.0,
            "throughput_rps": 1.0, "latency": {"count": 1, "min_us": 1, "mean_us": 1.0, "p50_us": 1, "p90_us": 1,
            "p95_us": 1, "p99_us": 1, "p999_us": 1, "max_us": 1},
            "service_time": {"count": 1, "min_us": 1, "mean_us": 1.0, "p50_us": 1, "p90_us": 1,
            "p95_us": 1, "p99_us": 1, "p999_us": 1, "max_us": 1},
            "per_request": [], "status_codes": {}, "error_kinds": {"timeout": 1},
            "schedule": {"target_rate_tps": 1.0, "intended": 1, "started": 1, "late": 0, "dropped": 0,
            "unsent_at_interrupt": 0, "max_in_flight": 1, "peak_queue": 0},
            "timeline": [], "thresholds": [], "slowest": [], "failed": [], "interrupted": false
        }))
        .unwrap_or_else(|e| panic!("a report for the test: {e}"));
        let last = final_points(&report);
        names.extend(last.iter().map(|p| p.name));
        let timeouts = last
            .iter()
            .find(|p| p.name == "recordctl_errors_total" && p.labels == [("kind", "timeout".to_string())]);
        assert_eq!(timeouts.map(|p| p.value), Some(1.0));
        let errors_by_kind = last.iter().filter(|p| p.name == "recordctl_errors_total").count();
        assert_eq!(errors_by_kind, ErrorKind::ALL.len(), "every kind, from zero");
        for name in names {
            assert!(SERIES.contains(&name), "{name} is sent but not in SERIES");
        }
    }

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
