//! `recordctl journey`: one scripted purchase (or N of them), and with `--trace` the same
//! purchase as one correlated timeline of spans, log lines and metrics, with a verdict per
//! pillar.

pub mod args;
pub mod html;
pub mod steps;

pub use args::JourneyArgs;

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::correlate::pillars::Subject;
use crate::correlate::pillars::Telemetry;
use crate::correlate::source::TraceSource;
use crate::correlate::timeline::{ClientRow, timeline};
use crate::exit::{CommandError, CommandResult, Outcome, UsageError};
use crate::output::Delivery;
use crate::units::parse_duration;
use steps::{Journey, JourneyResult};

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
    pub telemetry: Option<Telemetry>,
    pub verdict: String,
    pub interrupted: bool,
}

impl JourneyReport {
    pub fn outcome(&self) -> Outcome {
        if self.interrupted {
            Outcome::Interrupted
        } else if self.telemetry.as_ref().is_some_and(|t| !t.unreachable.is_empty()) {
            Outcome::Unreachable
        } else {
            Outcome::checks(self.success_rate >= 1.0 && self.telemetry.as_ref().is_none_or(|t| t.complete()))
        }
    }
}

impl JourneyResult {
    /// What its telemetry is looked up by.
    pub fn subject(&self) -> Subject {
        Subject {
            correlation_id: self.correlation_id.clone(),
            trace_id: self.trace_id.clone(),
        }
    }

    /// Where a log search for it starts: a minute before its first step (clocks differ).
    pub fn since_ns(&self) -> u128 {
        let first = self.steps.first().map(|s| s.started_unix_nanos).unwrap_or(0);
        first.saturating_sub(60_000_000_000)
    }

    /// Its steps as the timeline's client rows.
    pub fn client_rows(&self) -> Vec<ClientRow> {
        self.steps
            .iter()
            .map(|s| ClientRow {
                span_id: s.client_span_id.clone(),
                name: s.name.clone(),
                at_unix_nanos: s.started_unix_nanos,
                text: format!(
                    "client {:<20} {} {:<16} {:.2} ms{}",
                    s.name,
                    s.method,
                    s.status.map(|v| v.to_string()).unwrap_or("-".into()),
                    s.duration_ms,
                    s.note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default()
                ),
            })
            .collect()
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
    pub fn from_args(args: &JourneyArgs) -> Result<JourneyPlan, UsageError> {
        let wait = parse_duration(&args.wait).map_err(|e| format!("--wait: {e}"))?;
        if args.count == 0 || args.concurrency == 0 {
            return Err("--count and --concurrency must be at least 1".into());
        }
        let correlation_id = match &args.correlation_id {
            Some(id) if recordstore::telemetry::CorrelationId::parse(id).is_none() => {
                return Err(format!("--correlation-id {id:?}: use 1 to 128 of A-Z a-z 0-9 . _ : -").into());
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

pub async fn run(args: JourneyArgs, interrupt: CancellationToken) -> CommandResult {
    let plan = JourneyPlan::from_args(&args)?;
    let source = TraceSource::open(args.target.as_deref(), args.trace, &args.stack).await?;
    let result = journeys(&args, &plan, &source, &interrupt).await;
    source.stop().await;
    result
}

/// The plan's journeys against the source's target, their telemetry when traced, the report.
async fn journeys(
    args: &JourneyArgs,
    plan: &JourneyPlan,
    source: &TraceSource,
    interrupt: &CancellationToken,
) -> CommandResult {
    let base = &source.base;
    let client = crate::backends::client_with_timeout(Duration::from_secs(10));
    if let Err(e) = client.get(format!("{base}/health/live")).send().await {
        return Err(CommandError::Unreachable(crate::backends::target_unreachable(
            base,
            &crate::backends::error_chain(&e),
        )));
    }
    let (count, concurrency) = (plan.count, plan.concurrency);
    let journeys = run_journeys(
        &client,
        base,
        &plan.correlation_id,
        count,
        concurrency,
        plan.wait,
        interrupt,
    )
    .await;
    let telemetry = match (args.trace, journeys.first()) {
        (true, Some(first)) => source.collect(&first.subject(), first.since_ns(), plan.wait).await,
        _ => None,
    };
    let target = if source.embedded.is_some() {
        "embedded recordstore"
    } else {
        base
    };
    let report = build_report(target, journeys, telemetry, interrupt.is_cancelled());
    let mut delivery = Delivery::default();
    delivery.show(&render(&report), &report, args.json.as_deref());
    delivery.file("HTML", args.html.as_deref(), || html::render(&report));
    delivery.conclude(report.outcome())
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
    telemetry: Option<Telemetry>,
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
        out.push_str(&timeline(&j.client_rows(), t));
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
            let e = JourneyPlan::from_args(&journey_args(flags)).unwrap_err().to_string();
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
        let telemetry = Telemetry {
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
        let text = timeline(&journey.client_rows(), &telemetry);
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
    fn percentiles_of_small_samples() {
        assert_eq!(percentile(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&mut [], 0.95), 0.0);
    }
}
