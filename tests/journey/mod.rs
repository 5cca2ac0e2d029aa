//! `recordctl journey`: one purchase followed through spans, log lines and metrics.

use crate::support;

use std::time::Duration;

use recordctl::journey::JourneyReport;
use recordctl::journey::steps::Journey;
use recordstore::{Application, Config, Role};

/// A store on a throwaway SQLite database (removed by the caller with the returned dir).
async fn store(role: Role) -> (recordstore::RunningApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("recordctl-journey-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config::embedded(format!("sqlite://{}", dir.join("s.db").display()));
    let app = Application::build(config, role, Duration::from_secs(5))
        .await
        .unwrap()
        .spawn()
        .await;
    (app, dir)
}

async fn journey(args: &[&str]) -> (i32, Option<JourneyReport>, String) {
    let out = tokio::process::Command::from(support::recordctl())
        .arg("journey")
        .args(args)
        .args(["--json", "-"])
        .output()
        .await
        .expect("run recordctl");
    let report = serde_json::from_slice(&out.stdout).ok();
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_trace_on_the_embedded_store_finds_all_three_pillars() {
    let (code, report, stderr) = journey(&["--trace", "--correlation-id", "it-journey-1"]).await;
    assert_eq!(code, 0, "{stderr}");
    let report = report.expect("a JSON report");
    let j = &report.journeys[0];
    assert_eq!(j.correlation_id, "it-journey-1");
    assert_eq!(j.outcome, "completed");
    assert!(j.processing_ms.is_some());
    let names: Vec<&str> = j.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(&names[..3], ["list products", "view product", "checkout"]);
    assert!(names[3..].iter().all(|n| *n == "poll order"));
    let t = report.telemetry.expect("telemetry with --trace");
    assert!(t.pillars.iter().all(|p| p.complete), "{:?}", t.pillars);
    // Header injection: the app saw exactly the ids recordctl chose.
    assert!(t.spans.iter().all(|s| s.trace_id == j.trace_id));
    for step in &j.steps {
        let server = t
            .spans
            .iter()
            .find(|s| s.parent_span_id.as_deref() == Some(step.client_span_id.as_str()));
        let server = server.unwrap_or_else(|| panic!("no server span under the client span of {}", step.name));
        assert_eq!(server.kind, "server");
        assert_eq!(server.attribute_str("correlation_id"), Some("it-journey-1"));
    }
    assert!(
        t.logs
            .iter()
            .all(|l| l["correlation_id"] == "it-journey-1" && l["trace_id"] == j.trace_id.as_str())
    );
    assert_eq!(
        t.exemplar.as_ref().map(|e| e.trace_id.as_str()),
        Some(j.trace_id.as_str())
    );
    assert!(report.verdict.starts_with("PASSED"), "{}", report.verdict);
}

/// The waterfall page in a real browser: a bar per client step and per span, a mark per log
/// line, the pillar verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_html_draws_the_waterfall_with_every_span_and_log_line() {
    let dir = support::TempDir::new("recordctl-journey-html");
    let html = dir.join("journey.html");
    let (code, report, stderr) = journey(&[
        "--trace",
        "--correlation-id",
        "it-html-1",
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report = report.expect("a JSON report");
    let (j, t) = (&report.journeys[0], report.telemetry.as_ref().unwrap());
    let Some(page) = support::browser::render(&html) else {
        return;
    };
    assert_eq!(page.dom.matches("<svg").count(), 1, "one waterfall");
    assert_eq!(
        page.dom.matches("class=\"span\"").count(),
        j.steps.len() + t.spans.len(),
        "a bar per client step and per span"
    );
    assert_eq!(
        page.dom.matches("class=\"log\"").count(),
        t.logs.len(),
        "a mark per log line"
    );
    assert!(!t.logs.is_empty());
    assert!(page.dom.contains("it-html-1"), "the correlation id");
    assert_eq!(
        page.dom.matches(">✓</td>").count(),
        t.pillars.len(),
        "every pillar complete"
    );
    assert!(page.dom.contains("PASSED"), "the verdict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_journeys_are_summarised_and_each_keeps_its_own_id() {
    let (code, report, stderr) = journey(&["--count", "6", "--concurrency", "3", "--correlation-id", "batch"]).await;
    assert_eq!(code, 0, "{stderr}");
    let report = report.unwrap();
    assert_eq!(report.journeys.len(), 6);
    assert_eq!(report.success_rate, 1.0);
    let ids: std::collections::BTreeSet<_> = report.journeys.iter().map(|j| j.correlation_id.clone()).collect();
    assert_eq!(ids.len(), 6);
    assert!(ids.contains("batch-1") && ids.contains("batch-6"));
    let traces: std::collections::BTreeSet<_> = report.journeys.iter().map(|j| j.trace_id.clone()).collect();
    assert_eq!(traces.len(), 6, "one trace per journey");
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.name == "checkout" && s.p95_ms >= s.p50_ms)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_without_a_worker_reports_the_missing_worker_spans() {
    let (app, dir) = store(Role::Api).await;
    let client = reqwest::Client::new();
    let base = app.base_url();
    let result = Journey {
        client: &client,
        base: &base,
        correlation_id: "no-worker-1".into(),
        wait: Duration::from_millis(600),
    }
    .run()
    .await;
    assert_eq!(result.outcome, "timeout");
    assert!(
        result.detail.as_deref().unwrap().contains("is the worker running?"),
        "{result:?}"
    );
    let t =
        recordctl::correlate::pillars::collect(app.captured(), &base, &result.subject(), Duration::from_millis(300))
            .await;
    let traces = t.pillars.iter().find(|p| p.pillar == "traces").unwrap();
    assert!(!traces.complete);
    assert!(
        traces
            .detail
            .contains("none from recordstore-worker: is the worker running"),
        "{}",
        traces.detail
    );
    let logs = t.pillars.iter().find(|p| p.pillar == "logs").unwrap();
    assert!(
        !logs.complete && logs.detail.contains("none from recordstore-worker"),
        "{}",
        logs.detail
    );
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_store_receives_the_ids_recordctl_reports() {
    let (app, dir) = store(Role::ApiAndWorker).await;
    let (code, report, stderr) = journey(&["--target", &app.base_url(), "--correlation-id", "remote-1"]).await;
    assert_eq!(code, 0, "{stderr}");
    let j = &report.unwrap().journeys[0];
    let lines = app.captured().logs_with_correlation_id("remote-1");
    let requests: Vec<_> = lines.iter().filter(|l| l["message"] == "request completed").collect();
    assert_eq!(requests.len(), j.steps.len(), "one request log line per step");
    assert!(requests.iter().all(|l| l["trace_id"] == j.trace_id.as_str()));
    let order = app.store().get_order(j.order_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(order.correlation_id, "remote-1");
    assert_eq!(order.trace_id.as_deref(), Some(j.trace_id.as_str()));
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_and_unsupported_combinations_exit_2() {
    let (code, _, stderr) = journey(&["--correlation-id", "has space"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--correlation-id"));
    let (code, _, stderr) = journey(&["--trace", "--target", "http://127.0.0.1:9", "--prometheus", "not a url"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--prometheus"), "{stderr}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, stderr) = journey(&["--target", &format!("http://127.0.0.1:{port}")]).await;
    assert_eq!(code, 3, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_against_a_store_without_a_worker_exits_1_and_says_why() {
    let (app, dir) = store(Role::Api).await;
    let (code, report, stderr) = journey(&["--target", &app.base_url(), "--wait", "1s"]).await;
    assert_eq!(code, 1, "{stderr}");
    let report = report.unwrap();
    assert_eq!(report.journeys[0].outcome, "timeout");
    assert!(report.verdict.starts_with("FAILED"), "{}", report.verdict);
    assert!(
        report.journeys[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("is the worker running?")
    );
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backends_exit_3_and_name_their_urls() {
    let (app, dir) = store(Role::ApiAndWorker).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let (code, report, stderr) = journey(&[
        "--target",
        &app.base_url(),
        "--trace",
        "--jaeger",
        &dead,
        "--loki",
        &dead,
        "--prometheus",
        &dead,
    ])
    .await;
    assert_eq!(code, 3, "{stderr}");
    let t = report.unwrap().telemetry.unwrap();
    assert!(
        t.unreachable
            .iter()
            .any(|u| u.contains(&format!("cannot reach Jaeger at {dead}"))),
        "{:?}",
        t.unreachable
    );
    assert!(t.pillars.iter().all(|p| !p.complete));
    // Short lines people can read: one per pillar, no encoded LogQL, a one-line verdict.
    for p in &t.pillars {
        assert!(
            p.detail.len() < 300,
            "{}: {} characters: {}",
            p.pillar,
            p.detail.len(),
            p.detail
        );
        assert!(!p.detail.contains("query="), "{}", p.detail);
    }
    let verdict = report_verdict(&app, &dead).await;
    assert_eq!(
        verdict,
        "INCOMPLETE: 3 of 3 pillars missing (traces, logs, metrics); the ✗ lines say why"
    );
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// The verdict line of a traced journey whose backends are all at `dead`.
async fn report_verdict(app: &recordstore::RunningApp, dead: &str) -> String {
    let target = app.base_url();
    let args = [
        "--target",
        &target,
        "--trace",
        "--jaeger",
        dead,
        "--loki",
        dead,
        "--prometheus",
        dead,
    ];
    let (_, report, stderr) = journey(&args).await;
    report.unwrap_or_else(|| panic!("{stderr}")).verdict
}
