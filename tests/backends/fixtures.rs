//! Stand-ins for Jaeger and Loki, which have no package here, answering as their documented
//! HTTP APIs do. They are fed by the app's real output: the Jaeger fixture receives the
//! spans the app exports over OTLP/HTTP (protobuf) and serves them in Jaeger's query shape;
//! the Loki fixture takes pushes of the app's real JSON log lines as a shipper would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Jaeger JSON spans with their service names.
type SpansByTrace = BTreeMap<String, Vec<(Value, String)>>;
/// (labels, nanosecond timestamp, line) as pushed.
type PushedLine = (BTreeMap<String, String>, u128, String);
/// Streams keyed by their labels' JSON, for the answer.
type Grouped = BTreeMap<String, (BTreeMap<String, String>, Vec<(String, String)>)>;

/// Spans by trace id (32 hex), each as Jaeger's JSON span plus its service name.
#[derive(Clone, Default)]
pub struct JaegerFixture {
    traces: Arc<Mutex<SpansByTrace>>,
}

impl JaegerFixture {
    pub async fn start() -> (JaegerFixture, String) {
        let fixture = JaegerFixture::default();
        let app = Router::new()
            .route("/v1/traces", post(otlp_traces))
            .route("/api/traces/{id}", get(jaeger_trace))
            .route("/api/traces", get(jaeger_search))
            .route("/api/services", get(jaeger_services))
            .with_state(fixture.clone());
        let addr = serve(app).await;
        (fixture, format!("http://{addr}"))
    }

