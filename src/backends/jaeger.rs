//! Jaeger's query API: `GET /api/traces/{id}` and the tag search. Times are microseconds;
//! tags are typed (string, bool, int64, float64, binary); older servers omit empty
//! `references`/`tags`/`logs` and newer ones send them empty; an unknown trace is a 404
//! whose JSON envelope arrives as `text/plain`; a 128-bit id whose high half is zero may be
//! written as 16 hex characters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BackendError, get, get_json, http_client};

const BACKEND: &str = "Jaeger";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    pub key: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub value: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reference {
    #[serde(rename = "refType")]
    pub ref_type: String,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpanLog {
    pub timestamp: u64,
    #[serde(default)]
    pub fields: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawSpan {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(rename = "operationName")]
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(rename = "startTime")]
    pub start_time_us: u64,
    #[serde(rename = "duration")]
    pub duration_us: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub logs: Vec<SpanLog>,
    #[serde(rename = "processID")]
    pub process_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Process {
    #[serde(rename = "serviceName")]
    pub service_name: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawTrace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(default)]
    pub spans: Vec<RawSpan>,
    #[serde(default)]
    pub processes: BTreeMap<String, Process>,
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<Vec<RawTrace>>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    msg: String,
}

/// A span with its service resolved, ids normalised to 32/16 hex characters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub operation: String,
    pub start_us: u64,
    pub duration_us: u64,
    pub error: bool,
    pub tags: BTreeMap<String, Value>,
}

/// Left-pads a hex id to `width` (Jaeger drops a zero high half of 128-bit ids).
pub fn normalize_id(id: &str, width: usize) -> String {
    let id = id.to_ascii_lowercase();
    if id.len() >= width {
        id
    } else {
        format!("{}{id}", "0".repeat(width - id.len()))
    }
}

/// The shortest form Jaeger accepts for a trace id: 16 characters when the high half is zero.
pub fn short_trace_id(id: &str) -> String {
    let id = normalize_id(id, 32);
    match id.strip_prefix("0000000000000000") {
        Some(low) => low.to_string(),
        None => id,
    }
}

/// Every span of a `GET /api/traces…` answer (Jaeger's JSON envelope), flattened: what the
/// client does with a body, without the network (and what the fuzz target feeds).
pub fn decode_traces(body: &[u8]) -> Result<Vec<TraceSpan>, String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(envelope.data.unwrap_or_default().iter().flat_map(flatten).collect())
}

pub fn flatten(trace: &RawTrace) -> Vec<TraceSpan> {
    trace
        .spans
        .iter()
        .map(|s| {
            let tags: BTreeMap<String, Value> = s.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
            let error = tags
                .get("error")
                .is_some_and(|v| v == &Value::Bool(true) || v == "true")
                || tags.get("otel.status_code").is_some_and(|v| v == "ERROR");
            TraceSpan {
                trace_id: normalize_id(&s.trace_id, 32),
                span_id: normalize_id(&s.span_id, 16),
                parent_span_id: s
                    .references
                    .iter()
                    .find(|r| r.ref_type == "CHILD_OF")
                    .map(|r| normalize_id(&r.span_id, 16)),
                service: trace
                    .processes
                    .get(&s.process_id)
                    .map(|p| p.service_name.clone())
                    .unwrap_or_default(),
                operation: s.operation_name.clone(),
                start_us: s.start_time_us,
                duration_us: s.duration_us,
                error,
                tags,
            }
        })
        .collect()
}

pub struct JaegerClient {
    base: String,
    http: reqwest::Client,
}

impl JaegerClient {
    pub fn new(base: &str) -> JaegerClient {
        JaegerClient {
            base: base.trim_end_matches('/').to_string(),
            http: http_client(),
        }
    }

    /// The services Jaeger has spans of (`GET /api/services`).
    pub async fn services(&self) -> Result<Vec<String>, BackendError> {
        #[derive(serde::Deserialize)]
        struct Services {
            data: Option<Vec<String>>,
        }
        let url = format!("{}/api/services", self.base);
        let services: Services = get_json(&self.http, BACKEND, &url, &[]).await?;
        Ok(services.data.unwrap_or_default())
    }

