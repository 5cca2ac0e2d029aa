//! Every kind of bad input gets its 4xx status and a JSON `{error, detail}` body; none
//! gets a 500.

use recordstore::Role;
use recordstore::error::ErrorBody;

use crate::helpers::{Db, spawn_app};
use crate::on_both_databases;

async fn bad_input_gets_a_json_4xx_never_a_500(db: Db) {
    let t = spawn_app(db, Role::Api).await;
    let scarce = t.create_product("Only One Left", 1).await;
    let json = "application/json";
    // (what, method, path, content type, body, expected status)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, String, u16);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "POST",
            "/checkout",
            Some(json),
            "{\"product_id\": 1,".into(),
            400,
        ),
        ("not JSON at all", "POST", "/checkout", Some(json), "buy".into(), 400),
        (
            "wrong type",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": "one", "quantity": 1}"#.into(),
            422,
        ),
        (
            "missing field",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 1}"#.into(),
            422,
        ),
        (
            "unknown field",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 1, "quantity": 1, "x": 1}"#.into(),
            422,
        ),
        (
            "zero quantity",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 1, "quantity": 0}"#.into(),
            422,
        ),
        (
            "negative quantity",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 1, "quantity": -3}"#.into(),
            422,
        ),
        (
            "huge quantity",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 1, "quantity": 101}"#.into(),
            422,
        ),
        (
            "overflowing number",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 1, "quantity": 99999999999999999999}"#.into(),
            422,
        ),
        (
            "unknown product",
            "POST",
            "/checkout",
            Some(json),
            r#"{"product_id": 987654, "quantity": 1}"#.into(),
            404,
        ),
        (
            "out of stock",
            "POST",
            "/checkout",
            Some(json),
            format!(r#"{{"product_id": {scarce}, "quantity": 2}}"#),
            409,
        ),
        (
            "oversized body",
            "POST",
            "/checkout",
            Some(json),
            format!(r#"{{"product_id": 1, "quantity": 1, "pad": "{}"}}"#, "x".repeat(70_000)),
            413,
        ),
        (
            "no content type",
            "POST",
            "/checkout",
            None,
            r#"{"product_id": 1, "quantity": 1}"#.into(),
            415,
        ),
        (
            "orders alias validates too",
            "POST",
            "/orders",
            Some(json),
            r#"{"product_id": 1, "quantity": 0}"#.into(),
            422,
        ),
        (
            "non-numeric product id",
            "GET",
            "/products/abc",
            None,
            String::new(),
            400,
        ),
        (
            "unknown product id",
            "GET",
            "/products/987654",
            None,
            String::new(),
            404,
        ),
        ("unknown order id", "GET", "/orders/987654", None, String::new(), 404),
        ("bad limit", "GET", "/products?limit=-1", None, String::new(), 422),
        ("bad query", "GET", "/products?limit=lots", None, String::new(), 400),
        (
            "bad status filter",
            "GET",
            "/orders?status=shipped",
            None,
            String::new(),
            422,
        ),
        ("unknown route", "GET", "/nope", None, String::new(), 404),
        ("wrong method", "DELETE", "/products", None, String::new(), 405),
        (
            "duplicate product",
            "POST",
            "/products",
            Some(json),
            r#"{"title":"Only One Left","artist":"Test Artist","genre":"test","price_cents":1,"stock":1}"#.into(),
            409,
        ),
        (
            "negative price",
            "POST",
            "/products",
            Some(json),
            r#"{"title":"T","artist":"A","genre":"g","price_cents":-1,"stock":1}"#.into(),
            422,
        ),
        (
            "empty title",
            "POST",
            "/products",
            Some(json),
            r#"{"title":" ","artist":"A","genre":"g","price_cents":1,"stock":1}"#.into(),
            422,
        ),
        (
            "admin without token",
            "POST",
            "/admin/faults",
            Some(json),
            r#"{"payment_failure_rate": 0.5}"#.into(),
            401,
        ),
    ];
    for (what, method, path, content_type, body, expected) in cases {
        let mut request = t.client.request(method.parse().unwrap(), t.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let ct = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{what}: {method} {path} answered {status}: {text}");
        assert_eq!(ct.as_deref(), Some("application/json"), "{what}: content type");
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body {text:?}: {e}"));
        assert!(!body.error.is_empty() && !body.detail.is_empty(), "{what}: {body:?}");
    }
    let wrong_token = t
        .client
        .post(t.url("/admin/faults"))
        .bearer_auth("guess")
        .json(&serde_json::json!({ "payment_failure_rate": 0.5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    let bad_fault = t
        .client
        .post(t.url("/admin/faults"))
        .bearer_auth("test-token")
        .json(&serde_json::json!({ "payment_failure_rate": 2.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_fault.status(), 422);
    // No request above was counted as a server error.
    let metrics = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("recordstore_http_requests_total") && l.contains("status=\"5")),
        "{metrics}"
    );
    t.app.shutdown().await.unwrap();
}
on_both_databases!(bad_input_gets_a_json_4xx_never_a_500);

/// A client over its write rate gets 429 with `Retry-After` and a JSON body, makes no order,
/// is counted in a metric; reads are not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_write_rate_gets_429_and_makes_no_order() {
    let (url, dir) = crate::helpers::fresh_database(Db::Sqlite).await;
    let mut config = crate::helpers::test_config(&url);
    config.write_rate_limit = Some(recordstore::rate_limit::RateLimit {
        per_second: 0.01,
        burst: 2.0,
    });
    let t = crate::helpers::spawn_with(config, Role::Api, dir).await;
    // The product counts as the first write.
    let product = t.create_product("Rationed Pressing", 10).await;
    assert_eq!(t.checkout(product, 1).await.status(), 202);
    let limited = t.checkout(product, 1).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: ErrorBody = limited.json().await.unwrap();
    assert_eq!(body.error, "rate_limited");
    assert!(body.detail.contains("127.0.0.1"), "{}", body.detail);
    let (status, orders) = t.get_json("/orders").await;
    assert_eq!(
        (status, orders["count"].as_i64()),
        (200, Some(1)),
        "the refused checkout made no order"
    );
    for _ in 0..5 {
        assert_eq!(t.get_json("/products").await.0, 200, "reads are not limited");
    }
    let metrics = t
        .client
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("recordstore_rate_limited_total{route=\"/checkout\"} 1"),
        "{metrics}"
    );
    t.app.shutdown().await.unwrap();
}
