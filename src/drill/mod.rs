//! `recordctl drill`: break the system on purpose while traffic runs, measure detection and
//! recovery from Prometheus and Alertmanager, prove no acknowledged order was lost, and put
//! every change back — on success, failure, error, Ctrl-C, SIGTERM or panic; after a SIGKILL,
//! `recordctl drill --restore` does it from the journal.

pub mod audit;
pub(crate) mod faults;
pub mod file;
pub mod html;
pub mod journal;
mod ledger;
pub mod netqueue;
pub mod network;
mod observe;
pub mod plan;
pub mod report;
pub mod traffic;
pub mod verdict;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backends::alertmanager::AlertmanagerClient;
use crate::backends::docker::{DockerClient, ServiceContainer};
use crate::backends::prometheus::PrometheusClient;
use crate::cli::DrillArgs;
use crate::exit;
use faults::{describe, docker_timeout, forget_command, inject, restore, restore_command, undo_entry};
use file::Drill;
use journal::{JournalFile, now_ms};
use ledger::verify_ledger;
use observe::{AlertWatch, expected_alerts_quiet, next_second, steady_state, tick};
use report::{Check, DrillReport, Event};

/// Seconds of traffic before the first fault: the baseline, and orders in flight when it hits.
const BASELINE_SECONDS: usize = 5;

/// Environment variable holding the store's admin token (payment faults).
pub const ADMIN_TOKEN_ENV: &str = "RECORDSTORE_ADMIN_TOKEN";

pub async fn run(args: DrillArgs, interrupt: CancellationToken) -> u8 {
    let journal_path = PathBuf::from(&args.journal);
    if args.restore && args.forget {
        return forget_command(&journal_path, args.yes);
    }
    if args.restore {
        return restore_command(&journal_path, args.admin_token.as_deref()).await;
    }
    if args.list {
        for (name, text) in file::BUILTIN {
            let description = file::parse(text, name).map(|d| d.description).unwrap_or_default();
            println!("{name:<18} {description}");
        }
        return exit::OK;
    }
    let plan = match plan::DrillPlan::from_args(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("recordctl drill: {e}");
            return exit::USAGE;
        }
    };
    let plan::DrillPlan {
        drill,
        file,
        target,
        urls,
        needs_docker,
        needs_prometheus,
    } = plan;

    // Preflight, read-only: Docker, the project and its containers, Prometheus.
    let docker = if needs_docker {
        match DockerClient::connect_bounded(docker_timeout(drill.safety.stop_grace_seconds)).await {
            Ok(docker) => Some(docker),
            Err(e) if args.dry_run => {
                eprintln!("recordctl drill: (dry run) {e}");
                None
            }
            Err(e) => {
                eprintln!("recordctl drill: {e}");
                return exit::UNREACHABLE;
            }
        }
    } else {
        None
    };
    let project = match (&docker, &args.project) {
        (_, Some(project)) => project.clone(),
        (Some(docker), None) => match discover_project(docker, &drill).await {
            Ok(project) => project,
            Err(e) if args.dry_run => {
                eprintln!("recordctl drill: (dry run) {e}");
                "(unresolved)".to_string()
            }
            Err(e) => {
                eprintln!("recordctl drill: {e}");
                return exit::CHECKS_FAILED;
            }
        },
        (None, None) => "recordstore".to_string(),
    };
    let mut containers = BTreeMap::new();
    if let Some(docker) = &docker {
        for fault in drill.faults.iter().filter(|f| f.action.uses_docker()) {
            match docker.service(&project, &fault.service).await {
                Ok(c) => {
                    containers.insert(fault.service.clone(), c);
                }
                Err(e) if args.dry_run => eprintln!("recordctl drill: (dry run) {e}"),
                Err(e) => {
                    eprintln!("recordctl drill: {e}");
                    return exit::CHECKS_FAILED;
                }
            }
        }
    }
    let plan = report::plan_text(&drill, &file, &project, &target, &containers, &urls.prometheus);
    if args.dry_run {
        print!("{plan}");
        println!("dry run: nothing was changed");
        return exit::OK;
    }
    let prom = if needs_prometheus {
        let client = match PrometheusClient::new(&urls.prometheus) {
            Ok(client) => client,
            Err(e) => {
                eprintln!("recordctl drill: {e}");
                return exit::USAGE;
            }
        };
        if let Err(e) = client.instant("vector(1)").await {
            eprintln!("recordctl drill: {e}");
            return exit::UNREACHABLE;
        }
        Some(client)
    } else {
        None
    };
    let http = crate::backends::client_with_timeout(Duration::from_secs(5));
    if let Err(e) = http.get(format!("{target}/health/live")).send().await {
        eprintln!(
            "recordctl drill: {}",
            crate::backends::target_unreachable(&target, &crate::backends::error_chain(&e))
        );
        return exit::UNREACHABLE;
    }
    eprint!("{plan}");
    if !args.yes && std::io::stdin().is_terminal() && !confirm("Break these containers now?") {
        eprintln!("recordctl drill: not confirmed; nothing was changed");
        return exit::CHECKS_FAILED;
    }
    let ctx = Arc::new(Ctx {
        drill,
        file,
        project,
        target,
        prom,
        alertmanager: Some(AlertmanagerClient::new(&urls.alertmanager)),
        urls: urls.clone(),
        docker,
        containers,
        http,
        admin_token: args.admin_token.clone(),
        network_helper_image: args.network_helper_image.clone(),
        interrupt: interrupt.clone(),
        started: Instant::now(),
        started_ms: now_ms(),
    });

    // The steady state must hold before anything is touched, and no alert the drill expects
    // may be active yet (it could not show that the fault was detected).
    let mut preflight = steady_state(&ctx).await;
    preflight.extend(expected_alerts_quiet(&ctx).await);
    if preflight.iter().any(|c| !c.ok) {
        let report = DrillReport::preflight_failed(&ctx.drill.name, &ctx.file, &ctx.project, &ctx.target, preflight);
        return finish(&report, &args);
    }
    let journal = match JournalFile::create(&journal_path, &ctx.drill.name, &ctx.project) {
        Ok(journal) => Arc::new(Mutex::new(journal)),
        Err(e) => {
            eprintln!("recordctl drill: {e}");
            return exit::CHECKS_FAILED;
        }
    };

    // The drill runs in its own task so that whatever happens to it — an error, a panic, an
    // interrupt — the restore below still runs.
    let task = tokio::spawn(execute(ctx.clone(), journal.clone(), preflight));
    let outcome = task.await;
    let restored = restore(
        ctx.docker.as_ref(),
        &ctx.http,
        &ctx.project,
        &journal,
        ctx.admin_token.as_deref(),
    )
    .await;
    let mut report = match outcome {
        Ok(report) => report,
        Err(join_error) => {
            let mut report =
                DrillReport::preflight_failed(&ctx.drill.name, &ctx.file, &ctx.project, &ctx.target, Vec::new());
            report.verdict = "error".into();
            report
                .failures
                .push(format!("the drill stopped with an internal error: {join_error}"));
            report
        }
    };
    for r in &restored {
        if !r.ok {
            report.failures.push(format!("could not undo {}: {}", r.what, r.error));
        }
    }
    report.restored = restored;
    if interrupt.is_cancelled() {
        report.verdict = "interrupted".into();
    }
    report.passed = report.failures.is_empty() && report.verdict == "passed";
    let code = finish(&report, &args);
    if interrupt.is_cancelled() {
        exit::INTERRUPTED
    } else {
        code
    }
}

