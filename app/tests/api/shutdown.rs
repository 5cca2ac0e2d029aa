//! Graceful shutdown: the job in hand is finished, and the binary exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recordstore::Role;
use recordstore::store::Store;

use crate::helpers::{Db, TempDir, eventually, spawn_app};
use crate::on_both_databases;

async fn shutdown_finishes_the_job_in_hand(db: Db) {
    let t = spawn_app(db, Role::ApiAndWorker).await;
    let slow = t
        .client
        .post(t.url("/admin/faults"))
        .bearer_auth("test-token")
        .json(&serde_json::json!({ "payment_latency_ms": 600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    let response = t.checkout(1, 1).await;
    let order_id = response.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_i64()
        .unwrap();
    eventually("the worker to start on the order", Duration::from_secs(10), || async {
        (t.order(order_id).await.status == "processing").then_some(())
    })
    .await;
    let url = t.database_url.clone();
    t.app.shutdown().await.unwrap();
    let store = Store::connect_lazy(&url, 1).unwrap();
    let order = store.get_order(order_id).await.unwrap().unwrap();
    assert_eq!(
        order.status, "completed",
        "the job in hand was finished before exit: {order:?}"
    );
    assert_eq!(store.queue_stats().await.unwrap().depth, 0);
    store.close().await;
}
on_both_databases!(shutdown_finishes_the_job_in_hand);

#[test]
fn the_binary_exits_zero_on_sigterm_after_logging_json() {
    let dir = TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_recordstore"))
        .arg("serve")
        .env("DATABASE_URL", format!("sqlite://{}", dir.0.join("store.db").display()))
        .env("RECORDSTORE_LISTEN", "127.0.0.1:0")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start recordstore");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("recordstore listening"))
        .expect("a 'listening' log line");
    let line: serde_json::Value = serde_json::from_str(&listening).expect("log lines are JSON");
    assert_eq!(line["service"], "recordstore-api");
    assert_eq!(line["level"], "info");
    let addr = line["addr"].as_str().unwrap().to_string();
    let health = std::net::TcpStream::connect(&addr);
    assert!(health.is_ok(), "listening on {addr}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "recordstore did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(rest.iter().any(|l| l.contains("recordstore stopped")), "{rest:?}");
}
