//! Liveness, readiness, health with dependencies, metrics, and the trace/error test routes.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;
use crate::metrics::Format;
use crate::telemetry::http::RequestContext;

const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Result of pinging the database within [`DB_CHECK_TIMEOUT`].
async fn check_database(state: &AppState) -> (bool, serde_json::Value) {
    let started = Instant::now();
    let result = match tokio::time::timeout(DB_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} ms", DB_CHECK_TIMEOUT.as_millis())),
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    state
        .metrics
        .db_up
        .with(&[])
        .set(if result.is_ok() { 1.0 } else { 0.0 });
    match result {
        Ok(()) => (
            true,
            json!({ "status": "up", "backend": state.store.backend(), "latency_ms": latency_ms }),
        ),
        Err(error) => (
            false,
            json!({ "status": "down", "backend": state.store.backend(), "error": error }),
        ),
    }
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (up, database) = check_database(&state).await;
    if up {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": { "database": database } })),
        )
            .into_response()
    } else {
        tracing::warn!(dependency = "database", "not ready: database unreachable");
        let body = json!({
            "status": "not_ready",
            "failing": ["database"],
            "checks": { "database": database },
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

pub async fn health(State(state): State<AppState>) -> Response {
    let (up, database) = check_database(&state).await;
    let jobs = match tokio::time::timeout(DB_CHECK_TIMEOUT, state.store.queue_stats()).await {
        Ok(Ok(q)) => {
            json!({ "status": "up", "queue_depth": q.depth, "oldest_age_seconds": q.oldest_age_ms as f64 / 1000.0 })
        }
        _ => json!({ "status": "unknown" }),
    };
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if up { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "database": database,
            "jobs": jobs,
            "payment_circuit": { "state": state.payments.breaker_state() },
            "db_pool": state.store.pool_stats(),
        },
    });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = state.metrics.gather(&state.store, format).await;
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Makes a small trace (a parent with two children) to check the tracing pipeline.
pub async fn trace_test(Extension(ctx): Extension<RequestContext>) -> Json<serde_json::Value> {
    use tracing::Instrument;
    async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        tracing::info!("trace test: first step");
    }
    .instrument(tracing::info_span!("trace-test step", step = 1))
    .await;
    async {
        tokio::time::sleep(Duration::from_millis(3)).await;
        tracing::info!("trace test: second step");
    }
    .instrument(tracing::info_span!("trace-test step", step = 2))
    .await;
    let trace_id = ctx.trace.map(|t| t.trace_id_hex());
    Json(json!({ "status": "ok", "trace_id": trace_id, "correlation_id": ctx.correlation_id.as_str() }))
}

/// Fails on purpose with a 500, to exercise error metrics, logs and alerts.
pub async fn error_test() -> ApiError {
    ApiError::Internal("deliberate failure from /error-test".into())
}
