//! Checkout and orders. A checkout writes the order and its job in one transaction and
//! answers 202; the worker does the rest.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AppState, JsonBody, PathParam, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::store::{NewOrder, Order, order_status};
use crate::telemetry::http::RequestContext;

pub const MAX_QUANTITY: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    product_id: i64,
    quantity: i64,
}

/// The 202 answer to a checkout.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckoutAccepted {
    pub order_id: i64,
    pub status: String,
    pub correlation_id: String,
    pub trace_id: Option<String>,
}

pub async fn checkout(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<JsonBody<CheckoutRequest>, ApiError>,
) -> ApiResult<(StatusCode, Json<CheckoutAccepted>)> {
    let result = accept(&state, &ctx, body).await;
    let label = match &result {
        Ok(_) => "accepted",
        Err(ApiError::NotFound(_)) => "not_found",
        Err(ApiError::Conflict(_)) => "out_of_stock",
        Err(err) if err.status().is_client_error() => "invalid",
        Err(_) => "error",
    };
    state.metrics.checkouts.with(&[label]).inc();
    result
}

async fn accept(
    state: &AppState,
    ctx: &RequestContext,
    body: Result<JsonBody<CheckoutRequest>, ApiError>,
) -> ApiResult<(StatusCode, Json<CheckoutAccepted>)> {
    let JsonBody(body) = body?;
    if !(1..=MAX_QUANTITY).contains(&body.quantity) {
        return Err(ApiError::Unprocessable(format!(
            "quantity must be between 1 and {MAX_QUANTITY}, got {}",
            body.quantity
        )));
    }
    let product = state
        .store
        .get_product(body.product_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("product {} not found", body.product_id)))?;
    if product.stock < body.quantity {
        return Err(ApiError::Conflict(format!(
            "product {} has {} in stock, {} requested",
            product.id, product.stock, body.quantity
        )));
    }
    let new = NewOrder {
        product_id: product.id,
        quantity: body.quantity,
        amount_cents: product.price_cents * body.quantity,
        correlation_id: ctx.correlation_id.to_string(),
        trace_id: ctx.trace.map(|t| t.trace_id_hex()),
        traceparent: ctx.trace.map(|t| t.to_string()),
        max_attempts: state.max_attempts,
    };
    let order = state.store.create_order_with_job(&new).await?;
    state.jobs_ready.notify_one();
    state.metrics.order_transitions.with(&[order_status::PENDING]).inc();
    tracing::info!(
        order_id = order.id,
        product_id = product.id,
        quantity = body.quantity,
        "checkout accepted"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(CheckoutAccepted {
            order_id: order.id,
            status: order.status,
            correlation_id: order.correlation_id,
            trace_id: order.trace_id,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFilter {
    limit: Option<i64>,
    status: Option<String>,
    correlation_id: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<OrderFilter>,
) -> ApiResult<Json<Value>> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Unprocessable("limit must be 1..=500".into()));
    }
    if let Some(status) = &filter.status
        && !order_status::ALL.contains(&status.as_str())
    {
        return Err(ApiError::Unprocessable(format!(
            "status must be one of {:?}",
            order_status::ALL
        )));
    }
    let orders = state
        .store
        .list_orders(limit, filter.status.as_deref(), filter.correlation_id.as_deref())
        .await?;
    Ok(Json(json!({ "orders": orders, "count": orders.len() })))
}

pub async fn show(State(state): State<AppState>, PathParam(id): PathParam<i64>) -> ApiResult<Json<Order>> {
    state
        .store
        .get_order(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))
}
