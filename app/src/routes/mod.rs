//! The HTTP API: routes and the extractors that turn bad input into JSON 4xx.

mod admin;
mod health;
pub mod orders;
mod products;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub use crate::state::AppState;

use crate::error::ApiError;

/// `axum::Json` with rejections as [`ApiError`] (400 syntax, 422 data, 413 size, 415 type).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// `axum::extract::Path` with rejections as a JSON 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

/// `axum::extract::Query` with rejections as a JSON 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// The full API, as `recordstore serve` runs it.
pub fn api_router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(products::show))
        .route("/orders", get(orders::list).post(orders::checkout))
        .route("/orders/{id}", get(orders::show))
        .route("/checkout", axum::routing::post(orders::checkout))
        .route("/trace-test", get(health::trace_test))
        .route("/error-test", get(health::error_test))
        .route("/admin/faults", get(admin::show).post(admin::set).delete(admin::reset))
        .route("/admin/audit", get(admin::audit))
        .merge(ops_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::limit_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::telemetry::http::observe,
        ))
        .with_state(state)
}

/// What `recordstore worker` serves: health and metrics only.
pub fn worker_router(state: AppState) -> Router {
    Router::new()
        .merge(ops_routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::telemetry::http::observe,
        ))
        .with_state(state)
}

fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
}

async fn index() -> Json<serde_json::Value> {
    Json(json!({
        "service": "recordstore",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": [
            "GET /health", "GET /health/live", "GET /health/ready", "GET /metrics",
            "GET /products", "POST /products", "GET /products/{id}",
            "GET /orders", "POST /orders", "GET /orders/{id}", "POST /checkout",
            "GET /trace-test", "GET /error-test",
            "GET|POST|DELETE /admin/faults (Authorization: Bearer $RECORDSTORE_ADMIN_TOKEN)",
            "GET /admin/audit (Authorization: Bearer $RECORDSTORE_ADMIN_TOKEN)"
        ]
    }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}; GET / lists the endpoints", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
