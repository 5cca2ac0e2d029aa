//! Telemetry: traces (OTLP over HTTP and/or in memory), JSON log lines, and the trace
//! context plumbing of the contract. Each app owns its subscribers (one for the API, one
//! for the worker, each with its own service name); nothing is installed globally.

pub mod capture;
pub mod context;
pub mod http;
pub mod logs;

use std::sync::Arc;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::prelude::*;

pub use capture::{Captured, CapturedSpan};
pub use context::{CORRELATION_HEADER, CorrelationId, TRACEPARENT_HEADER, TraceParent};
use logs::{JsonLogLayer, LogSink};

pub const API_SERVICE: &str = "recordstore-api";
pub const WORKER_SERVICE: &str = "recordstore-worker";

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Base OTLP/HTTP endpoint (`http://jaeger:4318`); `/v1/traces` is added.
    pub otlp_endpoint: Option<String>,
    /// An `EnvFilter` directive for log lines, e.g. `info` or `recordstore=debug`.
    pub log_level: String,
    pub log_to_stdout: bool,
    /// Keep spans and log lines in memory (bounded) for [`Telemetry::captured`].
    pub capture: bool,
    pub api_service: String,
    pub worker_service: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            log_level: "info".into(),
            log_to_stdout: true,
            capture: false,
            api_service: API_SERVICE.into(),
            worker_service: WORKER_SERVICE.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid LOG_LEVEL {0:?}: {1} (try info, debug, or recordstore=debug)")]
    LogLevel(String, String),
    #[error("cannot build the OTLP exporter for {0}: {1}")]
    Exporter(String, String),
}

/// The app's telemetry handles. Cloning shares them.
#[derive(Clone)]
pub struct Telemetry {
    pub api: Dispatch,
    pub worker: Dispatch,
    captured: Arc<Captured>,
    providers: Arc<Vec<SdkTracerProvider>>,
    sink: LogSink,
}

impl Telemetry {
    pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        EnvFilter::try_new(&config.log_level)
            .map_err(|e| TelemetryError::LogLevel(config.log_level.clone(), e.to_string()))?;
        let captured = Arc::new(Captured::new(50_000));
        let sink = if config.log_to_stdout {
            LogSink::stdout()
        } else {
            LogSink::none()
        };
        let sink = if config.capture {
            sink.with_capture(captured.clone())
        } else {
            sink
        };
        let mut providers = Vec::new();
        let mut dispatch_for = |service: &str| -> Result<Dispatch, TelemetryError> {
            let provider = tracer_provider(config, service, &captured)?;
            let tracer = provider.tracer("recordstore");
            providers.push(provider);
            let filter = EnvFilter::new(&config.log_level);
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_level(true)
                        .with_threads(false)
                        .with_location(false)
                        .with_filter(LevelFilter::INFO),
                )
                .with(JsonLogLayer::new(service, sink.clone()).with_filter(filter));
            Ok(Dispatch::new(subscriber))
        };
        let api = dispatch_for(&config.api_service)?;
        let worker = dispatch_for(&config.worker_service)?;
        Ok(Telemetry {
            api,
            worker,
            captured,
            providers: Arc::new(providers),
            sink,
        })
    }

    /// Spans and log lines kept in memory (empty unless `capture` was set).
    pub fn captured(&self) -> &Arc<Captured> {
        &self.captured
    }

    /// Exports what is still batched; call before the process exits.
    pub fn flush(&self) {
        for provider in self.providers.iter() {
            let _ = provider.force_flush();
        }
        self.sink.flush();
    }

    pub fn shutdown(&self) {
        for provider in self.providers.iter() {
            let _ = provider.shutdown();
        }
    }
}

fn tracer_provider(
    config: &TelemetryConfig,
    service: &str,
    captured: &Arc<Captured>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder().with_service_name(service.to_string()).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        let url = traces_url(endpoint);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| TelemetryError::Exporter(url, e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    if config.capture {
        builder = builder.with_span_processor(capture::CaptureProcessor::new(service, captured.clone()));
    }
    Ok(builder.build())
}

/// The OTLP/HTTP traces URL for a base endpoint, as the OTLP exporter spec builds it.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Makes `span` continue the trace of `parent` (a remote caller or a stored checkout), then
/// records its own `trace_id` and `span_id` as fields so log lines inside it carry them.
/// Returns the span's own trace context.
pub fn link_span(span: &tracing::Span, parent: Option<TraceParent>) -> Option<TraceParent> {
    if let Some(parent) = parent {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.span_id.to_be_bytes()),
            if parent.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    let tp = TraceParent {
        trace_id: u128::from_be_bytes(own.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(own.span_id().to_bytes()),
        sampled: own.is_sampled(),
    };
    span.record("trace_id", format!("{:032x}", tp.trace_id));
    span.record("span_id", format!("{:016x}", tp.span_id));
    Some(tp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(traces_url("http://jaeger:4318"), "http://jaeger:4318/v1/traces");
        assert_eq!(traces_url("http://jaeger:4318/"), "http://jaeger:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }

    #[test]
    fn a_linked_span_continues_the_parent_trace_and_is_captured() {
        let telemetry = Telemetry::init(&TelemetryConfig {
            log_to_stdout: false,
            capture: true,
            ..TelemetryConfig::default()
        })
        .unwrap();
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let own = tracing::dispatcher::with_default(&telemetry.api, || {
            let span = tracing::info_span!(
                "demo",
                correlation_id = "c-1",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            let own = link_span(&span, Some(parent)).unwrap();
            span.in_scope(|| tracing::info!(answer = 42, "inside"));
            own
        });
        assert_eq!(own.trace_id, parent.trace_id);
        assert_ne!(own.span_id, parent.span_id);
        let spans = telemetry.captured().spans_of_trace("4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(spans[0].parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(spans[0].service, API_SERVICE);
        assert_eq!(spans[0].attribute_str("correlation_id"), Some("c-1"));
        let logs = telemetry.captured().logs_with_correlation_id("c-1");
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0]["message"], "inside");
        assert_eq!(logs[0]["answer"], 42);
        assert_eq!(logs[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(logs[0]["span_id"], format!("{:016x}", own.span_id));
        assert_eq!(logs[0]["service"], API_SERVICE);
    }
}

#[cfg(test)]
mod nesting_tests {
    use super::*;
    use tracing::Instrument;

    /// Regression: sqlx hands the current span to its own threads; were it to see ours, the
    /// parent of a database span would never close and never be exported.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_span_around_database_calls_closes_and_is_captured() {
        let config = TelemetryConfig {
            log_to_stdout: false,
            capture: true,
            ..TelemetryConfig::default()
        };
        let telemetry = Telemetry::init(&config).unwrap();
        let path = std::env::temp_dir().join(format!("recordstore-nesting-{:x}.db", rand::random::<u64>()));
        let store = crate::store::Store::connect_lazy(&format!("sqlite://{}", path.display()), 1).unwrap();
        let work = async {
            let span = tracing::info_span!(
                "parent",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            link_span(&span, None);
            async {
                store.migrate().await.unwrap();
                store.get_product(1).await.unwrap();
                store.list_orders(1, None, None).await.unwrap();
            }
            .instrument(span)
            .await;
        };
        tracing::instrument::WithSubscriber::with_subscriber(work, telemetry.api.clone()).await;
        let names: Vec<String> = telemetry.captured().spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["SELECT products", "SELECT orders", "parent"]);
        store.close().await;
        let _ = std::fs::remove_file(path);
    }
}
