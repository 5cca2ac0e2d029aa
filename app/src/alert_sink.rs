//! The stack's Alertmanager webhook receiver: every notification becomes one JSON log line on
//! stdout (so the log shipper carries alerts into Loki beside the app's own lines), and the
//! most recent ones are kept for `GET /alerts`, so a drill can show that a page was delivered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// Notifications kept in memory for `GET /alerts`.
const KEPT: usize = 1000;

pub const SERVICE: &str = "recordstore-alert-sink";

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<VecDeque<Value>>>);

impl Received {
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().expect("alert sink lock").iter().cloned().collect()
    }

    fn push(&self, entry: Value) {
        let mut kept = self.0.lock().expect("alert sink lock");
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(entry);
    }
}

/// `POST /alerts[/{receiver}]` takes Alertmanager's webhook payload (version 4);
/// `GET /alerts` lists what arrived, oldest first.
pub fn router(received: Received) -> Router {
    Router::new()
        .route("/alerts", post(receive_default).get(list))
        .route("/alerts/{receiver}", post(receive))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(|| async { "ok" }))
        .with_state(received)
}

async fn list(State(received): State<Received>) -> Json<Value> {
    Json(json!({ "notifications": received.all() }))
}

async fn receive_default(state: State<Received>, body: Json<Value>) -> (StatusCode, Json<Value>) {
    record(state, "default".to_string(), body)
}

async fn receive(state: State<Received>, Path(receiver): Path<String>, body: Json<Value>) -> (StatusCode, Json<Value>) {
    record(state, receiver, body)
}

fn record(State(received): State<Received>, path: String, Json(payload): Json<Value>) -> (StatusCode, Json<Value>) {
    let Some(alerts) = payload["alerts"].as_array() else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({ "error": "invalid_payload", "detail": "expected Alertmanager's webhook JSON with an `alerts` array" }),
            ),
        );
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for alert in alerts {
        let labels = &alert["labels"];
        let entry = json!({
            "received_at_ms": now_ms,
            "path": path,
            "receiver": payload["receiver"],
            "status": alert["status"],
            "alertname": labels["alertname"],
            "severity": labels["severity"],
            "labels": labels,
            "annotations": alert["annotations"],
            "starts_at": alert["startsAt"],
            "ends_at": alert["endsAt"],
        });
        let line = json!({
            "timestamp": crate::clock::rfc3339_ms(now_ms as i64),
            "level": "warn",
            "service": SERVICE,
            "message": format!("alert {} {}", labels["alertname"].as_str().unwrap_or("?"), alert["status"].as_str().unwrap_or("?")),
            "alertname": labels["alertname"],
            "alert_status": alert["status"],
            "severity": labels["severity"],
            "receiver": payload["receiver"],
        });
        println!("{line}");
        received.push(entry);
    }
    (StatusCode::OK, Json(json!({ "received": alerts.len() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_each_alert_of_a_notification_and_rejects_other_bodies() {
        let received = Received::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, router(received.clone())).into_future());
        let client = reqwest::Client::new();
        let payload = json!({
            "version": "4", "status": "firing", "receiver": "webhook-page",
            "alerts": [
                { "status": "firing", "labels": { "alertname": "DatabaseDown", "severity": "page" },
                  "annotations": { "summary": "db" }, "startsAt": "2026-11-21T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z" },
                { "status": "resolved", "labels": { "alertname": "JobBacklog", "severity": "ticket" },
                  "annotations": {}, "startsAt": "2026-11-21T09:00:00Z", "endsAt": "2026-11-21T09:30:00Z" }
            ]
        });
        let response = client
            .post(format!("http://{addr}/alerts/page"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let bad = client
            .post(format!("http://{addr}/alerts"))
            .json(&json!({ "hello": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 422);
        let listed: Value = client
            .get(format!("http://{addr}/alerts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let notes = listed["notifications"].as_array().unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0]["alertname"], "DatabaseDown");
        assert_eq!(notes[0]["path"], "page");
        assert_eq!(notes[0]["receiver"], "webhook-page");
        assert_eq!(notes[1]["status"], "resolved");
    }
}
