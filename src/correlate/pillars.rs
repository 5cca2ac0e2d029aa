//! The three pillars of one subject (a correlation id and its trace id): from the embedded
//! store (spans and log lines kept in memory, its `/metrics` in OpenMetrics with exemplars) or
//! from the stack (Jaeger, Loki, Prometheus). Waits, polling with backoff, until the worker's
//! part has arrived or the deadline passes, then judges each pillar.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use recordstore::telemetry::{Captured, CapturedSpan};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::exit::UsageError;

/// What the pillars are looked up by: the correlation id every log line carries and the
/// trace id every span carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub correlation_id: String,
    pub trace_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExemplarHit {
    pub series: String,
    pub trace_id: String,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pillar {
    pub pillar: String,
    pub complete: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Telemetry {
    pub spans: Vec<CapturedSpan>,
    pub logs: Vec<Map<String, Value>>,
    pub metrics: Vec<MetricSample>,
    pub exemplar: Option<ExemplarHit>,
    pub pillars: Vec<Pillar>,
    /// Backends that could not be reached at all (exit code 3).
    #[serde(default)]
    pub unreachable: Vec<String>,
}

impl Telemetry {
    pub fn complete(&self) -> bool {
        self.pillars.iter().all(|p| p.complete)
    }

    /// `pillar: why`, one per incomplete pillar.
    pub fn missing(&self) -> Vec<String> {
        self.pillars
            .iter()
            .filter(|p| !p.complete)
            .map(|p| format!("{}: {}", p.pillar, p.detail))
            .collect()
    }

    /// The one-line verdict when pillars are missing: their names only (each pillar's reason
    /// has its own line above it).
    pub fn incomplete_verdict(&self) -> String {
        let names: Vec<&str> = self
            .pillars
            .iter()
            .filter(|p| !p.complete)
            .map(|p| p.pillar.as_str())
            .collect();
        format!(
            "INCOMPLETE: {} of {} pillars missing ({}); the ✗ lines say why",
            names.len(),
            self.pillars.len(),
            names.join(", ")
        )
    }
}

/// Route templates the journey's requests hit.
/// A string field of a log line; `None` when it is missing or not a string (log lines are
/// untrusted: indexing a JSON map by a missing key would panic).
pub fn field<'a>(line: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    line.get(name).and_then(Value::as_str)
}

pub const ROUTES: &[&str] = &["/products", "/products/{id}", "/checkout", "/orders/{id}"];

fn worker_span_hangs_off_checkout(spans: &[CapturedSpan]) -> bool {
    spans.iter().any(|w| {
        w.service == "recordstore-worker"
            && w.name == "process order"
            && spans
                .iter()
                .any(|c| c.name == "POST /checkout" && Some(&c.span_id) == w.parent_span_id.as_ref())
    })
}

pub async fn collect(captured: &Captured, base: &str, subject: &Subject, wait: Duration) -> Telemetry {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(20);
    let (spans, logs) = loop {
        let spans = captured.spans_of_trace(&subject.trace_id);
        let logs = captured.logs_with_correlation_id(&subject.correlation_id);
        let worker_logged = logs
            .iter()
            .any(|l| field(l, "service") == Some("recordstore-worker") && field(l, "message") == Some("job finished"));
        if (worker_span_hangs_off_checkout(&spans) && worker_logged) || Instant::now() + delay > deadline {
            break (spans, logs);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    };
    let (metrics, exemplar) = scrape(base, &subject.trace_id).await;
    let pillars = judge(&spans, &logs, &metrics, exemplar.as_ref(), metrics.is_empty());
    Telemetry {
        spans,
        logs,
        metrics,
        exemplar,
        pillars,
        unreachable: Vec::new(),
    }
}

fn unreachable(e: &crate::backends::BackendError) -> bool {
    matches!(e, crate::backends::BackendError::Unreachable { .. })
}

/// The stack's backends, for a journey against a deployed store.
pub struct Stack {
    pub jaeger: crate::backends::jaeger::JaegerClient,
    pub loki: crate::backends::loki::LokiClient,
    pub prometheus: crate::backends::prometheus::PrometheusClient,
}

impl Stack {
    pub fn from_args(args: &crate::config::StackArgs) -> Result<Stack, UsageError> {
        let urls = crate::config::resolve(args).map_err(|e| e.to_string())?;
        Ok(Stack {
            jaeger: crate::backends::jaeger::JaegerClient::new(&urls.jaeger),
            loki: crate::backends::loki::LokiClient::new(&urls.loki),
            prometheus: crate::backends::prometheus::PrometheusClient::new(&urls.prometheus)
                .map_err(|e| UsageError(format!("--prometheus {}: {e}", urls.prometheus)))?,
        })
    }
}

fn from_jaeger(s: &crate::backends::jaeger::TraceSpan) -> CapturedSpan {
    CapturedSpan {
        trace_id: s.trace_id.clone(),
        span_id: s.span_id.clone(),
        parent_span_id: s.parent_span_id.clone(),
        name: s.operation.clone(),
        service: s.service.clone(),
        kind: s
            .tags
            .get("span.kind")
            .and_then(|v| v.as_str())
            .unwrap_or("internal")
            .to_string(),
        start_unix_nanos: u128::from(s.start_us) * 1000,
        end_unix_nanos: u128::from(s.start_us.saturating_add(s.duration_us)) * 1000,
        status: if s.error { "error".into() } else { "unset".into() },
        status_message: None,
        attributes: s.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// One look at the three backends; an unreachable backend becomes that pillar's detail.
async fn look(
    stack: &Stack,
    subject: &Subject,
    start_ns: u128,
) -> (
    Vec<CapturedSpan>,
    Vec<Map<String, Value>>,
    Vec<MetricSample>,
    Option<ExemplarHit>,
    Vec<(String, String, bool)>,
) {
    let mut problems = Vec::new();
    let spans = match stack.jaeger.trace(&subject.trace_id).await {
        Ok(Some(spans)) => spans.iter().map(from_jaeger).collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            problems.push(("traces".to_string(), e.to_string(), unreachable(&e)));
            Vec::new()
        }
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let logs = match stack
        .loki
        .lines_with_correlation_id(
            &subject.correlation_id,
            start_ns,
            now_ns + 60_000_000_000,
            1000,
            crate::backends::loki::Direction::Forward,
        )
        .await
    {
        Ok(lines) => lines
            .into_iter()
            .map(|l| {
                l.fields
                    .unwrap_or_else(|| Map::from_iter([("message".to_string(), Value::String(l.line))]))
            })
            .collect(),
        Err(e) => {
            problems.push(("logs".to_string(), e.to_string(), unreachable(&e)));
            Vec::new()
        }
    };
    let mut metrics = Vec::new();
    for route in ROUTES {
        match stack
            .prometheus
            .instant(&format!("recordstore_http_requests_total{{route=\"{route}\"}}"))
            .await
        {
            Ok(samples) => metrics.extend(samples.into_iter().map(|s| MetricSample {
                name: "recordstore_http_requests_total".into(),
                labels: s.labels.into_iter().filter(|(k, _)| k != "__name__").collect(),
                value: s.value,
            })),
            Err(e) => {
                problems.push(("metrics".to_string(), e.to_string(), unreachable(&e)));
                break;
            }
        }
    }
    let (from, to) = (
        (start_ns / 1_000_000_000) as f64 - 60.0,
        (now_ns / 1_000_000_000) as f64 + 60.0,
    );
    let exemplar = stack
        .prometheus
        .exemplars("recordstore_http_request_duration_seconds_bucket", from, to)
        .await
        .ok()
        .and_then(|all| {
            all.into_iter()
                .find(|e| e.labels.get("trace_id") == Some(&subject.trace_id))
        })
        .map(|e| ExemplarHit {
            series: e
                .series
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            trace_id: subject.trace_id.clone(),
            value: e.value,
        });
    (spans, logs, metrics, exemplar, problems)
}

/// The journey's telemetry from Jaeger, Loki and Prometheus, polled with backoff until the
/// worker's part has arrived everywhere or `wait` runs out.
/// `start_ns` bounds the log search from below.
pub async fn collect_from_stack(stack: &Stack, subject: &Subject, wait: Duration, start_ns: u128) -> Telemetry {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(200);
    loop {
        let (spans, logs, metrics, exemplar, problems) = look(stack, subject, start_ns).await;
        let worker_logged = logs
            .iter()
            .any(|l| l.get("service").and_then(|v| v.as_str()) == Some("recordstore-worker"));
        let counted = ROUTES.iter().all(|r| {
            metrics
                .iter()
                .any(|m| m.labels.get("route").map(String::as_str) == Some(*r))
        });
        let done = worker_span_hangs_off_checkout(&spans) && worker_logged && counted && exemplar.is_some();
        // An unreachable backend will not come back in time: say so now. Other answers (a
        // Prometheus still starting answers 503) may clear: keep looking until the deadline.
        let unreachable = problems.iter().any(|(_, _, is_unreachable)| *is_unreachable);
        if done || unreachable || Instant::now() + delay > deadline {
            let mut pillars = judge(&spans, &logs, &metrics, exemplar.as_ref(), false);
            let mut unreachable = Vec::new();
            for (pillar, problem, is_unreachable) in problems {
                if is_unreachable {
                    unreachable.push(problem.clone());
                }
                if let Some(p) = pillars.iter_mut().find(|p| p.pillar == pillar) {
                    p.complete = false;
                    p.detail = problem;
                }
            }
            return Telemetry {
                spans,
                logs,
                metrics,
                exemplar,
                pillars,
                unreachable,
            };
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The request counters of the journey's routes, and the latency exemplar carrying its trace id.
async fn scrape(base: &str, trace_id: &str) -> (Vec<MetricSample>, Option<ExemplarHit>) {
    let response = crate::backends::http_client()
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await;
    let Ok(text) = (match response {
        Ok(r) => r.text().await,
        Err(e) => Err(e),
    }) else {
        return (Vec::new(), None);
    };
    let mut metrics = Vec::new();
    let mut exemplar = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (sample, example) = match line.split_once(" # ") {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        let Some((series, value)) = sample.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = parse_series(series);
        let on_route = labels.get("route").is_some_and(|r| ROUTES.contains(&r.as_str()));
        if name == "recordstore_http_requests_total" && on_route {
            metrics.push(MetricSample {
                name: name.clone(),
                labels: labels.clone(),
                value: value.parse().unwrap_or(0.0),
            });
        }
        if let Some(example) = example
            && example.contains(&format!("trace_id=\"{trace_id}\""))
        {
            let value = example
                .split('}')
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok());
            exemplar = Some(ExemplarHit {
                series: series.to_string(),
                trace_id: trace_id.to_string(),
                value: value.unwrap_or(0.0),
            });
        }
    }
    (metrics, exemplar)
}

fn parse_series(series: &str) -> (String, BTreeMap<String, String>) {
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), BTreeMap::new());
    };
    let labels = rest
        .trim_end_matches('}')
        .split("\",")
        .filter_map(|pair| pair.split_once("=\""))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
        .collect();
    (name.to_string(), labels)
}

fn judge(
    spans: &[CapturedSpan],
    logs: &[Map<String, Value>],
    metrics: &[MetricSample],
    exemplar: Option<&ExemplarHit>,
    scrape_failed: bool,
) -> Vec<Pillar> {
    let from = |service: &str| spans.iter().filter(|s| s.service == service).count();
    let (api, worker) = (from("recordstore-api"), from("recordstore-worker"));
    let traces = if api == 0 {
        Pillar {
            pillar: "traces".into(),
            complete: false,
            detail: "no spans from recordstore-api: is the app exporting to OTEL_EXPORTER_OTLP_ENDPOINT?".into(),
        }
    } else if worker == 0 {
        Pillar {
            pillar: "traces".into(),
            complete: false,
            detail: format!(
                "{api} spans from recordstore-api but none from recordstore-worker: is the worker running and exporting to OTEL_EXPORTER_OTLP_ENDPOINT?"
            ),
        }
    } else if !worker_span_hangs_off_checkout(spans) {
        Pillar {
            pillar: "traces".into(),
            complete: false,
            detail: "the worker's span does not hang off the checkout span: is the trace context stored with the job?"
                .into(),
        }
    } else {
        Pillar {
            pillar: "traces".into(),
            complete: true,
            detail: format!(
                "{} spans: {api} from recordstore-api, {worker} from recordstore-worker; the worker's span hangs off the checkout",
                spans.len()
            ),
        }
    };
    let log_from = |service: &str| logs.iter().filter(|l| field(l, "service") == Some(service)).count();
    let (api_lines, worker_lines) = (log_from("recordstore-api"), log_from("recordstore-worker"));
    let logs_pillar = Pillar {
        pillar: "logs".into(),
        complete: api_lines > 0 && worker_lines > 0,
        detail: match (api_lines, worker_lines) {
            (0, _) => "no log lines with this correlation id from recordstore-api".into(),
            (_, 0) => format!(
                "{api_lines} lines from recordstore-api but none from recordstore-worker: is the worker running?"
            ),
            _ => format!(
                "{} lines: {api_lines} from recordstore-api, {worker_lines} from recordstore-worker",
                logs.len()
            ),
        },
    };
    let seen: Vec<&str> = ROUTES
        .iter()
        .copied()
        .filter(|r| {
            metrics
                .iter()
                .any(|m| m.labels.get("route").map(String::as_str) == Some(*r))
        })
        .collect();
    let metrics_pillar = if scrape_failed {
        Pillar {
            pillar: "metrics".into(),
            complete: false,
            detail: "could not read /metrics from the target".into(),
        }
    } else {
        let missing: Vec<&str> = ROUTES.iter().copied().filter(|r| !seen.contains(r)).collect();
        Pillar {
            pillar: "metrics".into(),
            complete: missing.is_empty(),
            detail: if missing.is_empty() {
                format!(
                    "request counters for {} routes; {}",
                    seen.len(),
                    if exemplar.is_some() {
                        "the latency histogram holds this journey's exemplar"
                    } else {
                        "no exemplar with this trace id (a later request may have replaced it)"
                    }
                )
            } else {
                format!("no request counter for {}", missing.join(", "))
            },
        }
    };
    vec![traces, logs_pillar, metrics_pillar]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a Loki line whose JSON had no `service` field panicked the join.
    #[test]
    fn log_lines_missing_or_mistyping_fields_are_counted_not_panicked_on() {
        let lines: Vec<Map<String, Value>> = [
            serde_json::json!({ "message": "no service at all" }),
            serde_json::json!({ "service": 42, "message": null }),
            serde_json::json!({ "service": "recordstore-api", "message": "ok" }),
            serde_json::json!({ "service": "other-app", "message": "ünïcode ✓" }),
        ]
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
        let pillars = judge(&[], &lines, &[], None, true);
        let logs = pillars.iter().find(|p| p.pillar == "logs").unwrap();
        assert!(!logs.complete);
        assert!(
            logs.detail
                .contains("1 lines from recordstore-api but none from recordstore-worker"),
            "{}",
            logs.detail
        );
        assert_eq!(field(&lines[1], "service"), None);
    }
}
