//! `recordctl journey`: one scripted purchase (or N of them), and with `--trace` the same
//! purchase as one correlated timeline of spans, log lines and metrics, with a verdict per
//! pillar.

pub mod html;
pub mod steps;
pub mod telemetry;

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cli::JourneyArgs;
use crate::embedded::EmbeddedTarget;
use crate::exit;
use crate::units::parse_duration;
use steps::{Journey, JourneyResult};
use telemetry::JourneyTelemetry;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepSummary {
    pub name: String,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyReport {
    pub schema_version: u32,
    pub target: String,
    pub journeys: Vec<JourneyResult>,
    pub success_rate: f64,
    pub steps: Vec<StepSummary>,
    pub end_to_end_p95_ms: f64,
    /// With --trace: the first journey's spans, log lines and metrics, and the verdicts.
    pub telemetry: Option<JourneyTelemetry>,
    pub verdict: String,
    pub interrupted: bool,
}

impl JourneyReport {
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            exit::INTERRUPTED
        } else if self.telemetry.as_ref().is_some_and(|t| !t.unreachable.is_empty()) {
            exit::UNREACHABLE
        } else if self.success_rate < 1.0 || self.telemetry.as_ref().is_some_and(|t| !t.complete()) {
            exit::CHECKS_FAILED
        } else {
            exit::OK
        }
    }
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * q).round() as usize]
}

/// The journey run's plan, from its flags alone: the wait, how many journeys and how many at
/// once, and the correlation id (prefix) they carry. No network, no store started.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyPlan {
    pub wait: Duration,
    pub count: usize,
    pub concurrency: usize,
    /// The correlation id of a single journey, the prefix of several (`-1`, `-2`, …).
    pub correlation_id: String,
}

impl JourneyPlan {
    /// `Err` is the message for a usage error (exit 2).
    pub fn from_args(args: &JourneyArgs) -> Result<JourneyPlan, String> {
        let wait = parse_duration(&args.wait).map_err(|e| format!("--wait: {e}"))?;
        if args.count == 0 || args.concurrency == 0 {
            return Err("--count and --concurrency must be at least 1".into());
        }
        let correlation_id = match &args.correlation_id {
            Some(id) if recordstore::telemetry::CorrelationId::parse(id).is_none() => {
                return Err(format!("--correlation-id {id:?}: use 1 to 128 of A-Z a-z 0-9 . _ : -"));
            }
            Some(id) => id.clone(),
            None => format!("journey-{:08x}", rand::random::<u32>()),
        };
        Ok(JourneyPlan {
            wait,
            count: args.count,
            concurrency: args.concurrency,
            correlation_id,
        })
    }
}

pub async fn run(args: JourneyArgs, interrupt: CancellationToken) -> u8 {
    let plan = match JourneyPlan::from_args(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("recordctl: {e}");
            return exit::USAGE;
        }
    };
    let wait = plan.wait;
    let source = match TraceSource::open(args.target.as_deref(), args.trace, &args.stack).await {
        Ok(source) => source,
        Err((code, message)) => {
            eprintln!("recordctl: {message}");
            return code;
        }
    };
    let base = source.base.clone();
    let client = crate::backends::client_with_timeout(Duration::from_secs(10));
    if let Err(e) = client.get(format!("{base}/health/live")).send().await {
        source.stop().await;
        eprintln!(
            "recordctl journey: {}",
            crate::backends::target_unreachable(&base, &crate::backends::error_chain(&e))
        );
        return exit::UNREACHABLE;
    }
    let prefix = plan.correlation_id.clone();
    let journeys = run_journeys(&client, &base, &prefix, plan.count, plan.concurrency, wait, &interrupt).await;
    let telemetry = match (args.trace, journeys.first()) {
        (true, Some(first)) => source.collect(first, wait).await,
        _ => None,
    };
    let report = build_report(
        if source.embedded.is_some() {
            "embedded recordstore"
        } else {
            &base
        },
        journeys,
        telemetry,
        interrupt.is_cancelled(),
    );
    let text = render(&report);
    let mut written = crate::output::emit(&text, &report, args.json.as_deref());
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, html::render(&report))
    {
        written = written.and(Err(format!("cannot write the HTML report to {path}: {e}")));
    }
    source.stop().await;
    if let Err(e) = written {
        eprintln!("recordctl: {e}");
        return exit::USAGE;
    }
    report.exit_code()
}

/// Where a journey runs and where its telemetry is read: the embedded store (spans and log
/// lines in memory), or a deployed target with the stack's backends (when traced).
pub(crate) struct TraceSource {
    pub embedded: Option<EmbeddedTarget>,
    pub stack: Option<telemetry::Stack>,
    pub base: String,
}