fn finish(report: &DrillReport, args: &DrillArgs) -> u8 {
    let text = report::render_table(report);
    // The one rule for outputs: a report that cannot be written is exit 2, whatever the
    // verdict (printed all the same).
    let mut code = if report.passed { exit::OK } else { exit::CHECKS_FAILED };
    if let Err(e) = crate::output::emit(&text, report, args.json.as_deref()) {
        eprintln!("recordctl drill: {e}");
        code = exit::USAGE;
    }
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, report::junit(report))
    {
        eprintln!("recordctl drill: cannot write the JUnit report to {path}: {e}");
        code = exit::USAGE;
    }
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, html::render(report))
    {
        eprintln!("recordctl drill: cannot write the HTML report to {path}: {e}");
        code = exit::USAGE;
    }
    code
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

/// The compose project holding every service the drill names, when exactly one does.
async fn discover_project(docker: &DockerClient, drill: &Drill) -> Result<String, String> {
    let projects = docker.projects().await.map_err(|e| e.to_string())?;
    let wanted: Vec<&String> = drill
        .faults
        .iter()
        .filter(|f| f.action.uses_docker())
        .map(|f| &f.service)
        .collect();
    let matching: Vec<&String> = projects
        .iter()
        .filter(|(_, services)| wanted.iter().all(|w| services.contains(w)))
        .map(|(name, _)| name)
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no compose project here has the services {wanted:?} (projects: {}); start the stack (docker compose up -d) or pass --project",
            if projects.is_empty() {
                "none".to_string()
            } else {
                projects.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )),
        many => Err(format!(
            "several compose projects have the services {wanted:?}: {}; choose one with --project",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

struct Ctx {
    drill: Drill,
    file: String,
    project: String,
    target: String,
    prom: Option<PrometheusClient>,
    alertmanager: Option<AlertmanagerClient>,
    urls: crate::config::BackendUrls,
    docker: Option<DockerClient>,
    containers: BTreeMap<String, ServiceContainer>,
    http: reqwest::Client,
    admin_token: Option<String>,
    network_helper_image: String,
    interrupt: CancellationToken,
    started: Instant,
    started_ms: i64,
}

impl Ctx {
    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn event(&self, events: &mut Vec<Event>, kind: &str, detail: impl Into<String>) {
        let detail = detail.into();
        eprintln!(
            "[{:>6.1}s] {kind}{}",
            self.t(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
        events.push(Event {
            t_s: self.t(),
            at_ms: now_ms(),
            kind: kind.to_string(),
            detail,
        });
    }
}

async fn execute(ctx: Arc<Ctx>, journal: Arc<Mutex<JournalFile>>, preflight: Vec<Check>) -> DrillReport {
    let ctx = &*ctx;
    let drill = &ctx.drill;
    let mut report = DrillReport::preflight_failed(&drill.name, &ctx.file, &ctx.project, &ctx.target, preflight);
    report.verdict = "passed".into();
    let mut events = Vec::new();
    let mut ticks = Vec::new();
    let mut watch = AlertWatch::default();
    let mut first_error = None;
    let budget_query = "slo:checkout_availability:error_budget_remaining";
    let budget_before = match &ctx.prom {
        Some(prom) => prom
            .instant(budget_query)
            .await
            .ok()
            .and_then(|s| s.first().map(|s| s.value)),
        None => None,
    };

    // Traffic, and a few seconds of it before the fault, as the baseline.
    let cap = drill.safety.max_fault_duration.0.min(file::HARD_MAX_FAULT);
    let max_run = cap * (drill.faults.len() as u32 + 1) + drill.recovery.deadline.0 + Duration::from_secs(120);
    let run_id = format!("drill-{:08x}", rand::random::<u32>());
    let traffic_started_t = ctx.t();
    let mut traffic = match &drill.traffic {
        Some(spec) => match traffic::Traffic::start(&ctx.target, spec, &run_id, max_run) {
            Ok(t) => {
                ctx.event(
                    &mut events,
                    "traffic started",
                    format!("{} at {}/s, correlation ids {run_id}-N", spec.scenario, spec.rate),
                );
                Some(t)
            }
            Err(e) => {
                report.verdict = "error".into();
                report.failures.push(format!("cannot start the traffic: {e}"));
                return report;
            }
        },
        None => None,
    };
    for _ in 0..BASELINE_SECONDS {
        next_second(ctx).await;
        ticks.push(tick(ctx, &mut traffic, &mut watch, &mut events, &mut first_error, "baseline").await);
    }

    let mut fault_at = None;
    let mut reverted_at = None;
    for fault in &drill.faults {
        if ctx.interrupt.is_cancelled() {
            break;
        }
        let entry = match inject(ctx, &journal, fault).await {
            Ok(entry) => entry,
            Err(e) => {
                report.verdict = "error".into();
                report.failures.push(e.clone());
                ctx.event(&mut events, "fault failed", e);
                break;
            }
        };
        let injected = ctx.t();
        fault_at.get_or_insert(injected);
        ctx.event(&mut events, "fault injected", describe(fault));
        let hold = fault.restart_after.map(|d| d.0).unwrap_or(fault.duration.0).min(cap);
        let hold_until = Instant::now() + hold;
        loop {
            next_second(ctx).await;
            ticks.push(tick(ctx, &mut traffic, &mut watch, &mut events, &mut first_error, "fault").await);
            if ctx.interrupt.is_cancelled() || Instant::now() >= hold_until {
                break;
            }
            if let Some(until) = &fault.until
                && watch.current.get(&until.alert).is_some_and(|s| *s >= until.state)
            {
                ctx.event(
                    &mut events,
                    "until condition met",
                    format!("{} {:?}", until.alert, until.state),
                );
                break;
            }
        }
        let undo = undo_entry(ctx, &journal, entry).await;
        reverted_at = Some(ctx.t());
        match undo {
            Ok(()) => ctx.event(&mut events, "fault reverted", describe(fault)),
            Err(e) => {
                report.failures.push(e.clone());
                ctx.event(&mut events, "revert failed", e);
            }
        }
    }

    // Recovery: the steady state must hold again within the deadline.
    let mut recovered_at = None;
    let mut after = Vec::new();
    if reverted_at.is_some() && !ctx.interrupt.is_cancelled() {
        let deadline = Instant::now() + drill.recovery.deadline.0;
        loop {
            next_second(ctx).await;
            ticks.push(tick(ctx, &mut traffic, &mut watch, &mut events, &mut first_error, "recovery").await);
            after = steady_state(ctx).await;
            if after.iter().all(|c| c.ok) {
                recovered_at = Some(ctx.t());
                ctx.event(&mut events, "recovered", "the steady state holds again");
                break;
            }
            if ctx.interrupt.is_cancelled() || Instant::now() >= deadline {
                let failing: Vec<String> = after.iter().filter(|c| !c.ok).map(|c| c.detail.clone()).collect();
                report.failures.push(format!(
                    "the steady state did not hold again within {:?} of the revert: {}",
                    drill.recovery.deadline.0,
                    failing.join("; ")
                ));
                break;
            }
        }
    }

    // Stop the traffic, then hold the store to its promises.
    let (schedule, ledger) = match traffic.take() {
        Some(t) => {
            let totals = t.totals();
            let (schedule, recorder, ledger) = t.stop().await;
            ctx.event(
                &mut events,
                "traffic stopped",
                format!("{} requests, {} errors", totals.requests, totals.errors),
            );
            let stats = recorder.take();
            report.traffic = Some(report::TrafficSummary::from_stats(
                &stats,
                &schedule,
                &ledger.acks(),
                traffic_started_t,
                ctx.started_ms,
                (&ctx.urls.jaeger, &ctx.urls.grafana),
            ));
            (Some(schedule), Some(ledger))
        }
        None => (None, None),
    };
    let _ = schedule;
    if let Some(ledger) = ledger
        && !ctx.interrupt.is_cancelled()
    {
        let ledger_report = verify_ledger(ctx, &ledger, drill.recovery.orders_deadline.0).await;
        ctx.event(&mut events, "ledger checked", ledger_report.summary());
        if !ledger_report.lost.is_empty() {
            report
                .failures
                .push(format!("acknowledged orders lost: {:?}", ledger_report.lost));
        }
        if !ledger_report.duplicated.is_empty() {
            report.failures.push(format!(
                "checkouts that made more than one order: {:?}",
                ledger_report.duplicated
            ));
        }
        if !ledger_report.unfinished.is_empty() {
            report.failures.push(format!(
                "acknowledged orders not finished within {:?}: {:?}",
                drill.recovery.orders_deadline.0, ledger_report.unfinished
            ));
        }
        if !ledger_report.refused_but_ordered.is_empty() {
            report.failures.push(format!(
                "checkouts answered with an error that made an order all the same: {:?}",
                ledger_report.refused_but_ordered
            ));
        }
        if let Some(audit) = &ledger_report.audit {
            for (invariant, kinds) in audit::INVARIANTS {
                let broken = audit.broken(kinds);
                if !broken.is_empty() {
                    let orders: Vec<i64> = broken.iter().filter_map(|v| v.order_id).collect();
                    let products: Vec<i64> = broken.iter().filter_map(|v| v.product_id).collect();
                    report.failures.push(format!(
                        "broken promise: {invariant} ({} violations; orders {orders:?}, products {products:?}; first: {})",
                        broken.len(),
                        broken[0].detail
                    ));
                }
            }
        }
        report.ledger = Some(ledger_report);
    }

    // Expected alerts, measured from the (first) fault.
    let fault_ms = fault_at.map(|t| ctx.started_ms + (t * 1000.0) as i64);
    for expected in &drill.expected_alerts {
        let seen = watch.seen.get(&expected.name).copied().unwrap_or_default();
        let (outcome, failure) = verdict::judge_alert(expected, seen, fault_ms);
        report.failures.extend(failure);
        report.alerts.push(outcome);
    }
    report.time_to_detect_s = verdict::time_to_detect(&report.alerts);
    report.time_to_recover_s = Option::zip(recovered_at, reverted_at).map(|(r, v)| r - v);
    report.impact_s = Option::zip(recovered_at, fault_at).map(|(r, f)| r - f);
    report.first_error_after_s = Option::zip(first_error, fault_at).map(|(e, f)| e - f);
    report.unexpected_alerts = watch
        .seen
        .keys()
        .filter(|n| !drill.expected_alerts.iter().any(|e| &e.name == *n))
        .cloned()
        .collect();
    if let Some(prom) = &ctx.prom {
        let after_budget = prom
            .instant(budget_query)
            .await
            .ok()
            .and_then(|s| s.first().map(|s| s.value));
        report.error_budget = Some(report::Budget {
            remaining_before: budget_before,
            remaining_after: after_budget,
            burned: Option::zip(budget_before, after_budget).map(|(b, a)| b - a),
        });
    }
    report.after = after;
    report.timeline = events;
    report.probe_latency = report::ProbeLatency::from_ticks(&ticks);
    report.seconds = ticks;
    if !report.failures.is_empty() && report.verdict == "passed" {
        report.verdict = "failed".into();
    }
    report
}
