//! The drill's phases, in order: traffic and a baseline, each fault held and reverted, the
//! recovery of the steady state, the ledger held to the store's promises, the alerts judged.
//! Each phase records what it saw in [`Run`]; none decides an exit code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::faults::{inject, undo_entry};
use super::file::{self, Fault};
use super::journal::JournalFile;
use super::ledger::verify_ledger;
use super::observe::{AlertWatch, next_second, steady_state, tick};
use super::render::describe;
use super::report::{self, Check, DrillReport, Event, Tick};
use super::traffic::Traffic;
use super::{Ctx, verdict};

/// Seconds of traffic before the first fault: the baseline, and orders in flight when it hits.
const BASELINE_SECONDS: usize = 5;

/// The error budget the drill reads before and after.
const BUDGET_QUERY: &str = "slo:checkout_availability:error_budget_remaining";

/// What the phases have seen so far.
struct Run<'a> {
    ctx: &'a Ctx,
    report: DrillReport,
    events: Vec<Event>,
    ticks: Vec<Tick>,
    watch: AlertWatch,
    traffic: Option<Traffic>,
    traffic_started_t: f64,
    first_error: Option<f64>,
    fault_at: Option<f64>,
    reverted_at: Option<f64>,
    recovered_at: Option<f64>,
}

impl Run<'_> {
    /// One second of observation (probe, traffic delta, alerts), labelled with its phase.
    async fn tick(&mut self, phase: &str) {
        next_second(self.ctx).await;
        let tick = tick(
            self.ctx,
            &mut self.traffic,
            &mut self.watch,
            &mut self.events,
            &mut self.first_error,
            phase,
        )
        .await;
        self.ticks.push(tick);
    }

    fn event(&mut self, kind: &str, detail: impl Into<String>) {
        self.ctx.event(&mut self.events, kind, detail);
    }

    fn error(&mut self, failure: String) {
        self.report.verdict = "error".into();
        self.report.failures.push(failure);
    }
}

pub(super) async fn execute(ctx: Arc<Ctx>, journal: Arc<Mutex<JournalFile>>, preflight: Vec<Check>) -> DrillReport {
    let ctx = &*ctx;
    let mut report = DrillReport::preflight_failed(&ctx.drill.name, &ctx.file, &ctx.project, &ctx.target, preflight);
    report.verdict = "passed".into();
    let mut run = Run {
        ctx,
        report,
        events: Vec::new(),
        ticks: Vec::new(),
        watch: AlertWatch::default(),
        traffic: None,
        traffic_started_t: 0.0,
        first_error: None,
        fault_at: None,
        reverted_at: None,
        recovered_at: None,
    };
    let budget_before = error_budget(ctx).await;
    if start_traffic(&mut run) {
        for _ in 0..BASELINE_SECONDS {
            run.tick("baseline").await;
        }
        for fault in &ctx.drill.faults {
            if ctx.interrupt.is_cancelled() || !hold_fault(&mut run, &journal, fault).await {
                break;
            }
        }
        if run.reverted_at.is_some() && !ctx.interrupt.is_cancelled() {
            recover(&mut run).await;
        }
        stop_traffic(&mut run).await;
        judge(&mut run, budget_before).await;
    }
    let Run {
        mut report,
        events,
        ticks,
        ..
    } = run;
    report.timeline = events;
    report.probe_latency = report::ProbeLatency::from_ticks(&ticks);
    report.seconds = ticks;
    if !report.failures.is_empty() && report.verdict == "passed" {
        report.verdict = "failed".into();
    }
    report
}

async fn error_budget(ctx: &Ctx) -> Option<f64> {
    let prom = ctx.prom.as_ref()?;
    prom.instant(BUDGET_QUERY).await.ok()?.first().map(|s| s.value)
}

/// Starts the drill's traffic, if it has any; `false` when it could not start (the report
/// says why and nothing else runs).
fn start_traffic(run: &mut Run<'_>) -> bool {
    let (ctx, drill) = (run.ctx, &run.ctx.drill);
    let Some(spec) = &drill.traffic else { return true };
    let cap = drill.safety.max_fault_duration.0.min(file::HARD_MAX_FAULT);
    let max_run = cap * (drill.faults.len() as u32 + 1) + drill.recovery.deadline.0 + Duration::from_secs(120);
    let run_id = format!("drill-{:08x}", rand::random::<u32>());
    run.traffic_started_t = ctx.t();
    match Traffic::start(&ctx.target, spec, &run_id, max_run) {
        Ok(t) => {
            run.traffic = Some(t);
            let detail = format!("{} at {}/s, correlation ids {run_id}-N", spec.scenario, spec.rate);
            run.event("traffic started", detail);
            true
        }
        Err(e) => {
            run.error(format!("cannot start the traffic: {e}"));
            false
        }
    }
}

