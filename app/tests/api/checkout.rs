//! A checkout completes and its correlation id and trace id are kept everywhere the
//! telemetry contract says: response, log lines, span attributes, the order row, and the
//! worker's span in the caller's trace.

use std::time::Duration;

use recordstore::Role;
use recordstore::routes::orders::CheckoutAccepted;

use crate::helpers::{Db, eventually, spawn_app};
use crate::on_both_databases;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

async fn checkout_completes_with_correlation_and_trace_ids_everywhere(db: Db) {
    let t = spawn_app(db, Role::ApiAndWorker).await;
    let correlation_id = format!("it-{:08x}", rand::random::<u32>());
    let response = t
        .client
        .post(t.url("/checkout"))
        .header("x-correlation-id", &correlation_id)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .json(&serde_json::json!({ "product_id": 1, "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-correlation-id"], correlation_id.as_str());
    let echoed = response.headers()["traceparent"].to_str().unwrap().to_string();
    assert!(echoed.starts_with(&format!("00-{TRACE_ID}-")), "traceparent {echoed}");
    assert!(
        !echoed.contains(PARENT_SPAN),
        "the server answers with its own span id: {echoed}"
    );
    let accepted: CheckoutAccepted = response.json().await.unwrap();
    assert_eq!(accepted.status, "pending");
    assert_eq!(accepted.correlation_id, correlation_id);
    assert_eq!(accepted.trace_id.as_deref(), Some(TRACE_ID));

    let order = t.wait_for_terminal(accepted.order_id).await;
    assert_eq!(order.status, "completed", "{order:?}");
    assert_eq!(order.correlation_id, correlation_id);
    assert_eq!(order.trace_id.as_deref(), Some(TRACE_ID));
    assert!(order.stock_reserved && order.payment_ref.is_some(), "{order:?}");

    let captured = t.app.captured();
    let logs = eventually("worker's 'job finished' log line", Duration::from_secs(5), || async {
        let logs = captured.logs_with_correlation_id(&correlation_id);
        logs.iter().any(|l| l["message"] == "job finished").then_some(logs)
    })
    .await;
    for service in ["recordstore-api", "recordstore-worker"] {
        assert!(
            logs.iter().any(|l| l["service"] == service),
            "no log line from {service}: {logs:?}"
        );
    }
    for line in &logs {
        for key in [
            "timestamp",
            "level",
            "message",
            "service",
            "correlation_id",
            "request_id",
            "trace_id",
            "span_id",
        ] {
            assert!(line.contains_key(key), "log line lacks {key}: {line:?}");
        }
        assert_eq!(line["trace_id"], TRACE_ID, "{line:?}");
    }
    let request_line = logs
        .iter()
        .find(|l| l["message"] == "request completed")
        .expect("request log line");
    assert_eq!(request_line["method"], "POST");
    assert_eq!(request_line["route"], "/checkout");
    assert_eq!(request_line["status"], 202);
    assert!(request_line["duration_ms"].as_f64().is_some());

    let spans = eventually("the worker span", Duration::from_secs(5), || async {
        let spans = captured.spans_of_trace(TRACE_ID);
        spans.iter().any(|s| s.name == "process order").then_some(spans)
    })
    .await;
    let server = spans
        .iter()
        .find(|s| s.name == "POST /checkout")
        .expect("checkout server span");
    assert_eq!(server.service, "recordstore-api");
    assert_eq!(server.kind, "server");
    assert_eq!(server.parent_span_id.as_deref(), Some(PARENT_SPAN));
    assert_eq!(server.attribute_str("correlation_id"), Some(correlation_id.as_str()));
    assert_eq!(server.attribute_str("http.route"), Some("/checkout"));
    assert_eq!(server.attribute_str("http.request.method"), Some("POST"));
    assert_eq!(
        server.attributes.get("http.response.status_code"),
        Some(&serde_json::json!(202))
    );
    let worker = spans.iter().find(|s| s.name == "process order").unwrap();
    assert_eq!(worker.service, "recordstore-worker");
    assert_eq!(worker.trace_id, TRACE_ID);
    assert_eq!(
        worker.parent_span_id.as_deref(),
        Some(server.span_id.as_str()),
        "worker span hangs off the checkout"
    );
    assert_eq!(worker.attribute_str("correlation_id"), Some(correlation_id.as_str()));
    let db_span = spans
        .iter()
        .find(|s| s.attribute_str("db.system.name").is_some())
        .expect("a database span");
    assert!(db_span.attribute_str("db.operation.name").is_some(), "{db_span:?}");
    t.app.shutdown().await.unwrap();
}
on_both_databases!(checkout_completes_with_correlation_and_trace_ids_everywhere);

async fn a_request_without_ids_gets_fresh_ones_echoed(db: Db) {
    let t = spawn_app(db, Role::Api).await;
    for bad in [None, Some("has spaces"), Some("x".repeat(129).as_str())] {
        let mut request = t.client.get(t.url("/products/1"));
        if let Some(bad) = bad {
            request = request
                .header("x-correlation-id", bad)
                .header("traceparent", "00-zz-yy-01");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-correlation-id"].to_str().unwrap();
        assert!(
            id.starts_with("rs-") && Some(id) != bad,
            "generated id expected, got {id}"
        );
        let tp = response.headers()["traceparent"].to_str().unwrap();
        assert!(recordstore::telemetry::TraceParent::parse(tp).is_some(), "{tp}");
    }
    t.app.shutdown().await.unwrap();
}
on_both_databases!(a_request_without_ids_gets_fresh_ones_echoed);
