//! JSON log lines, one object per line, with the fields of the telemetry contract: the
//! event's own fields plus the correlation, request and trace ids of the spans it is in.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::capture::Captured;
use crate::clock::{now_micros, rfc3339_micros};

/// Span fields copied into log lines, as (span field, log key).
const CONTEXT_FIELDS: &[(&str, &str)] = &[
    ("correlation_id", "correlation_id"),
    ("request_id", "request_id"),
    ("trace_id", "trace_id"),
    ("span_id", "span_id"),
    ("http.request.method", "method"),
    ("http.route", "route"),
    ("order.id", "order_id"),
    ("job.id", "job_id"),
];

/// Always present in a line, `null` when unknown, so every line has one shape.
const REQUIRED_KEYS: &[&str] = &["correlation_id", "request_id", "trace_id", "span_id"];

/// Where lines go: stdout through a writer thread, and/or the in-memory capture.
#[derive(Clone, Default)]
pub struct LogSink {
    stdout: Option<SyncSender<String>>,
    capture: Option<Arc<Captured>>,
}

impl LogSink {
    /// A sink writing to stdout from a background thread, so a slow terminal or pipe never
    /// blocks a request; when 64k lines are queued, further lines are dropped.
    pub fn stdout() -> LogSink {
        let (tx, rx) = sync_channel::<String>(65_536);
        std::thread::Builder::new()
            .name("recordstore-log-writer".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .expect("spawn log writer thread");
        LogSink {
            stdout: Some(tx),
            capture: None,
        }
    }

    pub fn none() -> LogSink {
        LogSink::default()
    }

    pub fn with_capture(mut self, captured: Arc<Captured>) -> LogSink {
        self.capture = Some(captured);
        self
    }

    fn write(&self, line: Map<String, Value>) {
        if let Some(tx) = &self.stdout {
            let mut text = Value::Object(line.clone()).to_string();
            text.push('\n');
            if let Err(TrySendError::Disconnected(_)) = tx.try_send(text) {
                // The writer thread is gone (process exiting); nothing left to do.
            }
        }
        if let Some(capture) = &self.capture {
            capture.push_log(line);
        }
    }
}

pub struct JsonLogLayer {
    service: String,
    sink: LogSink,
}

impl JsonLogLayer {
    pub fn new(service: impl Into<String>, sink: LogSink) -> Self {
        JsonLogLayer {
            service: service.into(),
            sink,
        }
    }
}

/// The fields a span was created or recorded with.
#[derive(Default)]
struct SpanFields(Map<String, Value>);

#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.0.insert(field.name().to_string(), Value::String(text));
    }
}

impl<S> tracing_subscriber::Layer<S> for JsonLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = JsonVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.0));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut visitor = JsonVisitor::default();
            values.record(&mut visitor);
            let mut ext = span.extensions_mut();
            match ext.get_mut::<SpanFields>() {
                Some(fields) => fields.0.extend(visitor.0),
                None => ext.insert(SpanFields(visitor.0)),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("timestamp".into(), rfc3339_micros(now_micros()).into());
        line.insert(
            "level".into(),
            event.metadata().level().as_str().to_ascii_lowercase().into(),
        );
        line.insert("service".into(), self.service.clone().into());
        for key in REQUIRED_KEYS {
            line.insert((*key).into(), Value::Null);
        }
        if let Some(scope) = ctx.event_scope(event) {
            // Nearest span first: an inner span's id wins over its parent's.
            for span in scope {
                let ext = span.extensions();
                let Some(fields) = ext.get::<SpanFields>() else {
                    continue;
                };
                for (field, key) in CONTEXT_FIELDS {
                    if let Some(value) = fields.0.get(*field)
                        && line.get(*key).is_none_or(Value::is_null)
                    {
                        line.insert((*key).into(), value.clone());
                    }
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let message = visitor.0.remove("message").unwrap_or(Value::String(String::new()));
        line.insert("message".into(), message);
        line.insert("target".into(), event.metadata().target().into());
        line.extend(visitor.0);
        self.sink.write(line);
    }
}
