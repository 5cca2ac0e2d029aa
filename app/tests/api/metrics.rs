//! `/metrics` is valid Prometheus text with the contract's names and bounded labels, and
//! OpenMetrics with trace-id exemplars when the scraper asks for it.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use recordstore::Role;

use crate::helpers::{Db, spawn_app};
use crate::on_both_databases;

const CONTRACT: &[&str] = &[
    "recordstore_http_requests_total",
    "recordstore_http_request_duration_seconds_bucket",
    "recordstore_http_request_duration_seconds_sum",
    "recordstore_http_request_duration_seconds_count",
    "recordstore_http_requests_in_flight",
    "recordstore_checkouts_total",
    "recordstore_order_transitions_total",
    "recordstore_orders",
    "recordstore_jobs_queue_depth",
    "recordstore_jobs_oldest_age_seconds",
    "recordstore_jobs_processed_total",
    "recordstore_job_duration_seconds_bucket",
    "recordstore_job_attempts_bucket",
    "recordstore_payment_requests_total",
    "recordstore_payment_duration_seconds_bucket",
    "recordstore_payment_circuit_state",
    "recordstore_db_up",
    "recordstore_db_pool_connections",
    "recordstore_db_pool_max_connections",
];

/// One parsed sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus text exposition strictly enough to catch malformed output.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF" {
            continue;
        }
        assert!(!line.starts_with('#'), "line {}: unexpected comment {line:?}", n + 1);
        let line = line.split(" # ").next().unwrap();
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("line {}: no value: {line:?}", n + 1));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("line {}: bad value {v:?}", n + 1)),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("line {}: unclosed labels", n + 1));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("line {}: bad label {pair:?}", n + 1));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "line {}: bad metric name {name:?}",
            n + 1
        );
        samples.push((name.to_string(), labels, value));
    }
    samples
}

async fn metrics_are_valid_prometheus_text_with_the_contract_names_and_bounded_labels(db: Db) {
    let t = spawn_app(db, Role::ApiAndWorker).await;
    for id in 1..=25 {
        t.client.get(t.url(&format!("/products/{id}"))).send().await.unwrap();
        t.client
            .get(t.url(&format!("/no/such/path/{id}")))
            .send()
            .await
            .unwrap();
    }
    let order = t.checkout(1, 1).await.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_i64()
        .unwrap();
    t.wait_for_terminal(order).await;
    let response = t.client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let samples = parse_exposition(&text);
    let names: BTreeSet<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    for name in CONTRACT {
        assert!(names.contains(name), "missing {name} in:\n{text}");
    }
    assert!(names.iter().all(|n| n.starts_with("recordstore_")), "{names:?}");
    let routes: BTreeSet<&str> = samples
        .iter()
        .flat_map(|(_, labels, _)| labels.iter().filter(|(k, _)| k == "route").map(|(_, v)| v.as_str()))
        .collect();
    assert!(
        routes.contains("/products/{id}") && routes.contains("unmatched"),
        "{routes:?}"
    );
    assert!(
        routes.iter().all(|r| !r.chars().any(|c| c.is_ascii_digit())),
        "route labels must be templates: {routes:?}"
    );
    assert!(routes.len() <= 20, "route label values must stay bounded: {routes:?}");
    let completed = samples
        .iter()
        .find(|(n, l, _)| n == "recordstore_orders" && l.iter().any(|(k, v)| k == "status" && v == "completed"))
        .expect("orders{status=completed}");
    assert!(completed.2 >= 1.0);
    if let Some(report) = promtool_check(&text) {
        panic!("promtool check metrics found problems:\n{report}");
    }
    t.app.shutdown().await.unwrap();
}
on_both_databases!(metrics_are_valid_prometheus_text_with_the_contract_names_and_bounded_labels);

/// `promtool check metrics` on the text: `None` when clean (or when promtool is absent
/// outside CI), the report otherwise.
fn promtool_check(text: &str) -> Option<String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("promtool is required in CI"),
        Err(_) => {
            crate::helpers::skipped("SKIPPED: promtool check metrics (apt-get install prometheus)");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success() || !report.trim().is_empty()).then_some(report)
}

async fn openmetrics_carries_the_trace_id_exemplar_of_a_request(db: Db) {
    let t = spawn_app(db, Role::Api).await;
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let response = t
        .client
        .get(t.url("/products"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = t
        .client
        .get(t.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(
        text.contains("# TYPE recordstore_http_requests counter"),
        "OpenMetrics names counters without _total"
    );
    let exemplar = format!("# {{trace_id=\"{trace}\"}}");
    let line = text
        .lines()
        .find(|l| l.contains(&exemplar))
        .unwrap_or_else(|| panic!("no exemplar with trace {trace} in:\n{text}"));
    assert!(
        line.starts_with("recordstore_http_request_duration_seconds_bucket{"),
        "{line}"
    );
    assert!(line.contains("route=\"/products\""), "{line}");
    parse_exposition(&text);
    t.app.shutdown().await.unwrap();
}
on_both_databases!(openmetrics_carries_the_trace_id_exemplar_of_a_request);