impl TraceSource {
    /// Starts the embedded store when there is no target; resolves the backends when a
    /// deployed target is traced. Errors carry their exit code.
    pub async fn open(
        target: Option<&str>,
        trace: bool,
        stack: &crate::cli::StackArgs,
    ) -> Result<TraceSource, (u8, String)> {
        let stack = match (target, trace) {
            (Some(_), true) => Some(telemetry::Stack::from_args(stack).map_err(|e| (exit::USAGE, e))?),
            _ => None,
        };
        let embedded = match target {
            Some(_) => None,
            None => Some(
                EmbeddedTarget::start_with(true)
                    .await
                    .map_err(|e| (exit::UNREACHABLE, format!("cannot start the embedded recordstore: {e}")))?,
            ),
        };
        let base = match (target, &embedded) {
            (Some(t), _) => t.trim_end_matches('/').to_string(),
            (None, app) => app.as_ref().expect("started above").base_url(),
        };
        Ok(TraceSource { embedded, stack, base })
    }

    /// The journey's trace, log lines and metrics, waiting up to `wait`; `None` when there is
    /// nowhere to read them (a deployed target without backends).
    pub async fn collect(&self, journey: &steps::JourneyResult, wait: Duration) -> Option<telemetry::JourneyTelemetry> {
        match (&self.embedded, &self.stack) {
            (Some(app), _) => {
                eprintln!(
                    "recordctl: waiting up to {wait:?} for the telemetry of {}",
                    journey.correlation_id
                );
                Some(telemetry::collect(app.captured(), &self.base, journey, wait).await)
            }
            (None, Some(stack)) => {
                eprintln!(
                    "recordctl: waiting up to {wait:?} for {} in Jaeger, Loki and Prometheus",
                    journey.correlation_id
                );
                let start_ns = journey
                    .steps
                    .first()
                    .map(|s| s.started_unix_nanos)
                    .unwrap_or(0)
                    .saturating_sub(60_000_000_000);
                Some(telemetry::collect_from_stack(stack, journey, wait, start_ns).await)
            }
            (None, None) => None,
        }
    }

    pub async fn stop(self) {
        if let Some(app) = self.embedded {
            app.stop().await;
        }
    }
}

