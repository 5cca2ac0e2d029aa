//! Catalogue reads and writes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, JsonBody, PathParam, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::store::{NewProduct, Product};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list(State(state): State<AppState>, QueryParams(page): QueryParams<Page>) -> ApiResult<Response> {
    let limit = page.limit.unwrap_or(50);
    let offset = page.offset.unwrap_or(0);
    if !(1..=500).contains(&limit) || offset < 0 {
        return Err(ApiError::Unprocessable("limit must be 1..=500 and offset ≥ 0".into()));
    }
    let body = match state.catalogue.get(limit, offset) {
        Some(body) => body,
        None => {
            let products = state.store.list_products(limit, offset).await?;
            let body = Bytes::from(json!({ "products": products, "count": products.len() }).to_string());
            state.catalogue.put(limit, offset, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn show(State(state): State<AppState>, PathParam(id): PathParam<i64>) -> ApiResult<Json<Product>> {
    state
        .store
        .get_product(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("product {id} not found")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    title: String,
    artist: String,
    genre: String,
    price_cents: i64,
    stock: i64,
}

pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateProduct>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    let text_ok = |s: &str| !s.trim().is_empty() && s.chars().count() <= 200;
    if !(text_ok(&body.title) && text_ok(&body.artist) && text_ok(&body.genre)) {
        return Err(ApiError::Unprocessable(
            "title, artist and genre must be 1 to 200 characters".into(),
        ));
    }
    if !(0..=100_000_000).contains(&body.price_cents) || !(0..=1_000_000).contains(&body.stock) {
        return Err(ApiError::Unprocessable(
            "price_cents must be 0..=100000000 and stock 0..=1000000".into(),
        ));
    }
    let new = NewProduct {
        title: body.title.trim().to_string(),
        artist: body.artist.trim().to_string(),
        genre: body.genre.trim().to_string(),
        price_cents: body.price_cents,
        stock: body.stock,
    };
    let product = state
        .store
        .create_product(&new)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("{:?} by {:?} already exists", new.title, new.artist)))?;
    state.catalogue.clear();
    tracing::info!(product_id = product.id, "product created");
    Ok((StatusCode::CREATED, Json(product)))
}
