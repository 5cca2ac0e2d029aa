//! Jaeger's query APIs. Jaeger v2's documented API v3 first: `GET /api/v3/traces/{id}`,
//! `GET /api/v3/traces?query.…` and `GET /api/v3/services`, answering OTLP JSON
//! (`{"result": {"resourceSpans": …}}`: hex ids, nanosecond times as strings, typed
//! attribute values, status code 2 for an error); an unknown trace or an empty search is a
//! 404 whose `{"error": {"httpCode", "message"}}` arrives as `text/plain`.
//!
//! Jaeger 1.x has no v3 routes (an unknown route answers a plain 404): the client then
//! falls back to the v1 JSON API, and remembers. There, times are microseconds; tags are
//! typed (string, bool, int64, float64, binary); older servers omit empty
//! `references`/`tags`/`logs` and newer ones send them empty; an unknown trace is a 404 whose
//! JSON envelope arrives as `text/plain`; a 128-bit id whose high half is zero may be written
//! as 16 hex characters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BackendError, get, get_json, http_client};

mod v3;

use v3::V3Error;
pub use v3::decode_v3_traces;

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
pub fn decode_traces(body: &[u8]) -> Result<Vec<TraceSpan>, serde_json::Error> {
    let envelope: Envelope = serde_json::from_slice(body)?;
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

// ---- API v3 (Jaeger v2): OTLP JSON ----

/// Which query API the server answered: not yet known, v3 (Jaeger v2), or only v1.
const API_UNKNOWN: u8 = 0;
const API_V3: u8 = 3;
const API_V1: u8 = 1;

/// A v3 answer: spans, "none" (the gateway's own 404), or "no such route" (Jaeger 1.x).
enum V3Answer {
    Spans(Vec<TraceSpan>),
    None,
    NoRoute,
}

pub struct JaegerClient {
    base: String,
    http: reqwest::Client,
    api: AtomicU8,
}

impl JaegerClient {
    pub fn new(base: &str) -> JaegerClient {
        JaegerClient {
            base: base.trim_end_matches('/').to_string(),
            http: http_client(),
            api: AtomicU8::new(API_UNKNOWN),
        }
    }

    /// Whether to ask API v3 first (until a server shows it has no v3 routes).
    fn try_v3(&self) -> bool {
        self.api.load(Ordering::Relaxed) != API_V1
    }

    /// Reads a v3 answer; a 404 that is not the gateway's own error means the route is unknown.
    async fn v3_get(&self, path: &str, query: &[(&str, String)]) -> Result<V3Answer, BackendError> {
        let url = format!("{}{path}", self.base);
        let (status, _content_type, body) = get(&self.http, BACKEND, &url, query).await?;
        let gateway_error: Option<V3Error> = serde_json::from_str(&body).ok();
        let answer = match (status, gateway_error) {
            (404, Some(e)) if e.error.http_code == 404 || e.error.http_code == 0 => V3Answer::None,
            (404 | 405 | 501, None) => V3Answer::NoRoute,
            (200, _) => V3Answer::Spans(decode_v3_traces(body.as_bytes()).map_err(|e| BackendError::Decode {
                backend: BACKEND,
                url: url.clone(),
                reason: e.to_string(),
            })?),
            (_, Some(e)) => {
                return Err(BackendError::Api {
                    backend: BACKEND,
                    url,
                    status,
                    body: e.error.message,
                });
            }
            (_, None) => {
                return Err(BackendError::Api {
                    backend: BACKEND,
                    url,
                    status,
                    body: body.trim().to_string(),
                });
            }
        };
        if !matches!(answer, V3Answer::NoRoute) {
            self.api.store(API_V3, Ordering::Relaxed);
        }
        Ok(answer)
    }

    /// The services Jaeger has spans of (`GET /api/v3/services`, else `/api/services`).
    pub async fn services(&self) -> Result<Vec<String>, BackendError> {
        if self.try_v3() {
            let url = format!("{}/api/v3/services", self.base);
            let (status, _content_type, body) = get(&self.http, BACKEND, &url, &[]).await?;
            #[derive(serde::Deserialize)]
            struct Services {
                #[serde(default)]
                services: Vec<String>,
            }
            match status {
                200 => {
                    self.api.store(API_V3, Ordering::Relaxed);
                    let services: Services = serde_json::from_str(&body).map_err(|e| BackendError::Decode {
                        backend: BACKEND,
                        url,
                        reason: e.to_string(),
                    })?;
                    return Ok(services.services);
                }
                404 | 405 | 501 if serde_json::from_str::<V3Error>(&body).is_err() => {
                    self.api.store(API_V1, Ordering::Relaxed);
                }
                _ => {
                    return Err(BackendError::Api {
                        backend: BACKEND,
                        url,
                        status,
                        body: body.trim().to_string(),
                    });
                }
            }
        }
        #[derive(serde::Deserialize)]
        struct Services {
            data: Option<Vec<String>>,
        }
        let url = format!("{}/api/services", self.base);
        let services: Services = get_json(&self.http, BACKEND, &url, &[]).await?;
        Ok(services.data.unwrap_or_default())
    }

    /// The trace's spans, or `None` when Jaeger does not know it (yet).
    pub async fn trace(&self, trace_id: &str) -> Result<Option<Vec<TraceSpan>>, BackendError> {
        if self.try_v3() {
            let path = format!("/api/v3/traces/{}", normalize_id(trace_id, 32));
            match self.v3_get(&path, &[]).await? {
                V3Answer::Spans(spans) if spans.is_empty() => return Ok(None),
                V3Answer::Spans(spans) => return Ok(Some(spans)),
                V3Answer::None => return Ok(None),
                V3Answer::NoRoute => self.api.store(API_V1, Ordering::Relaxed),
            }
        }
        Ok(self.trace_v1(trace_id).await?.map(|t| flatten(&t)))
    }

    /// `GET /api/traces/{id}` (the v1 JSON API).
    async fn trace_v1(&self, trace_id: &str) -> Result<Option<RawTrace>, BackendError> {
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

    /// Ids (32 hex characters) of traces of `service` whose spans carry the attribute
    /// `key=value`, started within the last two days.
    pub async fn find_by_tag(
        &self,
        service: &str,
        key: &str,
        value: &str,
        limit: usize,
    ) -> Result<Vec<String>, BackendError> {
        let attributes = serde_json::json!({ key: value }).to_string();
        if self.try_v3() {
            let now = recordstore::clock::now_micros();
            // The snake_case names: every v2 release accepts them (newer ones also camelCase).
            let query = [
                ("query.service_name", service.to_string()),
                ("query.attributes", attributes.clone()),
                (
                    "query.start_time_min",
                    recordstore::clock::rfc3339_micros(now - 2 * 86_400 * 1_000_000),
                ),
                (
                    "query.start_time_max",
                    recordstore::clock::rfc3339_micros(now + 60 * 1_000_000),
                ),
                ("query.search_depth", limit.to_string()),
            ];
            match self.v3_get("/api/v3/traces", &query).await? {
                V3Answer::Spans(spans) => {
                    let mut ids: Vec<String> = Vec::new();
                    for s in spans {
                        if !ids.contains(&s.trace_id) {
                            ids.push(s.trace_id);
                        }
                    }
                    ids.truncate(limit);
                    return Ok(ids);
                }
                V3Answer::None => return Ok(Vec::new()),
                V3Answer::NoRoute => self.api.store(API_V1, Ordering::Relaxed),
            }
        }
        let url = format!("{}/api/traces", self.base);
        let query = [
            ("service", service.to_string()),
            ("tags", attributes),
            ("limit", limit.to_string()),
            ("lookback", "2d".to_string()),
        ];
        let envelope: Envelope = get_json(&self.http, BACKEND, &url, &query).await?;
        Ok(envelope
            .data
            .unwrap_or_default()
            .iter()
            .map(|t| normalize_id(&t.trace_id, 32))
            .collect())
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

    /// API v3's answer as Jaeger v2's gateway writes it (its GetTrace snapshot's shape, with
    /// the fields a real span carries): hex ids, times as strings, typed attributes.
    #[test]
    fn api_v3_otlp_json_is_read() {
        let body = br#"{"result":{"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"recordstore-api"}}]},
            "scopeSpans":[{"scope":{"name":"recordstore"},"spans":[
              {"traceId":"0000000000000000aaaabbbbccccdddd","spanId":"0000000000000002","parentSpanId":"0000000000000001",
               "name":"POST /checkout","kind":2,"startTimeUnixNano":"1700000000000001000","endTimeUnixNano":"1700000000002501000",
               "attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}},
                             {"key":"correlation_id","value":{"stringValue":"c-1"}},
                             {"key":"ratio","value":{"doubleValue":0.5}},{"key":"ok","value":{"boolValue":false}}],
               "status":{"code":2,"message":"boom"}},
              {"traceId":"qqq7u8zM3d0AAAAAAAAAAQ==","spanId":"AAAAAAAAAAM=","name":"x","status":{}}]}]}]}}"#;
        let spans = decode_v3_traces(body).unwrap();
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s.trace_id, "0000000000000000aaaabbbbccccdddd");
        assert_eq!(s.parent_span_id.as_deref(), Some("0000000000000001"));
        assert_eq!(s.service, "recordstore-api");
        assert_eq!((s.start_us, s.duration_us), (1_700_000_000_000_001, 2_500));
        assert!(s.error);
        assert_eq!(s.tags["http.response.status_code"], 500);
        assert_eq!(s.tags["correlation_id"], "c-1");
        assert_eq!(s.tags["span.kind"], "server");
        assert_eq!(s.tags["ratio"], 0.5);
        // proto3 JSON's base64 ids read as the same hex; no parent, no times, no error.
        assert_eq!(spans[1].trace_id, "aaaabbbbccccdddd0000000000000001");
        assert_eq!(spans[1].span_id, "0000000000000003");
        assert!(spans[1].parent_span_id.is_none() && !spans[1].error && spans[1].duration_us == 0);
    }

    #[test]
    fn api_v3_answers_without_a_result_or_with_hostile_numbers_do_not_fail() {
        assert!(decode_v3_traces(b"{}").unwrap().is_empty());
        assert!(decode_v3_traces(br#"{"result":{}}"#).unwrap().is_empty());
        let odd = br#"{"result":{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"99999999999999999999",
            "endTimeUnixNano":1,"kind":"SPAN_KIND_CLIENT","status":{"code":"STATUS_CODE_ERROR"},"attributes":[{"key":"k"}]}]}]}]}}"#;
        let spans = decode_v3_traces(odd).unwrap();
        assert_eq!(spans[0].duration_us, 0);
        assert!(spans[0].error);
        assert_eq!(spans[0].tags["span.kind"], "client");
        assert!(decode_v3_traces(b"not json").is_err());
    }
}
