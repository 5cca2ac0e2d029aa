//! The Jaeger and Loki clients against fixture servers fed by the app's real output.

use crate::support;
use recordstore_fixtures as fixtures;

use std::time::Duration;

use recordctl::backends::BackendError;
use recordctl::backends::jaeger::JaegerClient;
use recordctl::backends::loki::{Direction, LokiClient};
use recordstore::RunningApp;
use serde_json::json;

/// The one `eventually` (tests/support), with this file's 15 s deadline.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    support::eventually(what, Duration::from_secs(15), check).await
}

/// The store, exporting its spans to `otlp`, after one checkout with the given ids has
/// completed; returns the app and the order id.
async fn app_after_checkout(
    otlp: Option<String>,
    correlation_id: &str,
    traceparent: &str,
) -> (RunningApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("recordctl-backends-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |config| {
        config.telemetry.otlp_endpoint = otlp;
    })
    .await;
    let client = reqwest::Client::new();
    let accepted: serde_json::Value = client
        .post(format!("{}/checkout", app.base_url()))
        .header("x-correlation-id", correlation_id)
        .header("traceparent", traceparent)
        .json(&json!({ "product_id": 1, "quantity": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = accepted["order_id"].as_i64().unwrap();
    let base = app.base_url();
    eventually("the order to complete", || async {
        let o: serde_json::Value = client
            .get(format!("{base}/orders/{order}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (o["status"] == "completed").then_some(())
    })
    .await;
    (app, dir)
}

/// The client reads the app's exported trace, searches by attribute and lists services,
/// against a Jaeger v2 (API v3) or, falling back, a Jaeger 1.x (the v1 JSON API only).
async fn jaeger_client_reads_the_apps_trace(
    fixture: fixtures::JaegerFixture,
    url: String,
    trace: &str,
    correlation: &str,
) {
    let (app, dir) = app_after_checkout(
        Some(url.clone()),
        correlation,
        &format!("00-{trace}-00f067aa0ba902b7-01"),
    )
    .await;
    let jaeger = JaegerClient::new(&url);
    let spans = eventually("the worker's span in Jaeger", || async {
        app.telemetry().flush();
        let spans = jaeger.trace(trace).await.unwrap()?;
        spans.iter().any(|s| s.service == "recordstore-worker").then_some(spans)
    })
    .await;
    assert!(fixture.span_count() >= spans.len());
    assert!(
        spans.iter().all(|s| s.trace_id == trace),
        "ids normalised to 32 characters"
    );
    let checkout = spans
        .iter()
        .find(|s| s.operation == "POST /checkout")
        .expect("the checkout span");
    assert_eq!(checkout.service, "recordstore-api");
    assert_eq!(checkout.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(checkout.tags["correlation_id"], correlation);
    assert_eq!(
        checkout.tags["http.response.status_code"], 202,
        "int64 tags stay numbers"
    );
    assert!(
        checkout.duration_us > 0 && checkout.start_us > 1_700_000_000_000_000,
        "{checkout:?}"
    );
    assert!(!checkout.error);
    let worker = spans.iter().find(|s| s.operation == "process order").unwrap();
    assert_eq!(worker.service, "recordstore-worker");
    assert_eq!(worker.parent_span_id.as_deref(), Some(checkout.span_id.as_str()));
    assert!(
        jaeger
            .trace("1234567890abcdef1234567890abcdef")
            .await
            .unwrap()
            .is_none(),
        "an unknown trace is None, not an error"
    );
    let found = jaeger
        .find_by_tag("recordstore-api", "correlation_id", correlation, 5)
        .await
        .unwrap();
    assert_eq!(found, [trace.to_string()]);
    let none = jaeger
        .find_by_tag("recordstore-api", "correlation_id", "no-such-id", 5)
        .await
        .unwrap();
    assert!(none.is_empty(), "an empty search is no traces, not an error: {none:?}");
    let services = jaeger.services().await.unwrap();
    assert_eq!(services, ["recordstore-api", "recordstore-worker"]);
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_client_reads_jaeger_v2_through_api_v3() {
    let (fixture, url) = fixtures::JaegerFixture::start().await;
    // A trace id whose high half is zero: Jaeger 1.x shows it as 16 hex characters.
    jaeger_client_reads_the_apps_trace(fixture, url, "00000000000000009f3c2b1a0e4d5c6b", "jaeger-v2-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_client_falls_back_to_the_v1_api_of_jaeger_1x_with_a_16_character_id() {
    let (fixture, url) = fixtures::JaegerFixture::start_v1().await;
    jaeger_client_reads_the_apps_trace(fixture, url, "00000000000000009f3c2b1a0e4d5c6c", "jaeger-v1-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_client_finds_the_apps_real_log_lines_by_correlation_id() {
    let (_fixture, url) = fixtures::LokiFixture::start().await;
    let (app, dir) = app_after_checkout(
        None,
        "loki-it-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .await;
    let lines = eventually("the worker's last log line", || async {
        let lines = app.captured().logs_with_correlation_id("loki-it-1");
        lines.iter().any(|l| l["message"] == "job finished").then_some(lines)
    })
    .await;
    // Push them as a log shipper would: one stream per service, nanosecond string timestamps.
    let mut values: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for (i, line) in lines.iter().enumerate() {
        let service = line["service"].as_str().unwrap().to_string();
        values.entry(service).or_default().push((
            (1_795_000_000_000_000_000u128 + i as u128).to_string(),
            serde_json::Value::Object(line.clone()).to_string(),
        ));
    }
    let streams: Vec<_> = values
        .into_iter()
        .map(|(service, values)| json!({ "stream": { "service": service }, "values": values }))
        .collect();
    let pushed = reqwest::Client::new()
        .post(format!("{url}/loki/api/v1/push"))
        .json(&json!({ "streams": streams }))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 204);

    let loki = LokiClient::new(&url);
    let found = loki
        .lines_with_correlation_id("loki-it-1", 0, u128::MAX, 1000, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(found.len(), lines.len());
    assert!(
        found.windows(2).all(|w| w[0].timestamp_ns <= w[1].timestamp_ns),
        "oldest first"
    );
    let fields = found[0].fields.as_ref().expect("JSON lines are parsed");
    assert_eq!(fields["correlation_id"], "loki-it-1");
    assert!(found.iter().any(|l| l.labels["service"] == "recordstore-worker"));
    let backward = loki
        .lines_with_correlation_id("loki-it-1", 0, u128::MAX, 1000, Direction::Backward)
        .await
        .unwrap();
    assert_eq!(backward.first(), found.last());
    assert!(
        loki.lines_with_correlation_id("nobody", 0, u128::MAX, 10, Direction::Forward)
            .await
            .unwrap()
            .is_empty(),
        "empty result"
    );
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_errors_arrive_as_plain_text_and_are_shown_as_such() {
    let (_fixture, url) = fixtures::LokiFixture::start().await;
    let broken = LokiClient::new(&url).with_selector("{service=~");
    match broken
        .lines_with_correlation_id("x", 0, 1, 10, Direction::Forward)
        .await
    {
        Err(BackendError::Api { status: 400, body, .. }) => assert!(body.starts_with("parse error"), "{body}"),
        other => panic!("expected a 400 parse error, got {other:?}"),
    }
    let slow = LokiClient::new(&url).with_selector(r#"{timeout="1"}"#);
    let err = slow
        .lines_with_correlation_id("x", 0, 1, 10, Direction::Forward)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Api { status: 504, .. }), "{err:?}");
    assert!(err.to_string().contains("context deadline exceeded"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backends_name_the_url_and_the_fix() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = JaegerClient::new(&url).trace("ab").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot reach Jaeger at {url}/api/v3/traces/")),
        "{text}"
    );
    assert!(text.contains("docker compose up -d"), "{text}");
    let err = LokiClient::new(&url)
        .lines_with_correlation_id("x", 0, 1, 1, Direction::Forward)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Unreachable { backend: "Loki", .. }),
        "{err:?}"
    );
}

/// The real Prometheus (Debian's package) on a free port, scraping `target` every second
/// with exemplar storage on; killed on drop.
/// Debian's Prometheus scraping `target` as job `recordstore`, with one recording rule.
fn real_prometheus(target: &str) -> Option<(support::Prometheus, support::TempDir)> {
    if !support::Prometheus::available() {
        return None;
    }
    let dir = support::TempDir::new("recordctl-prom-rules");
    let rules = "groups:\n  - name: recordctl-test\n    rules:\n      - record: job:recordstore_http_requests:rate1m\n        expr: sum(rate(recordstore_http_requests_total[1m]))\n";
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let scrape = format!("  - job_name: recordstore\n    static_configs:\n      - targets: ['{target}']\n");
    Some((support::Prometheus::start(&scrape, &[dir.join("rules.yml")], ""), dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_has_the_checkouts_counter_and_its_exemplar() {
    let trace = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
    let (app, dir) = app_after_checkout(None, "prom-it-1", &format!("00-{trace}-00f067aa0ba902b7-01")).await;
    let Some((prometheus, _rules)) = real_prometheus(&app.addr().to_string()) else {
        return;
    };
    let client = recordctl::backends::prometheus::PrometheusClient::new(&prometheus.url).unwrap();
    let samples = eventually("Prometheus to scrape the checkout counter", || async {
        let s = client
            .instant(r#"recordstore_http_requests_total{route="/checkout"}"#)
            .await
            .ok()?;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(samples[0].labels["status"], "202");
    assert_eq!(samples[0].value, 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let exemplar = eventually("the checkout's exemplar", || async {
        let all = client
            .exemplars(
                r#"recordstore_http_request_duration_seconds_bucket{route="/checkout"}"#,
                now - 600.0,
                now + 600.0,
            )
            .await
            .ok()?;
        all.into_iter()
            .find(|e| e.labels.get("trace_id").map(String::as_str) == Some(trace))
    })
    .await;
    assert_eq!(exemplar.series["route"], "/checkout");
    assert!(exemplar.value > 0.0);
    let targets = client.targets().await.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].health, "up");
    assert!(
        targets[0].scrape_url.ends_with(&format!("{}/metrics", app.addr())),
        "{:?}",
        targets[0]
    );
    assert!(
        client.alerts().await.unwrap().is_empty(),
        "no alerting rules, no alerts"
    );
    let rules = client.rules().await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        (rules[0].group.as_str(), rules[0].kind.as_str()),
        ("recordctl-test", "recording")
    );
    let end = now as i64 + 5;
    let series = client
        .range(
            r#"recordstore_http_requests_total{route="/checkout"}"#,
            end - 120,
            end,
            1.0,
        )
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].points.iter().any(|(_, v)| *v == 1.0));
    let bad = client.instant("sum(").await.unwrap_err();
    assert!(
        matches!(bad, BackendError::Api { .. }),
        "a PromQL error is Prometheus's answer: {bad:?}"
    );
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Pushes the app's new log lines to Loki every 100 ms, as a log shipper would.
fn ship_logs(app: &RunningApp, loki: String) -> tokio::task::JoinHandle<()> {
    let captured = app.captured().clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut shipped = 0;
        loop {
            let lines = captured.logs();
            if lines.len() > shipped {
                let values: Vec<_> = lines[shipped..]
                    .iter()
                    .map(|l| {
                        let service = l["service"].as_str().unwrap_or("").to_string();
                        let ts = recordstore::clock::now_micros() as u128 * 1000;
                        (
                            service,
                            ts.to_string(),
                            serde_json::Value::Object(l.clone()).to_string(),
                        )
                    })
                    .collect();
                let streams: Vec<_> = values
                    .into_iter()
                    .map(|(service, ts, line)| json!({ "stream": { "service": service }, "values": [[ts, line]] }))
                    .collect();
                if client
                    .post(format!("{loki}/loki/api/v1/push"))
                    .json(&json!({ "streams": streams }))
                    .send()
                    .await
                    .is_ok()
                {
                    shipped = lines.len();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_trace_against_a_deployed_store_reads_jaeger_loki_and_prometheus() {
    let (_jaeger, jaeger_url) = fixtures::JaegerFixture::start().await;
    let (_loki, loki_url) = fixtures::LokiFixture::start().await;
    let dir = std::env::temp_dir().join(format!("recordctl-stack-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |config| {
        config.telemetry.otlp_endpoint = Some(jaeger_url.clone());
    })
    .await;
    let Some((prometheus, _rules)) = real_prometheus(&app.addr().to_string()) else {
        return;
    };
    let shipper = ship_logs(&app, loki_url.clone());
    // The batch span exporter sends every few seconds; flush often so the test is quick.
    let telemetry = app.telemetry().clone();
    let flusher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t = telemetry.clone();
            let _ = tokio::task::spawn_blocking(move || t.flush()).await;
        }
    });
    let out = tokio::process::Command::from(support::recordctl())
        .args([
            "journey",
            "--trace",
            "--wait",
            "30s",
            "--correlation-id",
            "stack-it-1",
            "--json",
            "-",
        ])
        .args([
            "--target",
            &app.base_url(),
            "--jaeger",
            &jaeger_url,
            "--loki",
            &loki_url,
            "--prometheus",
            &prometheus.url,
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: recordctl::journey::JourneyReport =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let t = report.telemetry.as_ref().expect("telemetry");
    assert_eq!(out.status.code(), Some(0), "{:?}\n{stderr}", t.pillars);
    assert!(t.pillars.iter().all(|p| p.complete), "{:?}", t.pillars);
    let j = &report.journeys[0];
    assert!(
        t.spans
            .iter()
            .any(|s| s.service == "recordstore-worker" && s.trace_id == j.trace_id)
    );
    assert!(
        t.logs
            .iter()
            .any(|l| l["service"] == "recordstore-worker" && l["correlation_id"] == "stack-it-1")
    );
    assert_eq!(
        t.exemplar.as_ref().map(|e| e.trace_id.as_str()),
        Some(j.trace_id.as_str())
    );
    flusher.abort();
    shipper.abort();
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlate_refuses_bad_ids_and_says_when_a_backend_is_unreachable() {
    let bad = tokio::process::Command::from(support::recordctl())
        .args(["correlate", "not valid!"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let out = tokio::process::Command::from(support::recordctl())
        .args([
            "correlate",
            "someone-1",
            "--loki",
            &dead,
            "--jaeger",
            &dead,
            "--prometheus",
            &dead,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot reach Loki at {dead}")));
}
