//! Admin fault injection and the invariant audit, behind `RECORDSTORE_ADMIN_TOKEN` (absent: the routes answer 404).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{AppState, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::payment::Faults;
use crate::store::AuditReport;

fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::NotFound(
            "admin API is disabled; set RECORDSTORE_ADMIN_TOKEN to enable it".into(),
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-admin-token").and_then(|v| v.to_str().ok()));
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("wrong admin token".into())),
        None => Err(ApiError::Unauthorized(
            "send Authorization: Bearer <RECORDSTORE_ADMIN_TOKEN>".into(),
        )),
    }
}

/// Compares a token sent to the expected one in time that depends only on the length of what
/// was sent: no early return on a length mismatch or at the first differing byte.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = u64::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        diff |= u64::from(g ^ expected[i % expected.len()]);
    }
    diff == 0
}

pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Faults>> {
    authorize(&state, &headers)?;
    Ok(Json(Faults::load(&state.store).await?))
}

pub async fn set(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody<Faults>, ApiError>,
) -> ApiResult<Json<Faults>> {
    authorize(&state, &headers)?;
    let JsonBody(faults) = body?;
    faults.validate().map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    faults.save(&state.store).await?;
    state.payments.invalidate_faults();
    tracing::warn!(
        payment_latency_ms = faults.payment_latency_ms,
        payment_failure_rate = faults.payment_failure_rate,
        "faults injected"
    );
    Ok(Json(faults))
}

pub async fn reset(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Faults>> {
    authorize(&state, &headers)?;
    Faults::reset(&state.store).await?;
    state.payments.invalidate_faults();
    tracing::info!("faults cleared");
    Ok(Json(Faults::default()))
}

/// The invariants of orders, money and stock, checked now (read-only): the drill ledger's
/// source of truth. Always 200 when the audit ran; `clean` says whether it passed.
pub async fn audit(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<AuditReport>> {
    authorize(&state, &headers)?;
    Ok(Json(state.store.audit().await?))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        for other in [&b"s3cre"[..], b"s3cret!", b"S3cret", b"", b"s3cret\0", b"s3crets3cret"] {
            assert!(!constant_time_eq(other, b"s3cret"), "{other:?}");
        }
        assert!(!constant_time_eq(b"", b""), "no token is never a match");
    }
}
