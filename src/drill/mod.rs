//! `recordctl drill`: break the system on purpose while traffic runs, measure detection and
//! recovery from Prometheus and Alertmanager, prove no acknowledged order was lost, and put
//! every change back — on success, failure, error, Ctrl-C, SIGTERM or panic; after a SIGKILL,
//! `recordctl drill --restore` does it from the journal.

pub mod audit;
pub mod file;
pub mod journal;
pub mod report;
pub mod traffic;
pub mod verdict;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backends::docker::{DockerClient, ServiceContainer};
use crate::backends::prometheus::PrometheusClient;
use crate::cli::DrillArgs;
use crate::exit;
use file::{Action, AlertState, Drill, Fault};
use journal::{Entry, EntryState, JournalFile, Undo, now_ms};
use report::{Check, DrillReport, Event, LedgerReport, Tick};

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
    let Some(spec) = args.drill.as_deref() else {
        eprintln!("recordctl drill: name a drill (recordctl drill --list), or use --restore");
        return exit::USAGE;
    };
    let (mut drill, file) = match file::load(spec) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("recordctl drill: {e}");
            return exit::USAGE;
        }
    };
    if let Some(cap) = args.max_fault.as_deref() {
        match crate::load::scenario::parse_duration(cap) {
            Ok(cap) => drill.safety.max_fault_duration.0 = drill.safety.max_fault_duration.0.min(cap),
            Err(e) => {
                eprintln!("recordctl drill: --max-fault {cap:?}: {e}");
                return exit::USAGE;
            }
        }
    }
    let urls = match crate::config::resolve(&args.stack) {
        Ok(urls) => urls,
        Err(e) => {
            eprintln!("recordctl drill: {e}");
            return exit::USAGE;
        }
    };
    let target = args.target.trim_end_matches('/').to_string();
    let needs_docker = drill.faults.iter().any(|f| f.action.uses_docker());
    let needs_prometheus = !drill.steady_state.queries.is_empty()
        || !drill.expected_alerts.is_empty()
        || drill.faults.iter().any(|f| f.until.is_some());

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
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    if let Err(e) = http.get(format!("{target}/health/live")).send().await {
        eprintln!(
            "recordctl drill: cannot reach the target {target}: {} (is the stack up? docker compose up -d; or --target URL)",
            crate::backends::error_chain(&e)
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
        alertmanager: Some(urls.alertmanager.trim_end_matches('/').to_string()),
        docker,
        containers,
        http,
        admin_token: args.admin_token.clone(),
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
    if let Err(e) = crate::output::emit(&text, report, args.json.as_deref()) {
        eprintln!("recordctl drill: {e}");
    }
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, report::junit(report))
    {
        eprintln!("recordctl drill: cannot write the JUnit report to {path}: {e}");
    }
    if report.passed { exit::OK } else { exit::CHECKS_FAILED }
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
    alertmanager: Option<String>,
    docker: Option<DockerClient>,
    containers: BTreeMap<String, ServiceContainer>,
    http: reqwest::Client,
    admin_token: Option<String>,
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

/// A Docker call may take the stop's grace period and a little more, never longer: a hung
/// engine cannot hold a fault past its cap unnoticed.
fn docker_timeout(stop_grace_seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(stop_grace_seconds).unwrap_or(0) + 15)
}

