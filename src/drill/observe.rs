//! Watching the system during a drill: the steady-state hypothesis (probes and PromQL), the
//! expected alerts quiet beforehand, the alerts in Prometheus and Alertmanager second by
//! second, and the traffic's errors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::journal::now_ms;
use super::report::{Check, Event, Tick};
use super::{Ctx, traffic, verdict};
use crate::drill::file::AlertState;

/// One check per expected alert: not pending or firing before the fault.
pub(super) async fn expected_alerts_quiet(ctx: &Ctx) -> Vec<Check> {
    let Some(prom) = &ctx.prom else { return Vec::new() };
    if ctx.drill.expected_alerts.is_empty() {
        return Vec::new();
    }
    let active = match prom.alerts().await {
        Ok(alerts) => alerts,
        Err(e) => {
            return vec![Check {
                name: "expected alerts inactive".into(),
                ok: false,
                detail: format!("cannot list alerts: {e}"),
            }];
        }
    };
    ctx.drill
        .expected_alerts
        .iter()
        .map(|expected| {
            let state = active
                .iter()
                .find(|a| a.labels.get("alertname") == Some(&expected.name))
                .map(|a| a.state.clone());
            Check {
                name: format!("alert {} inactive", expected.name),
                ok: state.is_none(),
                detail: match state {
                    Some(state) => format!(
                        "{} is already {state}: resolve it first, or the drill could not show its fault was detected",
                        expected.name
                    ),
                    None => format!("{} is inactive", expected.name),
                },
            }
        })
        .collect()
}

/// Checks the steady-state hypothesis: every probe and every query within tolerance.
pub(super) async fn steady_state(ctx: &Ctx) -> Vec<Check> {
    let mut checks = Vec::new();
    for probe in &ctx.drill.steady_state.probes {
        let url = format!("{}{}", ctx.target, probe.path);
        let sent = Instant::now();
        let result = ctx
            .http
            .get(&url)
            .timeout(probe.max_latency.0.max(Duration::from_millis(100)))
            .send()
            .await;
        let took = sent.elapsed();
        let (ok, detail) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let ok = status == probe.status && took <= probe.max_latency.0;
                (
                    ok,
                    format!(
                        "GET {url}: {status} in {:.0} ms (expected {} within {:?})",
                        took.as_secs_f64() * 1000.0,
                        probe.status,
                        probe.max_latency.0
                    ),
                )
            }
            Err(e) => (
                false,
                format!(
                    "GET {url}: {} (expected {})",
                    crate::backends::error_chain(&e),
                    probe.status
                ),
            ),
        };
        checks.push(Check {
            name: probe.name.clone(),
            ok,
            detail,
        });
    }
    for query in &ctx.drill.steady_state.queries {
        let Some(prom) = &ctx.prom else { break };
        let (ok, detail) = match prom.instant(&query.promql).await {
            Ok(samples) => match samples.first() {
                None if query.absent_ok => (true, format!("{}: no series (allowed)", query.promql)),
                None => (false, format!("{}: no series (expected a value)", query.promql)),
                Some(sample) => {
                    let v = sample.value;
                    let ok = query.min.is_none_or(|m| v >= m) && query.max.is_none_or(|m| v <= m);
                    (
                        ok,
                        format!(
                            "{} = {v} (expected {}{})",
                            query.promql,
                            query.min.map(|m| format!(">= {m}")).unwrap_or_default(),
                            query.max.map(|m| format!(" <= {m}")).unwrap_or_default()
                        ),
                    )
                }
            },
            Err(e) => (false, e.to_string()),
        };
        checks.push(Check {
            name: query.name.clone(),
            ok,
            detail,
        });
    }
    checks
}

/// What the drill has seen of the alerts so far.
#[derive(Default)]
pub(super) struct AlertWatch {
    pub(super) seen: BTreeMap<String, verdict::Sighting>,
    pub(super) current: BTreeMap<String, AlertState>,
}

pub(super) async fn watch_alerts(ctx: &Ctx, watch: &mut AlertWatch, events: &mut Vec<Event>) {
    let Some(prom) = &ctx.prom else { return };
    let Ok(alerts) = prom.alerts().await else { return };
    let mut current = BTreeMap::new();
    for alert in alerts {
        let Some(name) = alert.labels.get("alertname").cloned() else {
            continue;
        };
        let state = if alert.state == "firing" {
            AlertState::Firing
        } else {
            AlertState::Pending
        };
        let entry = current.entry(name.clone()).or_insert(state);
        *entry = (*entry).max(state);
        let active_ms = (alert.active_at_unix * 1000.0) as i64;
        let seen = watch.seen.entry(name.clone()).or_default();
        if seen.active.is_none() {
            seen.active = Some(active_ms);
            ctx.event(
                events,
                "alert pending",
                format!(
                    "{name} (active since {:.1}s)",
                    (active_ms - ctx.started_ms) as f64 / 1000.0
                ),
            );
        }
        if state == AlertState::Firing && seen.firing.is_none() {
            seen.firing = Some(now_ms());
            ctx.event(events, "alert firing", name.clone());
        }
    }
    for name in watch.current.keys() {
        if !current.contains_key(name) {
            ctx.event(events, "alert resolved", name.clone());
        }
    }
    watch.current = current;
    // Alertmanager: the notification side. Optional: a missing Alertmanager is noted once.
    if let Some(am) = &ctx.alertmanager
        && let Ok(alerts) = am.alerts().await
    {
        for alert in alerts {
            let seen = watch.seen.entry(alert.name.clone()).or_default();
            if seen.alertmanager.is_none() {
                seen.alertmanager = Some(now_ms());
                ctx.event(
                    events,
                    "alert at alertmanager",
                    format!("{} ({})", alert.name, alert.state),
                );
            }
        }
    }
}

/// One second of observation: a readiness probe, the traffic's requests and errors, alerts.
pub(super) async fn tick(
    ctx: &Ctx,
    traffic: &mut Option<traffic::Traffic>,
    watch: &mut AlertWatch,
    events: &mut Vec<Event>,
    first_error: &mut Option<f64>,
    phase: &str,
) -> Tick {
    let sent = Instant::now();
    let probe = ctx
        .http
        .get(format!("{}/health/ready", ctx.target))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    let probe_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let probe_status = probe.as_ref().ok().map(|r| r.status().as_u16());
    let delta = traffic.as_mut().map(|t| t.delta()).unwrap_or_default();
    watch_alerts(ctx, watch, events).await;
    let failing = delta.errors > 0 || probe_status != Some(200);
    if failing && first_error.is_none() && phase != "baseline" {
        *first_error = Some(ctx.t());
        ctx.event(
            events,
            "first error",
            format!(
                "{} failed requests, readiness {}",
                delta.errors,
                probe_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unreachable".into())
            ),
        );
    }
    Tick {
        t_s: ctx.t(),
        phase: phase.to_string(),
        probe_status,
        probe_ms,
        requests: delta.requests,
        errors: delta.errors,
        alerts: watch
            .current
            .iter()
            .map(|(n, s)| format!("{n}:{}", if *s == AlertState::Firing { "firing" } else { "pending" }))
            .collect(),
    }
}

/// Sleeps until the next whole second since the drill began, or the interrupt.
pub(super) async fn next_second(ctx: &Ctx) {
    let elapsed = ctx.started.elapsed();
    let next = Duration::from_secs(elapsed.as_secs() + 1);
    tokio::select! {
        _ = tokio::time::sleep(next - elapsed) => {}
        _ = ctx.interrupt.cancelled() => {}
    }
}
