//! The drill's report: plan text, timeline table, JSON (serde) and JUnit XML.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::file::{AlertState, Drill};
use super::traffic::Ack;
use crate::backends::docker::ServiceContainer;
use crate::load::open::ScheduleReport;
use crate::load::stats::Stats;

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
            .filter(|f| f.name != crate::load::open::UNSENT)
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

pub fn plan_text(
    drill: &Drill,
    file: &str,
    project: &str,
    target: &str,
    containers: &BTreeMap<String, ServiceContainer>,
    prometheus: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "drill {} ({file}): {}", drill.name, drill.description);
    let _ = writeln!(out, "  project {project}, target {target}, Prometheus {prometheus}");
    let _ = writeln!(out, "  may touch only: {}", drill.services.join(", "));
    for probe in &drill.steady_state.probes {
        let _ = writeln!(
            out,
            "  steady state: GET {}{} answers {} within {:?}",
            target, probe.path, probe.status, probe.max_latency.0
        );
    }
    for query in &drill.steady_state.queries {
        let _ = writeln!(
            out,
            "  steady state: {} ({}{}{})",
            query.name,
            query.promql,
            query.min.map(|m| format!(" >= {m}")).unwrap_or_default(),
            query.max.map(|m| format!(" <= {m}")).unwrap_or_default()
        );
    }
    if let Some(t) = &drill.traffic {
        let _ = writeln!(
            out,
            "  traffic: scenario {} at {}/s (open model), ledger of every checkout",
            t.scenario, t.rate
        );
    }
    for (i, fault) in drill.faults.iter().enumerate() {
        let container = containers
            .get(&fault.service)
            .map(|c| format!("{} [{}, {}]", c.name, &c.id[..c.id.len().min(12)], c.state))
            .unwrap_or_else(|| {
                if fault.action.uses_docker() {
                    "(container not resolved)".into()
                } else {
                    format!("{target}/admin/faults")
                }
            });
        let undo = match fault.action {
            super::file::Action::Stop | super::file::Action::Kill => "start it",
            super::file::Action::Pause => "unpause it",
            super::file::Action::Restart => "make sure it runs",
            super::file::Action::Disconnect => "reconnect it with its aliases",
            super::file::Action::PaymentFault => "DELETE /admin/faults",
            super::file::Action::NetworkDelay
            | super::file::Action::NetworkLoss
            | super::file::Action::NetworkBandwidth => "clear its tc/iptables changes (helper container)",
        };
        let _ = writeln!(
            out,
            "  fault {}: {} on {container} for {:?}{}; undo: {undo}",
            i + 1,
            super::faults::describe(fault),
            fault.duration.0.min(drill.safety.max_fault_duration.0),
            fault
                .until
                .as_ref()
                .map(|u| format!(" or until {} is {:?}", u.alert, u.state))
                .unwrap_or_default()
        );
    }
    for alert in &drill.expected_alerts {
        let _ = writeln!(
            out,
            "  expect: {} {:?} within {:?} of the fault",
            alert.name, alert.state, alert.within.0
        );
    }
    let _ = writeln!(
        out,
        "  recovery: steady state within {:?} of the revert; acknowledged orders final within {:?}; cap per fault {:?}",
        drill.recovery.deadline.0, drill.recovery.orders_deadline.0, drill.safety.max_fault_duration.0
    );
    out
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into())
}

impl LedgerReport {
    /// `N acknowledged: … completed, … failed, … lost, … duplicated, … unfinished; N refused
    /// (… made an order); N unanswered (… made an order, … did not)`.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} acknowledged: {} completed, {} failed, {} lost, {} duplicated, {} unfinished; \
             {} refused ({} rate-limited; {} made an order); {} unanswered ({} made an order, {} did not)",
            self.acknowledged,
            self.completed,
            self.failed,
            self.lost.len(),
            self.duplicated.len(),
            self.unfinished.len(),
            self.refused,
            self.rate_limited,
            self.refused_but_ordered.len(),
            self.unanswered,
            self.unanswered_ordered,
            self.unanswered_not_ordered,
        );
        if !self.unverifiable.is_empty() {
            out.push_str(&format!("; {} not verifiable", self.unverifiable.len()));
        }
        out
    }
}

