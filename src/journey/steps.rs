//! One purchase over HTTP: list products → view one → checkout → poll the order until the
//! worker finishes it. Every request carries the journey's correlation id and a traceparent
//! in the journey's trace, with a client span id per step.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Why a journey stopped before its end: the step that failed and what it got. It becomes the
/// journey's `detail`, data in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl From<&str> for StepError {
    fn from(message: &str) -> StepError {
        StepError(message.to_string())
    }
}

impl From<String> for StepError {
    fn from(message: String) -> StepError {
        StepError(message)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub name: String,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub duration_ms: f64,
    /// The client span this step was sent under (the traceparent's parent id).
    pub client_span_id: String,
    pub started_unix_nanos: u128,
    pub error: Option<String>,
    /// What the answer said that matters here (a poll: the order's status).
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyResult {
    pub correlation_id: String,
    pub trace_id: String,
    pub order_id: Option<i64>,
    /// `completed`, `failed` (the store failed the order), `timeout` or `error`.
    pub outcome: String,
    pub detail: Option<String>,
    pub steps: Vec<StepResult>,
    pub end_to_end_ms: f64,
    /// From the checkout to the order's final status, by the store's own timestamps (the
    /// client's polling gap is not in it).
    pub processing_ms: Option<f64>,
}

impl JourneyResult {
    pub fn succeeded(&self) -> bool {
        self.outcome == "completed"
    }
}

pub struct Journey<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a str,
    pub correlation_id: String,
    pub wait: Duration,
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Journey<'_> {
    pub async fn run(self) -> JourneyResult {
        let trace: u128 = rand::rng().random::<u128>() | 1;
        let trace_id = format!("{trace:032x}");
        let started = Instant::now();
        let mut result = JourneyResult {
            correlation_id: self.correlation_id.clone(),
            trace_id: trace_id.clone(),
            order_id: None,
            outcome: "error".into(),
            detail: None,
            steps: Vec::new(),
            end_to_end_ms: 0.0,
            processing_ms: None,
        };
        let outcome = self.purchase(&trace_id, &mut result).await;
        if let Err(StepError(detail)) = outcome {
            result.detail = Some(detail);
        }
        result.end_to_end_ms = started.elapsed().as_secs_f64() * 1000.0;
        result
    }

    async fn purchase(&self, trace_id: &str, r: &mut JourneyResult) -> Result<(), StepError> {
        let list = self
            .step(trace_id, r, "list products", "GET", "/products", None)
            .await?;
        let products = list["products"].as_array().cloned().unwrap_or_default();
        let in_stock: Vec<&Value> = products
            .iter()
            .filter(|p| p["stock"].as_i64().unwrap_or(0) > 0)
            .collect();
        let product = in_stock
            .get(rand::rng().random_range(0..in_stock.len().max(1)))
            .ok_or("no product in stock to buy")?;
        let id = product["id"].as_i64().ok_or("a product without an id")?;
        self.step(trace_id, r, "view product", "GET", &format!("/products/{id}"), None)
            .await?;
        let accepted = self
            .step(
                trace_id,
                r,
                "checkout",
                "POST",
                "/checkout",
                Some(json!({ "product_id": id, "quantity": 1 })),
            )
            .await?;
        let order_id = accepted["order_id"]
            .as_i64()
            .ok_or("checkout answered without an order_id")?;
        r.order_id = Some(order_id);
        let accepted_at = Instant::now();
        let deadline = accepted_at + self.wait;
        let mut delay = Duration::from_millis(20);
        loop {
            let order = self
                .step(trace_id, r, "poll order", "GET", &format!("/orders/{order_id}"), None)
                .await?;
            if let Some(last) = r.steps.last_mut() {
                last.note = order["status"].as_str().map(str::to_string);
            }
            match order["status"].as_str() {
                Some(status @ ("completed" | "failed")) => {
                    let store_side = Option::zip(order["created_at_ms"].as_i64(), order["updated_at_ms"].as_i64())
                        .map(|(created, updated)| (updated - created) as f64)
                        .filter(|ms| *ms >= 0.0);
                    r.processing_ms = Some(store_side.unwrap_or_else(|| accepted_at.elapsed().as_secs_f64() * 1000.0));
                    r.outcome = status.to_string();
                    if status == "failed" {
                        r.detail = order["failure_reason"]
                            .as_str()
                            .map(|s| format!("the store failed the order: {s}"));
                    }
                    return Ok(());
                }
                other => {
                    if Instant::now() + delay > deadline {
                        r.outcome = "timeout".into();
                        return Err(format!(
                            "order {order_id} still {} after {:?}: is the worker running?",
                            other.unwrap_or("?"),
                            self.wait
                        )
                        .into());
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// One request under its own client span; a non-2xx answer or a transport error ends
    /// the journey.
    async fn step(
        &self,
        trace_id: &str,
        r: &mut JourneyResult,
        name: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, StepError> {
        let span_id = format!("{:016x}", rand::rng().random::<u64>() | 1);
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), &url)
            .header("x-correlation-id", &self.correlation_id)
            .header("traceparent", format!("00-{trace_id}-{span_id}-01"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started_unix_nanos = unix_nanos();
        let started = Instant::now();
        let outcome = async {
            let response = request
                .send()
                .await
                .map_err(|e| (None, format!("{method} {url}: {e}")))?;
            let status = response.status().as_u16();
            let text = response
                .text()
                .await
                .map_err(|e| (Some(status), format!("{method} {url}: {e}")))?;
            if !(200..300).contains(&status) {
                return Err((
                    Some(status),
                    format!("{method} {path} answered {status}: {}", text.trim()),
                ));
            }
            let value =
                serde_json::from_str(&text).map_err(|e| (Some(status), format!("{method} {path}: not JSON: {e}")))?;
            Ok((status, value))
        }
        .await;
        let (status, error, value) = match outcome {
            Ok((status, value)) => (Some(status), None, Some(value)),
            Err((status, error)) => (status, Some(error), None),
        };
        r.steps.push(StepResult {
            name: name.into(),
            method: method.into(),
            path: path.into(),
            status,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            client_span_id: span_id,
            started_unix_nanos,
            error: error.clone(),
            note: None,
        });
        match (value, error) {
            (Some(value), _) => Ok(value),
            (None, error) => Err(StepError(error.unwrap_or_default())),
        }
    }
}
