//! JSON log lines, one object per line, with the fields of the telemetry contract: the
//! event's own fields plus the correlation, request and trace ids of the spans it is in.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    stdout: Option<Arc<StdoutBuffer>>,
    capture: Option<Arc<Captured>>,
}

/// Lines waiting for the writer thread. Appending takes a short lock and wakes nobody; the
/// writer flushes every few milliseconds, so logging costs a request no system call.
struct StdoutBuffer {
    pending: Mutex<Vec<u8>>,
}

const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Past this many unwritten bytes (a stalled stdout), new lines are dropped, not queued.
const MAX_PENDING: usize = 16 << 20;

impl LogSink {
    /// A sink writing to stdout from a background thread, so a slow terminal or pipe never
    /// blocks a request.
    pub fn stdout() -> LogSink {
        let buffer = Arc::new(StdoutBuffer {
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
        });
        let weak = Arc::downgrade(&buffer);
        std::thread::Builder::new()
            .name("recordstore-log-writer".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 << 10);
                while let Some(buffer) = weak.upgrade() {
                    std::mem::swap(
                        &mut *buffer.pending.lock().unwrap_or_else(|e| e.into_inner()),
                        &mut spare,
                    );
                    drop(buffer);
                    if !spare.is_empty() {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&spare);
                        let _ = out.flush();
                        spare.clear();
                    }
                    std::thread::sleep(FLUSH_EVERY);
                }
            })
            .expect("spawn log writer thread");
        LogSink {
            stdout: Some(buffer),
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
        if let Some(stdout) = &self.stdout {
            let mut pending = stdout.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() < MAX_PENDING && serde_json::to_writer(&mut *pending, &line).is_ok() {
                pending.push(b'\n');
            }
        }
        if let Some(capture) = &self.capture {
            capture.push_log(line);
        }
    }

    /// Writes what is pending now (at shutdown, so the last lines are not lost).
    pub fn flush(&self) {
        if let Some(stdout) = &self.stdout {
            let pending = std::mem::take(&mut *stdout.pending.lock().unwrap_or_else(|e| e.into_inner()));
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&pending);
            let _ = out.flush();
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

fn is_context_field(name: &str) -> bool {
    CONTEXT_FIELDS.iter().any(|(field, _)| *field == name)
}

/// Collects fields as JSON values; for spans only the ones log lines copy.
#[derive(Default)]
struct JsonVisitor {
    fields: Map<String, Value>,
    context_only: bool,
}

impl JsonVisitor {
    fn context_only() -> Self {
        JsonVisitor {
            fields: Map::new(),
            context_only: true,
        }
    }

    fn put(&mut self, field: &Field, value: impl FnOnce() -> Value) {
        if !self.context_only || is_context_field(field.name()) {
            self.fields.insert(field.name().to_string(), value());
        }
    }
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, || Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, || Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, || value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, || value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, || value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, || value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, || {
            let mut text = value.to_string();
            let mut source = value.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            Value::String(text)
        });
    }
}

impl<S> tracing_subscriber::Layer<S> for JsonLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.fields().iter().any(|f| is_context_field(f.name())) {
            return;
        }
        let mut visitor = JsonVisitor::context_only();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut visitor = JsonVisitor::context_only();
            values.record(&mut visitor);
            if visitor.fields.is_empty() {
                return;
            }
            let mut ext = span.extensions_mut();
            match ext.get_mut::<SpanFields>() {
                Some(fields) => fields.0.extend(visitor.fields),
                None => ext.insert(SpanFields(visitor.fields)),
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
        let message = visitor.fields.remove("message").unwrap_or(Value::String(String::new()));
        line.insert("message".into(), message);
        line.insert("target".into(), event.metadata().target().into());
        line.extend(visitor.fields);
        self.sink.write(line);
    }
}