pub fn render_table(r: &DrillReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ndrill {} on project {} — {}",
        r.drill,
        r.project,
        r.verdict.to_uppercase()
    );
    if !r.timeline.is_empty() {
        let mut table = crate::output::table();
        table.set_header(["t", "event", "detail"]);
        for e in &r.timeline {
            table.add_row([format!("{:.1}s", e.t_s), e.kind.clone(), e.detail.clone()]);
        }
        let _ = writeln!(out, "{table}");
    }
    let mut table = crate::output::table();
    table.set_header(["measure", "value"]);
    table.add_row([
        "time to detect (fault → expected alert)".to_string(),
        secs(r.time_to_detect_s),
    ]);
    table.add_row(["first error after the fault".to_string(), secs(r.first_error_after_s)]);
    table.add_row([
        "time to recover (revert → steady state)".to_string(),
        secs(r.time_to_recover_s),
    ]);
    table.add_row(["impact (fault → steady state)".to_string(), secs(r.impact_s)]);
    if let Some(p) = &r.probe_latency {
        table.add_row([
            "readiness probe p50 (baseline → fault)".to_string(),
            format!(
                "{:.1} ms → {:.1} ms ({:+.1} ms; {} and {} probes)",
                p.baseline_p50_ms, p.fault_p50_ms, p.extra_ms, p.baseline_samples, p.fault_samples
            ),
        ]);
    }
    if let Some(t) = &r.traffic {
        table.add_row([
            "traffic requests / errors".to_string(),
            format!("{} / {} ({:.2}%)", t.requests, t.errors, t.error_rate * 100.0),
        ]);
    }
    if let Some(b) = &r.error_budget
        && let Some(burned) = b.burned
    {
        table.add_row([
            "checkout error budget burned (30 d)".to_string(),
            format!("{:.2}%", burned * 100.0),
        ]);
    }
    if let Some(l) = &r.ledger {
        table.add_row(["ledger: orders".to_string(), l.summary()]);
        if let Some(a) = &l.audit {
            table.add_row(["ledger: money".to_string(), a.money_line()]);
            table.add_row(["ledger: stock".to_string(), a.stock_line()]);
            table.add_row(["ledger: broken promises".to_string(), a.violations_line()]);
            if let Some(note) = &a.note {
                table.add_row(["ledger: note".to_string(), note.clone()]);
            }
        }
    }
    for a in &r.alerts {
        table.add_row([
            format!("alert {} {:?} (within {:.0} s)", a.name, a.state, a.within_s),
            format!(
                "{} — pending {}, firing {}, Alertmanager {}",
                if a.met { "met" } else { "MISSED" },
                secs(a.pending_after_s),
                secs(a.firing_after_s),
                secs(a.alertmanager_after_s)
            ),
        ]);
    }
    if !r.unexpected_alerts.is_empty() {
        table.add_row(["other alerts seen".to_string(), r.unexpected_alerts.join(", ")]);
    }
    for restored in &r.restored {
        table.add_row([
            format!("restored {}", restored.what),
            if restored.ok {
                "ok".to_string()
            } else {
                restored.error.clone()
            },
        ]);
    }
    let _ = writeln!(out, "{table}");
    for f in &r.failures {
        let _ = writeln!(out, "FAILED: {f}");
    }
    out
}

/// One test case per promise: preflight, each expected alert, recovery, the ledger, the restore.
pub fn junit(r: &DrillReport) -> String {
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    let preflight_failures: Vec<&Check> = r.preflight.iter().filter(|c| !c.ok).collect();
    cases.push((
        "steady state before the drill".into(),
        (!preflight_failures.is_empty()).then(|| {
            preflight_failures
                .iter()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; ")
        }),
    ));
    if r.verdict != "preflight-failed" {
        for a in &r.alerts {
            cases.push((
                format!("alert {} {:?} within {:.0} s", a.name, a.state, a.within_s),
                (!a.met).then(|| match (a.state, a.pending_after_s, a.firing_after_s) {
                    (AlertState::Firing, _, Some(s)) | (AlertState::Pending, Some(s), _) => {
                        format!("expected within {:.0} s of the fault, got {s:.1} s", a.within_s)
                    }
                    _ => format!("expected within {:.0} s of the fault, it never did", a.within_s),
                }),
            ));
        }
        let after_failures: Vec<&Check> = r.after.iter().filter(|c| !c.ok).collect();
        cases.push((
            "steady state after the revert".into(),
            if r.time_to_recover_s.is_some() {
                None
            } else {
                Some(format!(
                    "expected the steady state to hold again, got: {}",
                    after_failures
                        .iter()
                        .map(|c| c.detail.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            },
        ));
        if let Some(l) = &r.ledger {
            cases.push((
                "no acknowledged order lost or unfinished".into(),
                (!l.lost.is_empty() || !l.unfinished.is_empty()).then(|| {
                    format!(
                        "expected all {} acknowledged orders to finish, got lost {:?}, unfinished {:?}",
                        l.acknowledged, l.lost, l.unfinished
                    )
                }),
            ));
            cases.push((
                "no checkout made two orders".into(),
                (!l.duplicated.is_empty()).then(|| format!("duplicated correlation ids: {:?}", l.duplicated)),
            ));
            cases.push((
                "no refused checkout made an order".into(),
                (!l.refused_but_ordered.is_empty()).then(|| {
                    format!(
                        "expected no order for the {} checkouts answered with an error, got orders for {:?}",
                        l.refused, l.refused_but_ordered
                    )
                }),
            ));
            if let Some(a) = &l.audit {
                for (invariant, kinds) in super::audit::INVARIANTS {
                    let broken = a.broken(kinds);
                    cases.push((
                        format!("{invariant} ({})", a.source),
                        (!broken.is_empty()).then(|| {
                            broken
                                .iter()
                                .map(|v| match (v.order_id, v.product_id) {
                                    (Some(o), _) => format!("order {o}: {}: {}", v.kind, v.detail),
                                    (_, Some(p)) => format!("product {p}: {}: {}", v.kind, v.detail),
                                    _ => format!("{}: {}", v.kind, v.detail),
                                })
                                .collect::<Vec<_>>()
                                .join("; ")
                        }),
                    ));
                }
            }
        }
        cases.push((
            "every change undone".into(),
            r.restored
                .iter()
                .find(|x| !x.ok)
                .map(|x| format!("could not undo {}: {}", x.what, x.error)),
        ));
    }
    let cases: Vec<crate::junit::Case> = cases
        .into_iter()
        .map(|(name, failure)| crate::junit::Case {
            name,
            seconds: None,
            failure,
        })
        .collect();
    crate::junit::render(
        "recordctl drill",
        &format!("drill {}", r.drill),
        &format!("drill.{}", r.drill),
        &cases,
    )
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
