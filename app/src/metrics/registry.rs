//! A small metric registry: counters, gauges and histograms with labels, encoded as
//! Prometheus text (0.0.4) or as OpenMetrics text, which alone carries exemplars.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` header asks for it, as Prometheus does.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// A sample that links a histogram observation to the trace that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: String,
    pub value: f64,
    pub timestamp_ms: i64,
}

#[derive(Debug, Default)]
struct HistogramState {
    counts: Vec<u64>,
    exemplars: Vec<Option<Exemplar>>,
    sum: f64,
    count: u64,
}

/// One labelled time series of a family.
#[derive(Debug)]
pub struct Series {
    value: AtomicU64,
    histogram: Option<Mutex<HistogramState>>,
    buckets: &'static [f64],
}

impl Series {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, delta: f64) {
        let _ = self.value.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + delta).to_bits())
        });
    }

    pub fn observe(&self, v: f64) {
        self.observe_with_exemplar(v, None);
    }

    /// Records `v`; the exemplar, when given, replaces the bucket's previous one.
    pub fn observe_with_exemplar(&self, v: f64, exemplar: Option<Exemplar>) {
        let Some(state) = &self.histogram else { return };
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let idx = self.buckets.iter().position(|b| v <= *b).unwrap_or(self.buckets.len());
        state.counts[idx] += 1;
        state.sum += v;
        state.count += 1;
        if exemplar.is_some() {
            state.exemplars[idx] = exemplar;
        }
    }

    pub fn counter_value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn gauge_value(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }

    pub fn histogram_count(&self) -> u64 {
        self.histogram
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).count)
            .unwrap_or(0)
    }
}

/// A metric family: name, help, type, label names, and its series by label values.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    series: RwLock<BTreeMap<Vec<String>, Arc<Series>>>,
}

impl Family {
    /// The series for these label values (in the family's label order), created on first use.
    pub fn with(&self, values: &[&str]) -> Arc<Series> {
        debug_assert_eq!(values.len(), self.labels.len(), "label count for {}", self.name);
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&values as &dyn LabelKey)
        {
            return series.clone();
        }
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(self.new_series())).clone()
    }

    fn new_series(&self) -> Series {
        let histogram = (self.kind == Kind::Histogram).then(|| {
            Mutex::new(HistogramState {
                counts: vec![0; self.buckets.len() + 1],
                exemplars: vec![None; self.buckets.len() + 1],
                ..HistogramState::default()
            })
        });
        let value = if self.kind == Kind::Gauge { 0f64.to_bits() } else { 0 };
        Series {
            value: AtomicU64::new(value),
            histogram,
            buckets: self.buckets,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn sample_name(&self, format: Format) -> String {
        match (self.kind, format) {
            (Kind::Counter, _) => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }

    fn encode(&self, out: &mut String, format: Format) {
        let family = match (self.kind, format) {
            (Kind::Counter, Format::Prometheus) => self.sample_name(format),
            _ => self.name.to_string(),
        };
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {family} {}", self.help);
        let _ = writeln!(out, "# TYPE {family} {kind}");
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        for (values, series) in map.iter() {
            let labels = render_labels(self.labels, values, None);
            match self.kind {
                Kind::Counter => {
                    let _ = writeln!(out, "{}{labels} {}", self.sample_name(format), series.counter_value());
                }
                Kind::Gauge => {
                    let _ = writeln!(out, "{}{labels} {}", self.name, fmt_f64(series.gauge_value()));
                }
                Kind::Histogram => self.encode_histogram(out, format, values, series),
            }
        }
    }

    fn encode_histogram(&self, out: &mut String, format: Format, values: &[String], series: &Series) {
        let Some(state) = &series.histogram else { return };
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        let mut cumulative = 0;
        for (idx, count) in state.counts.iter().enumerate() {
            cumulative += count;
            let le = self
                .buckets
                .get(idx)
                .map(|b| fmt_f64(*b))
                .unwrap_or_else(|| "+Inf".to_string());
            let labels = render_labels(self.labels, values, Some(&le));
            let _ = write!(out, "{}_bucket{labels} {cumulative}", self.name);
            if let (Format::OpenMetrics, Some(ex)) = (format, &state.exemplars[idx]) {
                let _ = write!(
                    out,
                    " # {{trace_id=\"{}\"}} {} {}.{:03}",
                    escape(&ex.trace_id),
                    fmt_f64(ex.value),
                    ex.timestamp_ms / 1000,
                    ex.timestamp_ms % 1000
                );
            }
            out.push('\n');
        }
        let labels = render_labels(self.labels, values, None);
        let _ = writeln!(out, "{}_sum{labels} {}", self.name, fmt_f64(state.sum));
        let _ = writeln!(out, "{}_count{labels} {}", self.name, state.count);
    }
}

/// Lets a `&[&str]` look up a `Vec<String>` key without allocating.
trait LabelKey {
    fn parts(&self) -> Box<dyn Iterator<Item = &str> + '_>;
}

impl LabelKey for Vec<String> {
    fn parts(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.iter().map(String::as_str))
    }
}

impl LabelKey for &[&str] {
    fn parts(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.iter().copied())
    }
}

