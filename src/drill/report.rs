//! The drill's report: what it saw, as data (serde, with `schema_version`); `render` and
//! `html` show it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::file::AlertState;
use super::traffic::Ack;
use crate::traffic::open::ScheduleReport;
use crate::traffic::stats::Stats;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Seconds since the drill started.
    pub t_s: f64,
    pub at_ms: i64,
    pub kind: String,
    pub detail: String,
}

/// One second of observation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tick {
    pub t_s: f64,
    /// baseline, fault, recovery.
    pub phase: String,
    /// /health/ready's status; none when it did not answer within 1 s.
    pub probe_status: Option<u16>,
    pub probe_ms: f64,
    pub requests: u64,
    pub errors: u64,
    /// Active alerts as `name:state`.
    pub alerts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertOutcome {
    pub name: String,
    pub state: AlertState,
    pub within_s: f64,
    /// Seconds from the fault to Prometheus's activeAt (pending), to the first time the drill
    /// saw it firing, and to the first time Alertmanager had it.
    pub pending_after_s: Option<f64>,
    pub firing_after_s: Option<f64>,
    pub alertmanager_after_s: Option<f64>,
    pub met: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TrafficSummary {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    pub checkouts_acknowledged: usize,
    pub late_arrivals: u64,
    pub dropped_arrivals: u64,
    /// When the traffic started, in seconds into the drill.
    pub started_t_s: f64,
    /// Each second of traffic (ending `t_s` seconds into the drill).
    pub seconds: Vec<TrafficSecond>,
    /// The first request that failed, with links to its trace and its log lines.
    pub first_failed: Option<FailedRequest>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrafficSecond {
    pub t_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailedRequest {
    pub correlation_id: String,
    pub request: String,
    pub status: Option<u16>,
    pub error: String,
    /// When it was due, in seconds into the drill, and as a Unix time in milliseconds.
    pub t_s: f64,
    pub at_ms: i64,
    /// Its trace in Jaeger and its log lines in Grafana (the stack's URLs).
    pub trace_url: String,
    pub logs_url: String,
}

impl TrafficSummary {
    /// `started_t_s`: when the traffic started, in seconds into the drill that began at
    /// `drill_started_ms` (Unix ms); `links`: the Jaeger and Grafana base URLs.
    pub fn from_stats(
        stats: &Stats,
        schedule: &ScheduleReport,
        acks: &[Ack],
        started_t_s: f64,
        drill_started_ms: i64,
        links: (&str, &str),
    ) -> TrafficSummary {
        let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let seconds = stats
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| TrafficSecond {
                t_s: started_t_s + i as f64 + 1.0,
                requests: s.requests,
                errors: s.errors,
                p50_ms: ms(&s.latency, 0.50),
                p95_ms: ms(&s.latency, 0.95),
                p99_ms: ms(&s.latency, 0.99),
            })
            .collect();
        // A request the store saw: an arrival the generator never sent has no trace or lines.
        let first_failed = stats
            .failed
            .iter()
            .filter(|f| f.name != crate::traffic::open::UNSENT)
            .min_by_key(|f| f.at_ms)
            .map(|f| {
                let t_s = started_t_s + f.at_ms as f64 / 1000.0;
                let at_ms = drill_started_ms + (t_s * 1000.0) as i64;
                let logql = crate::backends::links::logql_for(&f.correlation_id);
                FailedRequest {
                    correlation_id: f.correlation_id.clone(),
                    request: f.name.clone(),
                    status: f.status,
                    error: f.error.clone().unwrap_or_default(),
                    t_s,
                    at_ms,
                    trace_url: crate::backends::links::jaeger_search(links.0, &f.correlation_id, at_ms, at_ms),
                    logs_url: crate::backends::links::grafana_logs(links.1, &logql, at_ms, at_ms),
                }
            });
        TrafficSummary {
            started_t_s,
            seconds,
            first_failed,
            requests: stats.requests,
            errors: stats.failures,
            error_rate: if stats.requests == 0 {
                0.0
            } else {
                stats.failures as f64 / stats.requests as f64
            },
            statuses: stats.statuses.clone(),
            error_kinds: stats.errors.iter().map(|(k, v)| (format!("{k:?}"), *v)).collect(),
            checkouts_acknowledged: acks.len(),
            late_arrivals: schedule.late,
            dropped_arrivals: schedule.dropped,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LedgerReport {
    pub acknowledged: usize,
    pub completed: usize,
    pub failed: usize,
    /// Acknowledged, but the store does not know the order.
    pub lost: Vec<i64>,
    /// Correlation ids of checkouts that produced more than one order.
    pub duplicated: Vec<String>,
    /// Known, but not in a final status by the deadline.
    pub unfinished: Vec<i64>,
    /// Checkouts the store answered with an error status.
    pub refused: usize,
    /// Of those, the ones its rate limit refused (429).
    #[serde(default)]
    pub rate_limited: usize,
    /// Correlation ids of refused checkouts that made an order all the same: the customer was
    /// told the checkout failed.
    pub refused_but_ordered: Vec<String>,
    /// Checkouts that got no answer (refused connection, reset, timeout): either outcome is
    /// allowed, the ledger says which happened.
    pub unanswered: usize,
    pub unanswered_ordered: usize,
    pub unanswered_not_ordered: usize,
    /// Correlation ids whose orders could not be looked up (the store did not answer).
    pub unverifiable: Vec<String>,
    /// Money and stock: the store's audit, or what the drill's orders show.
    pub audit: Option<super::audit::LedgerAudit>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Budget {
    pub remaining_before: Option<f64>,
    pub remaining_after: Option<f64>,
    /// Share of the 30-day checkout error budget the drill used.
    pub burned: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Restored {
    pub what: String,
    pub ok: bool,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrillReport {
    /// The JSON document's version: a field is only ever added within one.
    pub schema_version: u32,
    pub drill: String,
    pub file: String,
    pub project: String,
    pub target: String,
    /// passed, failed, preflight-failed, error, interrupted.
    pub verdict: String,
    pub passed: bool,
    pub preflight: Vec<Check>,
    pub after: Vec<Check>,
    pub timeline: Vec<Event>,
    /// From the fault to the first expected alert reaching its state.
    pub time_to_detect_s: Option<f64>,
    /// From the revert to the steady state holding again.
    pub time_to_recover_s: Option<f64>,
    /// From the fault to the steady state holding again.
    pub impact_s: Option<f64>,
    pub first_error_after_s: Option<f64>,
    pub alerts: Vec<AlertOutcome>,
    /// Alerts seen during the drill that it did not expect.
    pub unexpected_alerts: Vec<String>,
    pub traffic: Option<TrafficSummary>,
    pub error_budget: Option<Budget>,
    pub ledger: Option<LedgerReport>,
    pub restored: Vec<Restored>,
    pub failures: Vec<String>,
    pub seconds: Vec<Tick>,
    /// The readiness probe's latency before and during the fault: what the fault added to one
    /// request's path (for a network delay on the database, one round trip to it).
    pub probe_latency: Option<ProbeLatency>,
}

/// Medians of the per-second readiness probe's latency, from probes that were answered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeLatency {
    pub baseline_p50_ms: f64,
    pub baseline_samples: usize,
    pub fault_p50_ms: f64,
    pub fault_samples: usize,
    /// fault − baseline.
    pub extra_ms: f64,
}

impl ProbeLatency {
    /// `None` unless both the baseline and the fault have at least one answered probe.
    pub fn from_ticks(ticks: &[Tick]) -> Option<ProbeLatency> {
        let median = |phase: &str| {
            let mut ms: Vec<f64> = ticks
                .iter()
                .filter(|t| t.phase == phase && t.probe_status.is_some())
                .map(|t| t.probe_ms)
                .collect();
            if ms.is_empty() {
                return None;
            }
            ms.sort_by(f64::total_cmp);
            let mid = ms.len() / 2;
            let p50 = if ms.len().is_multiple_of(2) {
                (ms[mid - 1] + ms[mid]) / 2.0
            } else {
                ms[mid]
            };
            Some((p50, ms.len()))
        };
        let (baseline_p50_ms, baseline_samples) = median("baseline")?;
        let (fault_p50_ms, fault_samples) = median("fault")?;
        Some(ProbeLatency {
            baseline_p50_ms,
            baseline_samples,
            fault_p50_ms,
            fault_samples,
            extra_ms: fault_p50_ms - baseline_p50_ms,
        })
    }
}

impl DrillReport {
    pub fn preflight_failed(
        drill: &str,
        file: &str,
        project: &str,
        target: &str,
        preflight: Vec<Check>,
    ) -> DrillReport {
        let failures = preflight
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("steady state before the drill: {}: {}", c.name, c.detail))
            .collect();
        DrillReport {
            schema_version: 1,
            drill: drill.into(),
            file: file.into(),
            project: project.into(),
            target: target.into(),
            verdict: "preflight-failed".into(),
            passed: false,
            preflight,
            after: Vec::new(),
            timeline: Vec::new(),
            time_to_detect_s: None,
            time_to_recover_s: None,
            impact_s: None,
            first_error_after_s: None,
            alerts: Vec::new(),
            unexpected_alerts: Vec::new(),
            traffic: None,
            error_budget: None,
            ledger: None,
            restored: Vec::new(),
            failures,
            seconds: Vec::new(),
            probe_latency: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(phase: &str, status: Option<u16>, probe_ms: f64) -> Tick {
        Tick {
            t_s: 0.0,
            phase: phase.into(),
            probe_status: status,
            probe_ms,
            requests: 0,
            errors: 0,
            alerts: Vec::new(),
        }
    }

    #[test]
    fn probe_latency_compares_medians_of_answered_probes_only() {
        let ticks = [
            tick("baseline", Some(200), 4.0),
            tick("baseline", Some(200), 2.0),
            tick("baseline", None, 1000.0),
            tick("fault", Some(200), 305.0),
            tick("fault", Some(503), 301.0),
            tick("fault", None, 1000.0),
            tick("fault", Some(200), 900.0),
            tick("recovery", Some(200), 3.0),
        ];
        let p = ProbeLatency::from_ticks(&ticks).unwrap();
        assert_eq!((p.baseline_p50_ms, p.baseline_samples), (3.0, 2));
        assert_eq!((p.fault_p50_ms, p.fault_samples), (305.0, 3));
        assert_eq!(p.extra_ms, 302.0);
        assert_eq!(
            ProbeLatency::from_ticks(&ticks[..3]),
            None,
            "no fault samples: no number"
        );
    }
}
