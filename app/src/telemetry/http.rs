//! The request middleware that keeps the telemetry contract for every HTTP request:
//! correlation id in and out, W3C trace context continued and echoed, one server span,
//! one log line, and the golden-signal metrics with a trace-id exemplar.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;
use tracing::instrument::WithSubscriber;

use super::context::{CORRELATION_HEADER, CorrelationId, TRACEPARENT_HEADER, TraceParent};
use super::link_span;
use crate::clock::now_ms;
use crate::metrics::{Exemplar, Series};
use crate::state::AppState;

/// What handlers know about the request they serve.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub correlation_id: CorrelationId,
    pub request_id: String,
    /// This request's server span, as a `traceparent` would carry it.
    pub trace: Option<TraceParent>,
}

/// Decrements the in-flight gauge even when the request future is dropped mid-way.
struct InFlight(std::sync::Arc<Series>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.add(-1.0);
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let dispatch = state.telemetry.api.clone();
    handle(state, request, next).with_subscriber(dispatch).await
}

async fn handle(state: AppState, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let headers = request.headers();
    let correlation_id = headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(CorrelationId::parse)
        .unwrap_or_else(CorrelationId::generate);
    let parent = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let request_id = format!("req-{:016x}", rand::random::<u64>());
    let span = tracing::info_span!(
        "http request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        url.path = %request.uri().path(),
        url.scheme = "http",
        http.response.status_code = Empty,
        correlation_id = %correlation_id,
        request_id = %request_id,
        trace_id = Empty,
        span_id = Empty,
    );
    let trace = link_span(&span, parent);
    request.extensions_mut().insert(RequestContext {
        correlation_id: correlation_id.clone(),
        request_id,
        trace,
    });

    let in_flight = state.metrics.http_in_flight.with(&[]);
    in_flight.add(1.0);
    let guard = InFlight(in_flight);
    let mut response = next.run(request).instrument(span.clone()).await;
    drop(guard);

    let elapsed = started.elapsed();
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), duration_ms, "request completed");
        } else {
            tracing::info!(status = status.as_u16(), duration_ms, "request completed");
        }
    });

    let m = &state.metrics;
    m.http_requests.with(&[method, &route, status.as_str()]).inc();
    let exemplar = trace.filter(|t| t.sampled).map(|t| Exemplar {
        trace_id: t.trace_id_hex(),
        value: elapsed.as_secs_f64(),
        timestamp_ms: now_ms(),
    });
    m.http_duration
        .with(&[method, &route])
        .observe_with_exemplar(elapsed.as_secs_f64(), exemplar);
    // Hyper writes content-length later; the body knows its size now (streams do not).
    let declared = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if let Some(len) = declared.or_else(|| axum::body::HttpBody::size_hint(response.body()).exact()) {
        m.http_response_size.with(&[&route]).inc_by(len);
    }

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(correlation_id.as_str()) {
        headers.insert(CORRELATION_HEADER, value);
    }
    if let Some(value) = trace.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
        headers.insert(TRACEPARENT_HEADER, value);
    }
    response
}