    pub fn span_count(&self) -> usize {
        self.traces.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// `GET /api/services`: the services that sent spans, in Jaeger's envelope.
async fn jaeger_services(State(fixture): State<JaegerFixture>) -> Json<Value> {
    let traces = fixture.traces.lock().unwrap();
    let mut services: Vec<String> = traces.values().flatten().map(|(_, service)| service.clone()).collect();
    services.sort();
    services.dedup();
    Json(json!({ "data": services, "total": services.len(), "limit": 0, "offset": 0, "errors": null }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tag(key: &str, value: &Option<AnyValue>) -> Value {
    let (kind, value) = match value {
        Some(AnyValue::StringValue(s)) => ("string", json!(s)),
        Some(AnyValue::BoolValue(b)) => ("bool", json!(b)),
        Some(AnyValue::IntValue(i)) => ("int64", json!(i)),
        Some(AnyValue::DoubleValue(d)) => ("float64", json!(d)),
        Some(AnyValue::BytesValue(b)) => ("binary", json!(hex(b))),
        _ => ("string", json!("")),
    };
    json!({ "key": key, "type": kind, "value": value })
}

async fn otlp_traces(State(fixture): State<JaegerFixture>, body: Bytes) -> Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut traces = fixture.traces.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref().and_then(|v| v.value.clone()) {
                Some(AnyValue::StringValue(s)) => Some(s),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let trace_id = hex(&span.trace_id);
                let mut tags: Vec<Value> = span
                    .attributes
                    .iter()
                    .map(|a| tag(&a.key, &a.value.as_ref().and_then(|v| v.value.clone())))
                    .collect();
                if span.status.as_ref().is_some_and(|s| s.code == 2) {
                    tags.push(json!({ "key": "error", "type": "bool", "value": true }));
                }
                let mut jaeger = json!({
                    "traceID": trace_id.trim_start_matches("0000000000000000"),
                    "spanID": hex(&span.span_id),
                    "operationName": span.name,
                    "startTime": span.start_time_unix_nano / 1000,
                    "duration": (span.end_time_unix_nano - span.start_time_unix_nano) / 1000,
                    "processID": "p1",
                    "warnings": null,
                });
                // Like older Jaeger versions: omit empty references, tags and logs.
                if !span.parent_span_id.is_empty() {
                    jaeger["references"] =
                        json!([{ "refType": "CHILD_OF", "traceID": trace_id, "spanID": hex(&span.parent_span_id) }]);
                }
                if !tags.is_empty() {
                    jaeger["tags"] = json!(tags);
                }
                traces.entry(trace_id).or_default().push((jaeger, service.clone()));
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
        .into_response()
}

async fn jaeger_trace(State(fixture): State<JaegerFixture>, Path(id): Path<String>) -> Response {
    let full = format!("{:0>32}", id.to_ascii_lowercase());
    let traces = fixture.traces.lock().unwrap();
    let Some(spans) = traces.get(&full) else {
        // Jaeger's 404: a JSON envelope sent as text/plain.
        let body = json!({ "data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{ "code": 404, "msg": "trace not found" }] });
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body.to_string(),
        )
            .into_response();
    };
    let mut processes = serde_json::Map::new();
    let mut out = Vec::new();
    for (i, (span, service)) in spans.iter().enumerate() {
        let pid = format!("p{}", i + 1);
        let mut span = span.clone();
        span["processID"] = json!(pid);
        processes.insert(pid, json!({ "serviceName": service, "tags": [] }));
        out.push(span);
    }
    Json(json!({ "data": [{ "traceID": id, "spans": out, "processes": processes, "warnings": null }], "total": 0, "limit": 0, "offset": 0, "errors": null }))
        .into_response()
}

/// `GET /api/traces?service=S&tags={"k":"v"}`: traces with a span of S carrying the tag.
async fn jaeger_search(State(fixture): State<JaegerFixture>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(service) = q.get("service") else {
        let body = json!({ "data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{ "code": 400, "msg": "parameter 'service' is required" }] });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    let tags: BTreeMap<String, String> = q
        .get("tags")
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let matching: Vec<String> = {
        let traces = fixture.traces.lock().unwrap();
        traces
            .iter()
            .filter(|(_, spans)| {
                spans.iter().any(|(span, s)| {
                    s == service
                        && tags.iter().all(|(k, v)| {
                            span["tags"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|t| t["key"] == k.as_str() && t["value"] == v.as_str())
                        })
                })
            })
            .map(|(id, _)| id.clone())
            .collect()
    };
    let mut data = Vec::new();
    for id in matching {
        let response = jaeger_trace(State(fixture.clone()), Path(id)).await;
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        data.extend(doc["data"].as_array().cloned().unwrap_or_default());
    }
    Json(json!({ "data": data, "total": data.len(), "limit": 0, "offset": 0, "errors": null })).into_response()
}

#[derive(Clone, Default)]
pub struct LokiFixture {
    streams: Arc<Mutex<Vec<PushedLine>>>,
}

impl LokiFixture {
    pub async fn start() -> (LokiFixture, String) {
        let fixture = LokiFixture::default();
        let app = Router::new()
            .route("/loki/api/v1/push", post(loki_push))
            .route("/loki/api/v1/query_range", get(loki_query_range))
            .route("/ready", get(|| async { "ready\n" }))
            .with_state(fixture.clone());
        let addr = serve(app).await;
        (fixture, format!("http://{addr}"))
    }
}

async fn loki_push(State(fixture): State<LokiFixture>, Json(body): Json<Value>) -> StatusCode {
    let mut streams = fixture.streams.lock().unwrap();
    for stream in body["streams"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = stream["stream"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        for value in stream["values"].as_array().into_iter().flatten() {
            let ts = value[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            streams.push((labels.clone(), ts, value[1].as_str().unwrap_or("").to_string()));
        }
    }
    StatusCode::NO_CONTENT
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Understands the LogQL the client builds: `{label=~"re"} |= "x" | json | field = "x"`.
async fn loki_query_range(State(fixture): State<LokiFixture>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let query = q.get("query").cloned().unwrap_or_default();
    if query.contains("timeout=") {
        return text(StatusCode::GATEWAY_TIMEOUT, "context deadline exceeded");
    }
    let Some((selector, pipeline)) = query.split_once('}') else {
        return text(
            StatusCode::BAD_REQUEST,
            "parse error at line 1, col 1: syntax error: unexpected $end, expecting } or ,",
        );
    };
    let Some((label, pattern)) = selector.trim_start_matches('{').split_once("=~") else {
        return text(
            StatusCode::BAD_REQUEST,
            "parse error : queries require at least one regexp or equality matcher",
        );
    };
    let prefix = pattern.trim_matches('"').trim_end_matches(".*").to_string();
    let needle = pipeline
        .split("|= \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string();
    let (start, end): (u128, u128) = (
        q.get("start").and_then(|v| v.parse().ok()).unwrap_or(0),
        q.get("end").and_then(|v| v.parse().ok()).unwrap_or(u128::MAX),
    );
    let streams = fixture.streams.lock().unwrap();
    let mut grouped: Grouped = BTreeMap::new();
    for (labels, ts, line) in streams.iter() {
        let matches = labels.get(label).is_some_and(|v| v.starts_with(&prefix))
            && line.contains(&needle)
            && serde_json::from_str::<Value>(line)
                .ok()
                .is_some_and(|v| v["correlation_id"] == needle.as_str())
            && (start..=end).contains(ts);
        if matches {
            let key = serde_json::to_string(labels).unwrap();
            grouped
                .entry(key)
                .or_insert_with(|| (labels.clone(), Vec::new()))
                .1
                .push((ts.to_string(), line.clone()));
        }
    }
    let result: Vec<Value> = grouped
        .into_values()
        .map(|(labels, values)| json!({ "stream": labels, "values": values }))
        .collect();
    Json(json!({ "status": "success", "data": { "resultType": "streams", "result": result, "stats": {} } }))
        .into_response()
}
