//! Jaeger v2's API v3 answers: OTLP JSON (`resourceSpans` → `scopeSpans` → `spans`), decoded
//! as untrusted data into the same [`TraceSpan`]s the v1 API gives.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::{TraceSpan, normalize_id};

#[derive(Deserialize)]
struct V3Envelope {
    result: Option<V3Traces>,
}

#[derive(Deserialize)]
struct V3Traces {
    #[serde(rename = "resourceSpans", default)]
    resource_spans: Vec<V3ResourceSpans>,
}

#[derive(Deserialize)]
struct V3ResourceSpans {
    #[serde(default)]
    resource: Option<V3Resource>,
    #[serde(rename = "scopeSpans", default)]
    scope_spans: Vec<V3ScopeSpans>,
}

#[derive(Deserialize)]
struct V3Resource {
    #[serde(default)]
    attributes: Vec<V3KeyValue>,
}

#[derive(Deserialize)]
struct V3ScopeSpans {
    #[serde(default)]
    spans: Vec<V3Span>,
}

#[derive(Deserialize)]
struct V3KeyValue {
    key: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct V3Span {
    #[serde(rename = "traceId", default)]
    trace_id: String,
    #[serde(rename = "spanId", default)]
    span_id: String,
    #[serde(rename = "parentSpanId", default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Value,
    #[serde(rename = "startTimeUnixNano", default)]
    start_ns: Value,
    #[serde(rename = "endTimeUnixNano", default)]
    end_ns: Value,
    #[serde(default)]
    attributes: Vec<V3KeyValue>,
    #[serde(default)]
    status: Option<V3Status>,
}

#[derive(Deserialize)]
struct V3Status {
    #[serde(default)]
    code: Value,
}

/// The API v3 error body: `{"error": {"httpCode": 404, "message": "trace not found"}}`.
#[derive(Deserialize)]
pub(super) struct V3Error {
    pub(super) error: V3ErrorDetails,
}

#[derive(Deserialize)]
pub(super) struct V3ErrorDetails {
    #[serde(rename = "httpCode", default)]
    pub(super) http_code: u16,
    #[serde(default)]
    pub(super) message: String,
}

/// An id as OTLP JSON writes it (hex) or as proto3 JSON does (base64), as lower-case hex.
fn otlp_id(id: &str, width: usize) -> String {
    if id.len() == width && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return id.to_ascii_lowercase();
    }
    match base64::engine::general_purpose::STANDARD.decode(id) {
        Ok(bytes) if bytes.len() * 2 == width => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        _ => normalize_id(id, width),
    }
}

/// A 64-bit number written as a JSON string (proto3 JSON) or a number.
fn otlp_u64(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// An OTLP `AnyValue` as plain JSON: `{"intValue": "3"}` → 3.
fn otlp_value(value: &Value) -> Value {
    let Some(map) = value.as_object() else {
        return Value::Null;
    };
    if let Some(v) = map.get("stringValue") {
        v.clone()
    } else if let Some(v) = map.get("boolValue") {
        v.clone()
    } else if let Some(v) = map.get("intValue") {
        match v {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or_else(|_| v.clone()),
            other => other.clone(),
        }
    } else if let Some(v) = map.get("doubleValue") {
        v.clone()
    } else if let Some(v) = map.get("bytesValue") {
        v.clone()
    } else if let Some(Value::Array(values)) = map.get("arrayValue").and_then(|a| a.get("values")) {
        Value::Array(values.iter().map(otlp_value).collect())
    } else {
        Value::Null
    }
}

/// OTLP's span kinds by number (or proto enum name) as Jaeger's `span.kind` tag names them.
fn otlp_kind(kind: &Value) -> Option<&'static str> {
    let number = match kind {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => match s.as_str() {
            "SPAN_KIND_INTERNAL" => 1,
            "SPAN_KIND_SERVER" => 2,
            "SPAN_KIND_CLIENT" => 3,
            "SPAN_KIND_PRODUCER" => 4,
            "SPAN_KIND_CONSUMER" => 5,
            _ => return None,
        },
        _ => return None,
    };
    Some(match number {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => return None,
    })
}

/// Every span of an API v3 answer (`{"result": {"resourceSpans": …}}`), flattened like the
/// v1 API's: what the client does with a body, without the network (and what the fuzz
/// target feeds). Untrusted: no field is required, no number may overflow.
pub fn decode_v3_traces(body: &[u8]) -> Result<Vec<TraceSpan>, serde_json::Error> {
    let envelope: V3Envelope = serde_json::from_slice(body)?;
    let mut out = Vec::new();
    for resource in envelope.result.map(|r| r.resource_spans).unwrap_or_default() {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| otlp_value(&a.value).as_str().map(str::to_string))
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            let mut tags: BTreeMap<String, Value> = span
                .attributes
                .iter()
                .map(|a| (a.key.clone(), otlp_value(&a.value)))
                .collect();
            if let Some(kind) = otlp_kind(&span.kind) {
                tags.entry("span.kind".to_string()).or_insert_with(|| kind.into());
            }
            let code = span.status.map(|s| s.code).unwrap_or_default();
            let error = code == 2 || code == "STATUS_CODE_ERROR" || tags.get("error") == Some(&Value::Bool(true));
            let (start, end) = (otlp_u64(&span.start_ns), otlp_u64(&span.end_ns));
            out.push(TraceSpan {
                trace_id: otlp_id(&span.trace_id, 32),
                span_id: otlp_id(&span.span_id, 16),
                parent_span_id: (!span.parent_span_id.is_empty()).then(|| otlp_id(&span.parent_span_id, 16)),
                service: service.clone(),
                operation: span.name,
                start_us: start / 1000,
                duration_us: end.saturating_sub(start) / 1000,
                error,
                tags,
            });
        }
    }
    Ok(out)
}
