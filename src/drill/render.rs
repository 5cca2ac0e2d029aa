//! The drill's report in words: the plan shown before anything changes, the table printed
//! after, the JUnit XML for CI, and a fault described. Renderers only read the report.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::file::{AlertState, Drill, Fault};
use super::report::{Check, DrillReport, LedgerReport};
use crate::backends::docker::ServiceContainer;

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
            describe(fault),
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
            cases.extend(ledger_cases(l));
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

/// One JUnit case per promise the ledger checks: no order lost, none doubled, none made by a
/// refused checkout, and each of the audit's invariants.
fn ledger_cases(l: &LedgerReport) -> Vec<(String, Option<String>)> {
    let mut cases = Vec::new();
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
    cases
}

pub fn describe(fault: &Fault) -> String {
    match fault.action {
        super::file::Action::Kill => format!(
            "kill {} with {}",
            fault.service,
            fault.signal.as_deref().unwrap_or("SIGKILL")
        ),
        super::file::Action::Disconnect => format!(
            "disconnect {} from {}",
            fault.service,
            fault.network.as_deref().unwrap_or("every network")
        ),
        super::file::Action::PaymentFault => format!(
            "payment gateway: +{} ms, {:.0}% failures",
            fault.latency_ms.unwrap_or(0),
            fault.error_rate.unwrap_or(0.0) * 100.0
        ),
        action if action.is_network() => super::network::NetworkFault::of(fault)
            .map(|n| n.describe(&fault.service))
            .unwrap_or_default(),
        action => format!("{} {}", action.name(), fault.service),
    }
}