async fn run_journeys(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
    wait: Duration,
    interrupt: &CancellationToken,
) -> Vec<JourneyResult> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    let worker = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= count || interrupt.is_cancelled() {
                return;
            }
            let correlation_id = if count == 1 {
                prefix.to_string()
            } else {
                format!("{prefix}-{}", i + 1)
            };
            let result = Journey {
                client,
                base,
                correlation_id,
                wait,
            }
            .run()
            .await;
            results.lock().unwrap_or_else(|e| e.into_inner()).push((i, result));
        }
    };
    futures_join(concurrency.min(count), worker).await;
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Runs `n` copies of `make()` concurrently on this task.
async fn futures_join<F, Fut>(n: usize, make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut set = Vec::with_capacity(n);
    for _ in 0..n {
        set.push(Box::pin(make()));
    }
    let mut pending: Vec<_> = set.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for slot in pending.iter_mut() {
            if let Some(fut) = slot {
                if fut.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    all_done = false;
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

fn build_report(
    target: &str,
    journeys: Vec<JourneyResult>,
    telemetry: Option<JourneyTelemetry>,
    interrupted: bool,
) -> JourneyReport {
    let ok = journeys.iter().filter(|j| j.succeeded()).count();
    let success_rate = if journeys.is_empty() {
        0.0
    } else {
        ok as f64 / journeys.len() as f64
    };
    let mut names: Vec<String> = Vec::new();
    for j in &journeys {
        for s in &j.steps {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    let steps = names
        .into_iter()
        .map(|name| {
            let mut times: Vec<f64> = journeys
                .iter()
                .flat_map(|j| j.steps.iter().filter(|s| s.name == name).map(|s| s.duration_ms))
                .collect();
            StepSummary {
                p50_ms: percentile(&mut times, 0.5),
                p95_ms: percentile(&mut times, 0.95),
                name,
            }
        })
        .collect();
    let mut e2e: Vec<f64> = journeys.iter().map(|j| j.end_to_end_ms).collect();
    let incomplete = telemetry.as_ref().filter(|t| !t.complete());
    let verdict = if interrupted {
        "INTERRUPTED".to_string()
    } else if ok < journeys.len() {
        format!(
            "FAILED: {} of {} journeys did not complete",
            journeys.len() - ok,
            journeys.len()
        )
    } else if let Some(t) = incomplete {
        t.incomplete_verdict()
    } else if telemetry.is_some() {
        "PASSED: the purchase completed and all three pillars are complete".to_string()
    } else {
        format!("PASSED: {ok} of {} journeys completed", journeys.len())
    };
    JourneyReport {
        schema_version: SCHEMA_VERSION,
        target: target.to_string(),
        end_to_end_p95_ms: percentile(&mut e2e, 0.95),
        journeys,
        success_rate,
        steps,
        telemetry,
        verdict,
        interrupted,
    }
}

/// The human report: each journey's steps, the correlated timeline, the verdicts.
pub fn render(r: &JourneyReport) -> String {
    let mut out = String::new();
    for j in r.journeys.iter().take(if r.journeys.len() > 1 { 0 } else { 1 }) {
        let _ = writeln!(
            out,
            "journey {} · trace {} · order {} · {} · {:.1} ms end to end{}",
            j.correlation_id,
            j.trace_id,
            j.order_id.map(|o| o.to_string()).unwrap_or("-".into()),
            j.outcome,
            j.end_to_end_ms,
            j.processing_ms
                .map(|p| format!(" ({p:.1} ms from checkout to the order's final status, by the store's clock)"))
                .unwrap_or_default()
        );
        for s in &j.steps {
            let _ = writeln!(
                out,
                "  {:<14} {:<6} {:<18} {:>4} {:>8.2} ms{}",
                s.name,
                s.method,
                s.path,
                s.status.map(|v| v.to_string()).unwrap_or("-".into()),
                s.duration_ms,
                s.note.as_deref().map(|n| format!("  {n}")).unwrap_or_default()
            );
        }
        if let Some(detail) = &j.detail {
            let _ = writeln!(out, "  {detail}");
        }
    }
    if r.journeys.len() > 1 {
        let _ = writeln!(
            out,
            "{} journeys · {:.1}% completed · end-to-end p95 {:.1} ms",
            r.journeys.len(),
            r.success_rate * 100.0,
            r.end_to_end_p95_ms
        );
        for s in &r.steps {
            let _ = writeln!(
                out,
                "  {:<14} p50 {:>8.2} ms  p95 {:>8.2} ms",
                s.name, s.p50_ms, s.p95_ms
            );
        }
        for j in r.journeys.iter().filter(|j| !j.succeeded()).take(5) {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                j.correlation_id,
                j.outcome,
                j.detail.as_deref().unwrap_or("")
            );
        }
    }
    if let (Some(t), Some(j)) = (&r.telemetry, r.journeys.first()) {
        out.push_str(&timeline(j, t));
        for p in &t.pillars {
            let _ = writeln!(
                out,
                "{} {:<8} {}",
                if p.complete { "✓" } else { "✗" },
                p.pillar,
                p.detail
            );
        }
        if let Some(e) = &t.exemplar {
            let _ = writeln!(out, "  exemplar: {} = {:.6}s → trace {}", e.series, e.value, e.trace_id);
        }
        for m in &t.metrics {
            let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "  {} {{{}}} {}", m.name, labels.join(","), m.value);
        }
    }
    let _ = writeln!(out, "{}", r.verdict);
    out
}

/// The journey's spans in start order, each span's depth (client steps 0, a span one below
/// its parent, a span whose parent is unknown 1) and each id's display name.
pub(crate) struct SpanTree<'a> {
    pub spans: Vec<&'a recordstore::telemetry::CapturedSpan>,
    pub depth_of: std::collections::HashMap<String, usize>,
    pub name_of: std::collections::HashMap<String, String>,
}

pub(crate) fn span_tree<'a>(j: &JourneyResult, t: &'a JourneyTelemetry) -> SpanTree<'a> {
    let mut depth_of: std::collections::HashMap<String, usize> =
        j.steps.iter().map(|s| (s.client_span_id.clone(), 0)).collect();
    let mut name_of: std::collections::HashMap<String, String> = j
        .steps
        .iter()
        .map(|s| (s.client_span_id.clone(), format!("client {}", s.name)))
        .collect();
    let mut spans: Vec<_> = t.spans.iter().collect();
    spans.sort_by_key(|s| s.start_unix_nanos);
    // Parents start before their children, so one pass in start order finds every depth.
    for s in &spans {
        let depth = s
            .parent_span_id
            .as_ref()
            .and_then(|p| depth_of.get(p))
            .map(|d| d + 1)
            .unwrap_or(1);
        depth_of.insert(s.span_id.clone(), depth);
        name_of.insert(s.span_id.clone(), s.name.clone());
    }
    SpanTree {
        spans,
        depth_of,
        name_of,
    }
}