/// Injects one fault, holds it (for its duration, until its `until` alert state, or an
/// interrupt) and reverts it. `false` when it could not be injected: no later fault runs.
async fn hold_fault(run: &mut Run<'_>, journal: &Mutex<JournalFile>, fault: &Fault) -> bool {
    let ctx = run.ctx;
    let entry = match inject(ctx, journal, fault).await {
        Ok(entry) => entry,
        Err(e) => {
            run.error(e.to_string());
            run.event("fault failed", e.to_string());
            return false;
        }
    };
    run.fault_at.get_or_insert(ctx.t());
    run.event("fault injected", describe(fault));
    let cap = ctx.drill.safety.max_fault_duration.0.min(file::HARD_MAX_FAULT);
    let hold = fault.restart_after.map(|d| d.0).unwrap_or(fault.duration.0).min(cap);
    let hold_until = Instant::now() + hold;
    loop {
        run.tick("fault").await;
        if ctx.interrupt.is_cancelled() || Instant::now() >= hold_until {
            break;
        }
        if let Some(until) = &fault.until
            && run.watch.current.get(&until.alert).is_some_and(|s| *s >= until.state)
        {
            run.event("until condition met", format!("{} {:?}", until.alert, until.state));
            break;
        }
    }
    let undo = undo_entry(ctx, journal, entry).await;
    run.reverted_at = Some(ctx.t());
    match undo {
        Ok(()) => run.event("fault reverted", describe(fault)),
        Err(e) => {
            run.report.failures.push(e.to_string());
            run.event("revert failed", e.to_string());
        }
    }
    true
}

/// Waits for the steady state to hold again, up to the drill's recovery deadline.
async fn recover(run: &mut Run<'_>) {
    let ctx = run.ctx;
    let deadline = Instant::now() + ctx.drill.recovery.deadline.0;
    loop {
        run.tick("recovery").await;
        let after = steady_state(ctx).await;
        let holds = after.iter().all(|c| c.ok);
        let failing: Vec<String> = after.iter().filter(|c| !c.ok).map(|c| c.detail.clone()).collect();
        run.report.after = after;
        if holds {
            run.recovered_at = Some(ctx.t());
            run.event("recovered", "the steady state holds again");
            return;
        }
        if ctx.interrupt.is_cancelled() || Instant::now() >= deadline {
            run.report.failures.push(format!(
                "the steady state did not hold again within {:?} of the revert: {}",
                ctx.drill.recovery.deadline.0,
                failing.join("; ")
            ));
            return;
        }
    }
}

/// Stops the traffic, then holds the store to its promises about every checkout it answered.
async fn stop_traffic(run: &mut Run<'_>) {
    let ctx = run.ctx;
    let Some(traffic) = run.traffic.take() else { return };
    let totals = traffic.totals();
    let (schedule, recorder, ledger) = traffic.stop().await;
    run.event(
        "traffic stopped",
        format!("{} requests, {} errors", totals.requests, totals.errors),
    );
    run.report.traffic = Some(report::TrafficSummary::from_stats(
        &recorder.take(),
        &schedule,
        &ledger.acks(),
        run.traffic_started_t,
        ctx.started_ms,
        (&ctx.urls.jaeger, &ctx.urls.grafana),
    ));
    if ctx.interrupt.is_cancelled() {
        return;
    }
    let orders_deadline = ctx.drill.recovery.orders_deadline.0;
    let ledger_report = verify_ledger(ctx, &ledger, orders_deadline).await;
    run.event("ledger checked", ledger_report.summary());
    run.report.failures.extend(ledger_report.failures(orders_deadline));
    run.report.ledger = Some(ledger_report);
}

/// The expected alerts, measured from the (first) fault; the times to detect and recover;
/// the error budget burned.
async fn judge(run: &mut Run<'_>, budget_before: Option<f64>) {
    let ctx = run.ctx;
    let report = &mut run.report;
    let fault_ms = run.fault_at.map(|t| ctx.started_ms + (t * 1000.0) as i64);
    for expected in &ctx.drill.expected_alerts {
        let seen = run.watch.seen.get(&expected.name).copied().unwrap_or_default();
        let (outcome, failure) = verdict::judge_alert(expected, seen, fault_ms);
        report.failures.extend(failure);
        report.alerts.push(outcome);
    }
    report.time_to_detect_s = verdict::time_to_detect(&report.alerts);
    report.time_to_recover_s = Option::zip(run.recovered_at, run.reverted_at).map(|(r, v)| r - v);
    report.impact_s = Option::zip(run.recovered_at, run.fault_at).map(|(r, f)| r - f);
    report.first_error_after_s = Option::zip(run.first_error, run.fault_at).map(|(e, f)| e - f);
    report.unexpected_alerts = run
        .watch
        .seen
        .keys()
        .filter(|n| !ctx.drill.expected_alerts.iter().any(|e| &e.name == *n))
        .cloned()
        .collect();
    if ctx.prom.is_some() {
        let after = error_budget(ctx).await;
        report.error_budget = Some(report::Budget {
            remaining_before: budget_before,
            remaining_after: after,
            burned: Option::zip(budget_before, after).map(|(b, a)| b - a),
        });
    }
}
