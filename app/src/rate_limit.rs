//! API protection: a token bucket per client address on the write endpoints (`POST /checkout`,
//! `POST /orders`, `POST /products`). A client over its rate gets 429 with `Retry-After` and a
//! JSON body, and `recordstore_rate_limited_total{route}` counts it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// Requests per second a client may make to the write endpoints, and how many at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// How many clients are remembered before idle ones (full buckets) are forgotten.
const MAX_CLIENTS: usize = 10_000;

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `client`'s bucket at `now`, or says how long until one is there.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.limit;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst);
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - *tokens) / per_second).min(3600.0)))
        }
    }
}

/// The write routes the limit applies to, as their metric label.
fn write_route(method: &Method, path: &str) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    match path {
        "/checkout" => Some("/checkout"),
        "/orders" => Some("/orders"),
        "/products" => Some("/products"),
        _ => None,
    }
}

pub async fn limit_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (Some(limiter), Some(route)) = (&state.rate_limiter, write_route(request.method(), request.uri().path()))
    else {
        return next.run(request).await;
    };
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match limiter.take(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            state.metrics.rate_limited.with(&[route]).inc();
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            let body = json!({
                "error": "rate_limited",
                "detail": format!(
                    "more than {} writes per second from {client}; retry after {retry_after} s",
                    limiter.limit.per_second
                ),
            });
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after.to_string())],
                axum::Json(body),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let (client, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(client, t0).is_ok());
        }
        let wait = limiter.take(client, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(limiter.take(other, t0).is_ok(), "each client has its own bucket");
        assert!(
            limiter.take(client, t0 + Duration::from_millis(100)).is_ok(),
            "refilled at 10/s"
        );
        assert!(limiter.take(client, t0 + Duration::from_millis(100)).is_err());
        // Idle for long: back to the burst, not more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.take(client, later).is_ok());
        }
        assert!(limiter.take(client, later).is_err());
    }

    #[test]
    fn only_writes_are_limited() {
        assert_eq!(write_route(&Method::POST, "/checkout"), Some("/checkout"));
        assert_eq!(write_route(&Method::GET, "/checkout"), None);
        assert_eq!(write_route(&Method::GET, "/products"), None);
        assert_eq!(write_route(&Method::POST, "/admin/faults"), None);
    }
}