/// One check per expected alert: not pending or firing before the fault.
async fn expected_alerts_quiet(ctx: &Ctx) -> Vec<Check> {
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
async fn steady_state(ctx: &Ctx) -> Vec<Check> {
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
struct AlertWatch {
    seen: BTreeMap<String, verdict::Sighting>,
    current: BTreeMap<String, AlertState>,
}

async fn watch_alerts(ctx: &Ctx, watch: &mut AlertWatch, events: &mut Vec<Event>) {
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
        && let Ok(response) = ctx.http.get(format!("{am}/api/v2/alerts")).send().await
        && let Ok(list) = response.json::<serde_json::Value>().await
    {
        for alert in list.as_array().into_iter().flatten() {
            let Some(name) = alert["labels"]["alertname"].as_str() else {
                continue;
            };
            let seen = watch.seen.entry(name.to_string()).or_default();
            if seen.alertmanager.is_none() {
                seen.alertmanager = Some(now_ms());
                ctx.event(
                    events,
                    "alert at alertmanager",
                    format!("{name} ({})", alert["status"]["state"].as_str().unwrap_or("?")),
                );
            }
        }
    }
}

/// One second of observation: a readiness probe, the traffic's requests and errors, alerts.
async fn tick(
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
async fn next_second(ctx: &Ctx) {
    let elapsed = ctx.started.elapsed();
    let next = Duration::from_secs(elapsed.as_secs() + 1);
    tokio::select! {
        _ = tokio::time::sleep(next - elapsed) => {}
        _ = ctx.interrupt.cancelled() => {}
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
            report.traffic = Some(report::TrafficSummary::from_stats(&stats, &schedule, &ledger.acks()));
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
    report.seconds = ticks;
    if !report.failures.is_empty() && report.verdict == "passed" {
        report.verdict = "failed".into();
    }
    report
}

fn describe(fault: &Fault) -> String {
    match fault.action {
        Action::Kill => format!(
            "kill {} with {}",
            fault.service,
            fault.signal.as_deref().unwrap_or("SIGKILL")
        ),
        Action::Disconnect => format!(
            "disconnect {} from {}",
            fault.service,
            fault.network.as_deref().unwrap_or("every network")
        ),
        Action::PaymentFault => format!(
            "payment gateway: +{} ms, {:.0}% failures",
            fault.latency_ms.unwrap_or(0),
            fault.error_rate.unwrap_or(0.0) * 100.0
        ),
        action => format!("{} {}", action.name(), fault.service),
    }
}

/// Journals, then applies, one fault. Returns its journal entry id.
async fn inject(ctx: &Ctx, journal: &Mutex<JournalFile>, fault: &Fault) -> Result<usize, String> {
    let grace = ctx.drill.safety.stop_grace_seconds;
    if fault.action == Action::PaymentFault {
        let url = format!("{}/admin/faults", ctx.target);
        let id = journal.lock().unwrap().before(Entry {
            id: 0,
            at_ms: 0,
            action: fault.action.name().into(),
            service: fault.service.clone(),
            container_id: String::new(),
            container_name: String::new(),
            undo: Undo::ClearPaymentFault {
                url: url.clone(),
                token_env: ADMIN_TOKEN_ENV.into(),
            },
            state: EntryState::Applying,
            undo_error: None,
        })?;
        let mut request = ctx.http.post(&url).json(&serde_json::json!({
            "payment_latency_ms": fault.latency_ms.unwrap_or(0),
            "payment_failure_rate": fault.error_rate.unwrap_or(0.0),
        }));
        if let Some(token) = &ctx.admin_token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("POST {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "POST {url} answered {} (is {ADMIN_TOKEN_ENV} / --admin-token set to the store's admin token?)",
                response.status()
            ));
        }
        journal.lock().unwrap().mark(id, EntryState::Applied, None)?;
        return Ok(id);
    }
    let docker = ctx.docker.as_ref().ok_or("Docker is needed for this fault")?;
    let found = ctx
        .containers
        .get(&fault.service)
        .ok_or_else(|| format!("no container for service {}", fault.service))?;
    // Safety: the container must still be this project's and one the drill names.
    let c = docker
        .inspect(&ctx.project, &found.id)
        .await
        .map_err(|e| e.to_string())?;
    if !ctx.drill.services.contains(&c.service) {
        return Err(format!(
            "refused: {} is service {:?}, not one this drill names ({:?})",
            c.name, c.service, ctx.drill.services
        ));
    }
    let networks: Vec<(String, Vec<String>)> = c
        .networks
        .iter()
        .filter(|(name, _)| fault.network.as_ref().is_none_or(|n| n == *name))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    if fault.action == Action::Disconnect && networks.is_empty() {
        return Err(format!(
            "{} is not on network {:?} (it is on {:?})",
            c.name,
            fault.network,
            c.networks.keys().collect::<Vec<_>>()
        ));
    }
    let undo = match fault.action {
        Action::Stop | Action::Kill => Undo::Start,
        Action::Pause => Undo::Unpause,
        Action::Restart => Undo::EnsureRunning,
        Action::Disconnect => Undo::Reconnect {
            networks: networks.clone(),
        },
        Action::PaymentFault => unreachable!("handled above"),
    };
    let id = journal.lock().unwrap().before(Entry {
        id: 0,
        at_ms: 0,
        action: fault.action.name().into(),
        service: c.service.clone(),
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        undo,
        state: EntryState::Applying,
        undo_error: None,
    })?;
    let applied = match fault.action {
        Action::Stop => docker.stop(&c, grace).await,
        Action::Pause => docker.pause(&c).await,
        Action::Kill => docker.kill(&c, fault.signal.as_deref().unwrap_or("SIGKILL")).await,
        Action::Restart => docker.restart(&c, grace).await,
        Action::Disconnect => {
            let mut result = Ok(());
            for (network, _) in &networks {
                result = result.and(docker.disconnect(&c, network).await);
            }
            result
        }
        Action::PaymentFault => unreachable!("handled above"),
    };
    applied.map_err(|e| e.to_string())?;
    journal.lock().unwrap().mark(id, EntryState::Applied, None)?;
    Ok(id)
}

async fn undo_entry(ctx: &Ctx, journal: &Mutex<JournalFile>, id: usize) -> Result<(), String> {
    let entry = journal.lock().unwrap().journal.entries[id].clone();
    let result = undo(
        ctx.docker.as_ref(),
        &ctx.http,
        &ctx.project,
        &entry,
        ctx.admin_token.as_deref(),
    )
    .await;
    let state = if result.is_ok() {
        EntryState::Undone
    } else {
        entry.state
    };
    journal.lock().unwrap().mark(id, state, result.clone().err())?;
    result
}

/// Undoes one journal entry; safe to repeat (an undo that finds nothing to do succeeds).
async fn undo(
    docker: Option<&DockerClient>,
    http: &reqwest::Client,
    project: &str,
    entry: &Entry,
    admin_token: Option<&str>,
) -> Result<(), String> {
    if let Undo::ClearPaymentFault { url, token_env } = &entry.undo {
        let mut request = http.delete(url);
        // The token the drill was given, else the environment (`--restore` in a new shell).
        if let Some(token) = admin_token
            .map(str::to_string)
            .or_else(|| std::env::var(token_env).ok())
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("DELETE {url}: {e}"))?;
        return if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("DELETE {url} answered {}", response.status()))
        };
    }
    let docker = docker.ok_or("Docker is needed to undo this change")?;
    let c = match docker.inspect(project, &entry.container_id).await {
        Ok(c) => c,
        // Compose removed or recreated the container: undo on the service's container now.
        Err(gone) => docker.service(project, &entry.service).await.map_err(|_| {
            format!(
                "container {} is gone ({gone}) and service {:?} has no container in project {project:?}; \
                 nothing is left to undo on: `recordctl drill --restore --forget` drops this entry",
                entry.container_name, entry.service
            )
        })?,
    };
    match &entry.undo {
        Undo::Start | Undo::EnsureRunning => {
            if c.state == "paused" {
                docker.unpause(&c).await.map_err(|e| e.to_string())?;
            } else if c.state != "running" {
                docker.start(&c).await.map_err(|e| e.to_string())?;
            }
        }
        Undo::Unpause => {
            if c.state == "paused" {
                docker.unpause(&c).await.map_err(|e| e.to_string())?;
            }
        }
        Undo::Reconnect { networks } => {
            for (network, aliases) in networks {
                if !c.networks.contains_key(network) {
                    // Docker adds the container's short id as an alias itself.
                    let aliases: Vec<String> = aliases
                        .iter()
                        .filter(|a| !c.id.starts_with(a.as_str()))
                        .cloned()
                        .collect();
                    docker
                        .connect_network(&c, network, &aliases)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Undo::ClearPaymentFault { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Undoes every journal entry not yet undone, newest first.
async fn restore(
    docker: Option<&DockerClient>,
    http: &reqwest::Client,
    project: &str,
    journal: &Mutex<JournalFile>,
    admin_token: Option<&str>,
) -> Vec<report::Restored> {
    let pending = journal.lock().unwrap().pending();
    let mut out = Vec::new();
    for entry in pending.iter().rev() {
        let what = format!("{} {} ({})", entry.action, entry.service, entry.container_name);
        let result = undo(docker, http, project, entry, admin_token).await;
        let state = if result.is_ok() {
            EntryState::Undone
        } else {
            entry.state
        };
        let _ = journal.lock().unwrap().mark(entry.id, state, result.clone().err());
        if result.is_ok() {
            eprintln!("recordctl drill: restored: {what}");
        }
        out.push(report::Restored {
            what,
            ok: result.is_ok(),
            error: result.err().unwrap_or_default(),
        });
    }
    out
}

/// `recordctl drill --restore`: undo what a killed drill left changed.
/// `drill --restore --forget`: marks every change the journal still holds as dealt with,
/// after the user confirms (or with `--yes`), so later drills may run.
fn forget_command(path: &std::path::Path, yes: bool) -> u8 {
    let mut journal = match JournalFile::open(path) {
        Ok(Some(journal)) => journal,
        Ok(None) => {
            println!("nothing to forget: no journal at {}", path.display());
            return exit::OK;
        }
        Err(e) => {
            eprintln!("recordctl drill --restore --forget: {e}");
            return exit::CHECKS_FAILED;
        }
    };
    let pending = journal.pending();
    if pending.is_empty() {
        println!("nothing to forget: every change in {} was undone", path.display());
        return exit::OK;
    }
    for e in &pending {
        println!(
            "would forget: {} {} ({}){}",
            e.action,
            e.service,
            e.container_name,
            e.undo_error
                .as_deref()
                .map(|err| format!(": {err}"))
                .unwrap_or_default()
        );
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("recordctl drill --restore --forget: add --yes to drop these entries without undoing them");
            return exit::USAGE;
        }
        if !confirm(&format!("Drop these {} entries without undoing them?", pending.len())) {
            eprintln!("nothing forgotten");
            return exit::CHECKS_FAILED;
        }
    }
    for e in &pending {
        let note = Some("forgotten by drill --restore --forget, not undone".to_string());
        if let Err(err) = journal.mark(e.id, EntryState::Undone, note) {
            eprintln!("recordctl drill --restore --forget: {err}");
            return exit::CHECKS_FAILED;
        }
    }
    println!("forgot {} entries; later drills may run", pending.len());
    exit::OK
}

async fn restore_command(path: &std::path::Path, admin_token: Option<&str>) -> u8 {
    let journal = match JournalFile::open(path) {
        Ok(Some(journal)) => journal,
        Ok(None) => {
            println!("nothing to restore: no journal at {}", path.display());
            return exit::OK;
        }
        Err(e) => {
            eprintln!("recordctl drill --restore: {e}");
            return exit::CHECKS_FAILED;
        }
    };
    let pending = journal.pending();
    if pending.is_empty() {
        println!("nothing to restore: every change in {} was undone", path.display());
        return exit::OK;
    }
    let project = journal.journal.project.clone();
    let needs_docker = pending
        .iter()
        .any(|e| !matches!(e.undo, Undo::ClearPaymentFault { .. }));
    let docker = if needs_docker {
        match DockerClient::connect_bounded(docker_timeout(file::MAX_STOP_GRACE_SECONDS)).await {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("recordctl drill --restore: {e}");
                return exit::UNREACHABLE;
            }
        }
    } else {
        None
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let journal = Mutex::new(journal);
    let restored = restore(docker.as_ref(), &http, &project, &journal, admin_token).await;
    let mut failed = false;
    for r in &restored {
        if r.ok {
            println!("restored  {}", r.what);
        } else {
            failed = true;
            println!("FAILED    {}: {}", r.what, r.error);
        }
    }
    if failed { exit::CHECKS_FAILED } else { exit::OK }
}

/// Every acknowledged order must exist, reach a final status, and be the only order of its
/// checkout's correlation id; a checkout answered with an error must have made no order; what
/// became of the checkouts that got no answer is counted.
async fn verify_ledger(ctx: &Ctx, ledger: &traffic::Ledger, limit: Duration) -> LedgerReport {
    let acks = ledger.acks();
    let deadline = Instant::now() + limit;
    let mut report = LedgerReport {
        acknowledged: acks.len(),
        ..LedgerReport::default()
    };
    let mut waiting: Vec<&traffic::Ack> = acks.iter().collect();
    let mut public_violations = Vec::new();
    let mut missing: BTreeMap<i64, u32> = BTreeMap::new();
    loop {
        let mut still = Vec::new();
        for ack in waiting {
            let url = format!("{}/orders/{}", ctx.target, ack.order_id);
            match ctx.http.get(&url).send().await {
                Ok(r) if r.status() == 404 => {
                    *missing.entry(ack.order_id).or_default() += 1;
                    still.push(ack);
                }
                Ok(r) if r.status().is_success() => {
                    let order: serde_json::Value = r.json().await.unwrap_or_default();
                    match order["status"].as_str() {
                        Some("completed") => report.completed += 1,
                        Some("failed") => report.failed += 1,
                        _ => {
                            still.push(ack);
                            continue;
                        }
                    }
                    public_violations.extend(audit::check_public_order(&order));
                }
                _ => still.push(ack),
            }
        }
        waiting = still;
        if waiting.is_empty() || Instant::now() >= deadline || ctx.interrupt.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for ack in waiting {
        if missing.get(&ack.order_id).copied().unwrap_or(0) > 0 {
            report.lost.push(ack.order_id);
        } else {
            report.unfinished.push(ack.order_id);
        }
    }
    let ack_ids = acks.iter().map(|a| a.correlation_id.clone()).collect();
    for (id, orders) in orders_of_all(ctx, ack_ids).await {
        match orders {
            Some(n) if n > 1 => report.duplicated.push(id),
            Some(_) => {}
            None => report.unverifiable.push(id),
        }
    }
    let refused = ledger.refused();
    report.refused = refused.len();
    report.rate_limited = ledger.rate_limited();
    let refused_ids = refused.into_iter().map(|c| c.correlation_id).collect();
    for (id, orders) in orders_of_all(ctx, refused_ids).await {
        match orders {
            Some(0) => {}
            Some(_) => report.refused_but_ordered.push(id),
            None => report.unverifiable.push(id),
        }
    }
    let unanswered = ledger.unanswered();
    report.unanswered = unanswered.len();
    let unanswered_ids = unanswered.into_iter().map(|c| c.correlation_id).collect();
    for (id, orders) in orders_of_all(ctx, unanswered_ids).await {
        match orders {
            Some(0) => report.unanswered_not_ordered += 1,
            Some(_) => report.unanswered_ordered += 1,
            None => report.unverifiable.push(id),
        }
    }
    report.audit = Some(match &ctx.admin_token {
        Some(token) => match audit::admin_audit(&ctx.http, &ctx.target, token).await {
            Ok(store_audit) => audit::LedgerAudit::from_report(store_audit),
            Err(why) => audit::LedgerAudit::from_public(public_violations, why),
        },
        None => audit::LedgerAudit::from_public(
            public_violations,
            format!(
                "no admin token: give --admin-token or {ADMIN_TOKEN_ENV} for the store's full audit of money and stock"
            ),
        ),
    });
    report
}

/// [`orders_of`] for each correlation id, 16 lookups at a time; answers in the ids' order.
async fn orders_of_all(ctx: &Ctx, ids: Vec<String>) -> Vec<(String, Option<u64>)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut lookups = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (http, target, id, limit) = (ctx.http.clone(), ctx.target.clone(), id.clone(), limit.clone());
        lookups.spawn(async move {
            let _turn = limit.acquire_owned().await;
            (i, orders_of(&http, &target, &id).await)
        });
    }
    let mut answers = vec![None; ids.len()];
    while let Some(joined) = lookups.join_next().await {
        if let Ok((i, orders)) = joined {
            answers[i] = orders;
        }
    }
    ids.into_iter().zip(answers).collect()
}

/// How many orders the store holds for one checkout's correlation id; None when it does not
/// say.
async fn orders_of(http: &reqwest::Client, target: &str, correlation_id: &str) -> Option<u64> {
    let url = format!("{target}/orders");
    let answer = http
        .get(&url)
        .query(&[("correlation_id", correlation_id), ("limit", "10")])
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.json::<serde_json::Value>().await.ok()?["count"].as_u64()
}
