//! `/health/ready` follows the database: 503 naming it while PostgreSQL is stopped, 200
//! once it is back. Uses a PostgreSQL server of its own, so stopping it disturbs no other test.

use std::sync::Arc;
use std::time::Duration;

use recordstore::Role;

use crate::helpers::{eventually, spawn_with, test_config};
use crate::postgres::{PgServer, skip_or_fail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_when_postgres_stops_and_200_when_it_is_back() {
    let server = match PgServer::start_new() {
        Ok(server) => Arc::new(server),
        Err(why) => {
            skip_or_fail(&why);
            return;
        }
    };
    let url = server.create_database().await;
    let t = spawn_with(test_config(&url), Role::ApiAndWorker, None).await;
    let (status, body) = t.get_json("/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"]["status"], "up");

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    let body = eventually("readiness to fail", Duration::from_secs(15), || async {
        let (status, body) = t.get_json("/health/ready").await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["failing"], serde_json::json!(["database"]));
    assert_eq!(body["checks"]["database"]["status"], "down");
    assert!(
        body["checks"]["database"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(
        t.get_json("/health/live").await.0,
        200,
        "liveness does not depend on the database"
    );
    assert_eq!(t.get_json("/health").await.0, 503);
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
        metrics.contains("recordstore_db_up 0\n"),
        "db_up must report the outage"
    );

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.start())
        .await
        .unwrap()
        .expect("postgres restarts");
    eventually("readiness to recover", Duration::from_secs(20), || async {
        (t.get_json("/health/ready").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(
        t.checkout(1, 1).await.status(),
        202,
        "checkouts work again after the outage"
    );
    t.app.shutdown().await.unwrap();
}