    /// The trace, or `None` when Jaeger does not know it (yet).
    pub async fn trace(&self, trace_id: &str) -> Result<Option<RawTrace>, BackendError> {
        let url = format!("{}/api/traces/{}", self.base, short_trace_id(trace_id));
        let (status, _content_type, body) = get(&self.http, BACKEND, &url, &[]).await?;
        // The 404 envelope is JSON whatever its Content-Type says: parse the body, not the header.
        let envelope: Result<Envelope, _> = serde_json::from_str(&body);
        match (status, envelope) {
            (404, _) => Ok(None),
            (200, Ok(envelope)) => Ok(envelope.data.and_then(|d| d.into_iter().next())),
            (
                _,
                Ok(Envelope {
                    errors: Some(errors), ..
                }),
            ) if !errors.is_empty() => {
                let text: Vec<String> = errors.iter().map(|e| format!("{} {}", e.code, e.msg)).collect();
                Err(BackendError::Api {
                    backend: BACKEND,
                    url,
                    status,
                    body: text.join("; "),
                })
            }
            (200, Err(e)) => Err(BackendError::Decode {
                backend: BACKEND,
                url,
                reason: e.to_string(),
            }),
            (_, _) => Err(BackendError::Api {
                backend: BACKEND,
                url,
                status,
                body: body.trim().to_string(),
            }),
        }
    }

    /// Traces of `service` whose spans carry the tag `key=value`.
    pub async fn find_by_tag(
        &self,
        service: &str,
        key: &str,
        value: &str,
        limit: usize,
    ) -> Result<Vec<RawTrace>, BackendError> {
        let url = format!("{}/api/traces", self.base);
        let tags = serde_json::json!({ key: value }).to_string();
        let query = [
            ("service", service.to_string()),
            ("tags", tags),
            ("limit", limit.to_string()),
            ("lookback", "2d".to_string()),
        ];
        let envelope: Envelope = get_json(&self.http, BACKEND, &url, &query).await?;
        Ok(envelope.data.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_normalise_and_shorten() {
        assert_eq!(normalize_id("ABC", 16), "0000000000000abc");
        assert_eq!(short_trace_id("0000000000000000aaaabbbbccccdddd"), "aaaabbbbccccdddd");
        assert_eq!(short_trace_id("aaaabbbbccccdddd"), "aaaabbbbccccdddd");
        assert_eq!(
            short_trace_id("10000000000000000000000000000001"),
            "10000000000000000000000000000001"
        );
    }

    #[test]
    fn old_style_spans_without_references_tags_or_logs_parse() {
        let raw: RawTrace = serde_json::from_str(
            r#"{"traceID":"aaaabbbbccccdddd","spans":[{"traceID":"aaaabbbbccccdddd","spanID":"1","operationName":"GET /",
               "startTime":1700000000000000,"duration":1500,"processID":"p1"}],"processes":{"p1":{"serviceName":"recordstore-api"}}}"#,
        )
        .unwrap();
        let spans = flatten(&raw);
        assert_eq!(spans[0].trace_id, "0000000000000000aaaabbbbccccdddd");
        assert_eq!(spans[0].span_id, "0000000000000001");
        assert_eq!(spans[0].service, "recordstore-api");
        assert!(spans[0].parent_span_id.is_none());
    }

    #[test]
    fn typed_tags_and_error_status_are_read() {
        let raw: RawTrace = serde_json::from_str(
            r#"{"traceID":"ab","spans":[{"traceID":"ab","spanID":"2","operationName":"x","references":[{"refType":"CHILD_OF","traceID":"ab","spanID":"1"}],
               "startTime":1,"duration":2,"processID":"p","logs":[],"tags":[
                 {"key":"http.response.status_code","type":"int64","value":500},{"key":"ratio","type":"float64","value":0.5},
                 {"key":"error","type":"bool","value":true},{"key":"blob","type":"binary","value":"AAE="}]}],
               "processes":{"p":{"serviceName":"s","tags":[]}}}"#,
        )
        .unwrap();
        let s = &flatten(&raw)[0];
        assert!(s.error);
        assert_eq!(s.parent_span_id.as_deref(), Some("0000000000000001"));
        assert_eq!(s.tags["http.response.status_code"], 500);
        assert_eq!(s.tags["ratio"], 0.5);
    }
}