/// Client steps, server spans (as a tree) and log lines, interleaved in time order.
pub(crate) fn timeline(j: &JourneyResult, t: &JourneyTelemetry) -> String {
    struct Entry {
        at: u128,
        depth: usize,
        /// The span this row is (spans only), and the span it hangs off.
        id: Option<String>,
        parent: Option<String>,
        text: String,
    }
    let SpanTree {
        spans,
        depth_of,
        name_of,
    } = span_tree(j, t);
    let mut entries: Vec<Entry> = j
        .steps
        .iter()
        .map(|s| Entry {
            at: s.started_unix_nanos,
            depth: 0,
            id: Some(s.client_span_id.clone()),
            parent: None,
            text: format!(
                "client {:<20} {} {:<16} {:.2} ms{}",
                s.name,
                s.method,
                s.status.map(|v| v.to_string()).unwrap_or("-".into()),
                s.duration_ms,
                s.note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default()
            ),
        })
        .collect();
    for s in &spans {
        let status = if s.status == "error" { " ERROR" } else { "" };
        entries.push(Entry {
            at: s.start_unix_nanos,
            depth: depth_of[&s.span_id],
            id: Some(s.span_id.clone()),
            parent: s.parent_span_id.clone(),
            text: format!(
                "{:<18} {:<24} {:.2} ms{status}",
                s.service,
                s.name,
                s.duration().as_secs_f64() * 1000.0
            ),
        });
    }
    for l in &t.logs {
        let at = l
            .get("timestamp")
            .and_then(|v| v.as_str())
            .and_then(parse_rfc3339_nanos)
            .unwrap_or(0);
        let span = l.get("span_id").and_then(|v| v.as_str()).map(str::to_string);
        let depth = span
            .as_ref()
            .and_then(|id| depth_of.get(id))
            .map(|d| d + 1)
            .unwrap_or(1);
        entries.push(Entry {
            at,
            depth,
            id: None,
            parent: span,
            text: format!(
                "log {:<5} {:<18} {}",
                l.get("level").and_then(|v| v.as_str()).unwrap_or(""),
                l.get("service").and_then(|v| v.as_str()).unwrap_or(""),
                l.get("message").and_then(|v| v.as_str()).unwrap_or("")
            ),
        });
    }
    entries.sort_by_key(|e| e.at);
    let first = entries.first().map(|e| e.at).unwrap_or(0);
    let mut out = String::from("\ntimeline (client steps, spans, log lines):\n");
    // A span whose parent was last shown before the latest client row (the worker's span
    // after the client's polls) would read as that row's child: name its parent, once.
    let mut since_client: std::collections::HashSet<String> = std::collections::HashSet::new();
    for e in entries {
        if e.depth == 0 {
            since_client.clear();
        }
        let parent_note = match (&e.parent, e.id.is_some()) {
            (Some(parent), true) if !since_client.contains(parent) => {
                since_client.insert(parent.clone());
                name_of
                    .get(parent)
                    .map(|name| format!("  ← child of {name}"))
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        if let Some(id) = &e.id {
            since_client.insert(id.clone());
        }
        let _ = writeln!(
            out,
            "{:>+9.1} ms {}{}{parent_note}",
            (e.at.saturating_sub(first)) as f64 / 1e6,
            "  ".repeat(e.depth),
            e.text
        );
    }
    out.push('\n');
    out
}

/// `2026-11-21T19:30:45.123456Z` → unix nanoseconds (the log lines' own format). Log lines
/// are untrusted: anything out of range or not ASCII digits is `None`, never a panic.
pub(crate) fn parse_rfc3339_nanos(ts: &str) -> Option<u128> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let number = |p: &str, max: i64| -> Option<i64> {
        let ok = !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| p.parse::<i64>().ok()).flatten().filter(|v| *v <= max)
    };
    let mut d = date.split('-');
    let (y, m, day) = (number(d.next()?, 9999)?, number(d.next()?, 12)?, number(d.next()?, 31)?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let (h, mi, s) = (number(t.next()?, 23)?, number(t.next()?, 59)?, number(t.next()?, 60)?);
    if m == 0 || day == 0 || d.next().is_some() || t.next().is_some() {
        return None;
    }
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u128::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()?;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(secs * 1_000_000_000 + digits.parse::<u128>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey_args(extra: &[&str]) -> JourneyArgs {
        let words: Vec<&str> = std::iter::once("journey").chain(extra.iter().copied()).collect();
        match crate::cli::parse_for_test(&words) {
            crate::cli::Command::Journey(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_plan_validates_the_flags_and_chooses_a_correlation_id() {
        let plan = JourneyPlan::from_args(&journey_args(&["--count", "3", "--wait", "5s"])).unwrap();
        assert_eq!(
            (plan.count, plan.concurrency, plan.wait),
            (3, 1, Duration::from_secs(5))
        );
        assert!(plan.correlation_id.starts_with("journey-"), "{plan:?}");
        let given = JourneyPlan::from_args(&journey_args(&["--correlation-id", "ci-run-7"])).unwrap();
        assert_eq!(given.correlation_id, "ci-run-7");
        for (flags, message) in [
            (&["--wait", "later"][..], "--wait:"),
            (&["--count", "0"], "--count and --concurrency must be at least 1"),
            (&["--concurrency", "0"], "--count and --concurrency must be at least 1"),
            (&["--correlation-id", "not valid!"], "--correlation-id \"not valid!\""),
        ] {
            let e = JourneyPlan::from_args(&journey_args(flags)).unwrap_err();
            assert!(e.starts_with(message), "{flags:?}: {e}");
        }
    }

    fn span(id: &str, parent: &str, name: &str, service: &str, start: u128) -> recordstore::telemetry::CapturedSpan {
        recordstore::telemetry::CapturedSpan {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: Some(parent.into()),
            name: name.into(),
            service: service.into(),
            kind: "server".into(),
            start_unix_nanos: start,
            end_unix_nanos: start + 1_000_000,
            status: "unset".into(),
            status_message: None,
            attributes: Default::default(),
        }
    }

    fn step(name: &str, span: &str, at: u128, note: Option<&str>) -> steps::StepResult {
        steps::StepResult {
            name: name.into(),
            method: "GET".into(),
            path: "/".into(),
            status: Some(200),
            duration_ms: 1.0,
            client_span_id: span.into(),
            started_unix_nanos: at,
            error: None,
            note: note.map(str::to_string),
        }
    }

    /// Regression: the worker's span, coming after the client's polls in time, looked like a
    /// poll's child; polls did not say what they saw.
    #[test]
    fn the_timeline_names_a_parent_that_is_not_just_above_and_shows_each_polls_status() {
        let journey = JourneyResult {
            correlation_id: "c".into(),
            trace_id: "t".into(),
            order_id: Some(1),
            outcome: "completed".into(),
            detail: None,
            steps: vec![
                step("checkout", "c1", 0, None),
                step("poll order", "c2", 5_000_000, Some("processing")),
                step("poll order", "c3", 30_000_000, Some("completed")),
            ],
            end_to_end_ms: 31.0,
            processing_ms: Some(20.0),
        };
        let telemetry = JourneyTelemetry {
            spans: vec![
                span("s1", "c1", "POST /checkout", "recordstore-api", 1_000_000),
                span("w1", "s1", "process order", "recordstore-worker", 8_000_000),
                span("s2", "c2", "GET /orders/{id}", "recordstore-api", 6_000_000),
            ],
            logs: Vec::new(),
            metrics: Vec::new(),
            exemplar: None,
            pillars: Vec::new(),
            unreachable: Vec::new(),
        };
        let text = timeline(&journey, &telemetry);
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{text}"))
        };
        assert!(line("process order").contains("← child of POST /checkout"), "{text}");
        assert!(
            !line("POST /checkout").contains("child of"),
            "just under its client step: {text}"
        );
        assert!(!line("GET /orders").contains("child of"), "{text}");
        assert!(
            line("+5.0 ms").contains("poll order") && line("+5.0 ms").contains("· processing"),
            "{text}"
        );
        assert!(line("+30.0 ms").contains("· completed"), "{text}");
    }

    #[test]
    fn odd_log_timestamps_are_none_not_panics() {
        for odd in [
            "2026-11-21T19:30:45.1é3Z",
            "2026-11-21T19:30:45.Z",
            "99999999999999-11-21T19:30:45Z",
            "1960-01-01T00:00:00Z",
            "2026-13-21T19:30:45Z",
            "2026-11-21T19:30:45:12Z",
            "2026-11-21T-1:30:45Z",
            "T",
            "",
            "２０２６-11-21T19:30:45Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(odd), None, "{odd}");
        }
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000),
            "fractions are padded"
        );
    }

    #[test]
    fn log_timestamps_parse_back_to_unix_nanos() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:01.000002Z"), Some(1_000_002_000));
        let micros = recordstore::clock::now_micros();
        let text = recordstore::clock::rfc3339_micros(micros);
        assert_eq!(parse_rfc3339_nanos(&text), Some(micros as u128 * 1000));
    }

    #[test]
    fn percentiles_of_small_samples() {
        assert_eq!(percentile(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&mut [], 0.95), 0.0);
    }
}
