//! In-memory copies of the app's own spans and log lines, for the embedded target and tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use serde::{Deserialize, Serialize};

/// A finished span as the app recorded it, with hex ids like Jaeger and OTLP JSON show.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapturedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub service: String,
    pub kind: String,
    pub start_unix_nanos: u128,
    pub end_unix_nanos: u128,
    /// `unset`, `ok` or `error`.
    pub status: String,
    pub status_message: Option<String>,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl CapturedSpan {
    pub fn attribute_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos) as u64)
    }
}

/// Bounded buffers of spans and log lines (oldest dropped first).
#[derive(Debug)]
pub struct Captured {
    spans: Mutex<VecDeque<CapturedSpan>>,
    logs: Mutex<VecDeque<serde_json::Map<String, serde_json::Value>>>,
    capacity: usize,
}

impl Captured {
    pub fn new(capacity: usize) -> Captured {
        Captured {
            spans: Mutex::default(),
            logs: Mutex::default(),
            capacity,
        }
    }

    pub fn push_span(&self, span: CapturedSpan) {
        push_bounded(&self.spans, span, self.capacity);
    }

    pub fn push_log(&self, line: serde_json::Map<String, serde_json::Value>) {
        push_bounded(&self.logs, line, self.capacity);
    }

    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn spans_of_trace(&self, trace_id: &str) -> Vec<CapturedSpan> {
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }

    pub fn logs(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Log lines whose `correlation_id` is `id`, in the order they were written.
    pub fn logs_with_correlation_id(&self, id: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.iter()
            .filter(|l| l.get("correlation_id").and_then(|v| v.as_str()) == Some(id))
            .cloned()
            .collect()
    }
}

fn push_bounded<T>(buffer: &Mutex<VecDeque<T>>, item: T, capacity: usize) {
    let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
    if buffer.len() >= capacity {
        buffer.pop_front();
    }
    buffer.push_back(item);
}

/// A span processor that copies every finished span into [`Captured`].
#[derive(Debug)]
pub struct CaptureProcessor {
    service: String,
    captured: std::sync::Arc<Captured>,
}

impl CaptureProcessor {
    pub fn new(service: impl Into<String>, captured: std::sync::Arc<Captured>) -> Self {
        CaptureProcessor {
            service: service.into(),
            captured,
        }
    }
}

impl SpanProcessor for CaptureProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.captured.push_span(convert(&self.service, span));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn convert(service: &str, span: SpanData) -> CapturedSpan {
    let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let (status, status_message) = match &span.status {
        Status::Unset => ("unset", None),
        Status::Ok => ("ok", None),
        Status::Error { description } => ("error", Some(description.to_string())),
    };
    let kind = match span.span_kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    };
    let parent = span.parent_span_id;
    CapturedSpan {
        trace_id: span.span_context.trace_id().to_string(),
        span_id: span.span_context.span_id().to_string(),
        parent_span_id: (parent != opentelemetry::trace::SpanId::INVALID).then(|| parent.to_string()),
        name: span.name.to_string(),
        service: service.to_string(),
        kind: kind.to_string(),
        start_unix_nanos: nanos(span.start_time),
        end_unix_nanos: nanos(span.end_time),
        status: status.to_string(),
        status_message,
        attributes: span
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), json_value(&kv.value)))
            .collect(),
    }
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Bool(b) => (*b).into(),
        Value::I64(i) => (*i).into(),
        Value::F64(f) => (*f).into(),
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}