impl<'a> std::borrow::Borrow<dyn LabelKey + 'a> for Vec<String> {
    fn borrow(&self) -> &(dyn LabelKey + 'a) {
        self
    }
}

impl PartialEq for dyn LabelKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts().eq(other.parts())
    }
}

impl Eq for dyn LabelKey + '_ {}

impl PartialOrd for dyn LabelKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn LabelKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(other.parts())
    }
}

fn render_labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    if let Some(le) = le {
        if !names.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn fmt_f64(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// The families of one app, in registration order.
#[derive(Debug, Default)]
pub struct Registry {
    families: Vec<Arc<Family>>,
}

impl Registry {
    fn register(&mut self, family: Family) -> Arc<Family> {
        let family = Arc::new(family);
        self.families.push(family.clone());
        family
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Arc<Family> {
        debug_assert!(!name.ends_with("_total"), "counter names are given without _total");
        self.register(Family {
            name,
            help,
            kind: Kind::Counter,
            labels,
            buckets: &[],
            series: RwLock::default(),
        })
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Arc<Family> {
        self.register(Family {
            name,
            help,
            kind: Kind::Gauge,
            labels,
            buckets: &[],
            series: RwLock::default(),
        })
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Arc<Family> {
        self.register(Family {
            name,
            help,
            kind: Kind::Histogram,
            labels,
            buckets,
            series: RwLock::default(),
        })
    }

    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        for family in &self.families {
            family.encode(&mut out, format);
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_encode_with_total_in_both_formats() {
        let mut reg = Registry::default();
        let c = reg.counter("demo_requests", "Requests.", &["route"]);
        c.with(&["/a"]).inc_by(3);
        let text = reg.encode(Format::Prometheus);
        assert!(text.contains("# TYPE demo_requests_total counter\n"), "{text}");
        assert!(text.contains("demo_requests_total{route=\"/a\"} 3\n"), "{text}");
        let om = reg.encode(Format::OpenMetrics);
        assert!(om.contains("# TYPE demo_requests counter\n"), "{om}");
        assert!(om.contains("demo_requests_total{route=\"/a\"} 3\n"), "{om}");
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_exemplars_only_in_openmetrics() {
        let mut reg = Registry::default();
        let h = reg.histogram("demo_seconds", "Latency.", &[], &[0.1, 1.0]);
        let s = h.with(&[]);
        s.observe(0.05);
        s.observe_with_exemplar(
            0.5,
            Some(Exemplar {
                trace_id: "abc".into(),
                value: 0.5,
                timestamp_ms: 1_500,
            }),
        );
        s.observe(5.0);
        let text = reg.encode(Format::Prometheus);
        assert!(text.contains("demo_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("demo_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("demo_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("demo_seconds_count 3\n"), "{text}");
        assert!(!text.contains("trace_id"));
        let om = reg.encode(Format::OpenMetrics);
        assert!(
            om.contains("demo_seconds_bucket{le=\"1\"} 2 # {trace_id=\"abc\"} 0.5 1.500\n"),
            "{om}"
        );
    }

    #[test]
    fn label_values_are_escaped_and_series_are_shared() {
        let mut reg = Registry::default();
        let g = reg.gauge("demo_gauge", "G.", &["name"]);
        g.with(&["a\"b\\c\nd"]).set(2.5);
        g.with(&["a\"b\\c\nd"]).add(1.0);
        let text = reg.encode(Format::Prometheus);
        assert!(text.contains("demo_gauge{name=\"a\\\"b\\\\c\\nd\"} 3.5\n"), "{text}");
    }

    #[test]
    fn openmetrics_is_chosen_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
