//! What a load run measured: HDR histograms (µs, 3 significant digits) overall and per
//! request name, status and error distributions, a per-second timeline, and the slowest
//! and failed requests by correlation id. Each worker keeps its own and they are merged.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram records (one hour, in µs); longer ones are clamped.
const MAX_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Per-second histograms for the timeline: one significant digit (about 10%) keeps each
/// under 4 KB, so a long run's memory grows by a few KB a second, not megabytes.
fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 1).expect("valid histogram bounds")
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Connection refused.
    Refused,
    /// No answer within the request timeout.
    Timeout,
    /// Connection reset or closed mid-request.
    Reset,
    /// 429 Too Many Requests: the target's rate limit refused it.
    RateLimited,
    /// A 4xx status not listed as expected.
    Http4xx,
    /// A 5xx status not listed as expected.
    Http5xx,
    /// Another status not listed as expected.
    UnexpectedStatus,
    /// The answer could not be used (not JSON, a value to extract missing, a poll that never finished).
    BadResponse,
    /// Never sent: the open model's queue was full (the target could not keep up).
    Dropped,
    Other,
}

impl ErrorKind {
    /// Every kind, so that a metric by kind can start each one at zero.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Refused,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::RateLimited,
        ErrorKind::Http4xx,
        ErrorKind::Http5xx,
        ErrorKind::UnexpectedStatus,
        ErrorKind::BadResponse,
        ErrorKind::Dropped,
        ErrorKind::Other,
    ];

    /// The kind as reports spell it (`timeout`, `http5xx`, …).
    pub fn label(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn for_status(status: u16) -> ErrorKind {
        match status {
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::Http4xx,
            500..=599 => ErrorKind::Http5xx,
            _ => ErrorKind::UnexpectedStatus,
        }
    }

    /// Classifies an I/O error by its kind.
    pub fn for_io(err: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::TimedOut => ErrorKind::Timeout,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => ErrorKind::Reset,
            _ => ErrorKind::Other,
        }
    }

    /// Classifies any error by the first I/O error in its source chain.
    pub fn for_error(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return ErrorKind::for_io(io);
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>()
                && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
            {
                return ErrorKind::Reset;
            }
            current = e.source();
        }
        ErrorKind::Other
    }
}

/// One request as the report lists it (slowest, failed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    pub name: String,
    pub correlation_id: String,
    pub latency_us: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// When the request was due, from the start of the run.
    pub at_ms: u64,
}

/// One finished (or failed, or dropped) request.
pub struct Sample<'a> {
    pub name: &'a str,
    pub correlation_id: &'a str,
    /// From the intended send time (coordinated-omission-corrected) to the end.
    pub latency: Duration,
    /// From the actual send to the end, when it differs (open model).
    pub service: Option<Duration>,
    pub status: Option<u16>,
    pub error: Option<(ErrorKind, String)>,
    /// Intended send time, from the start of the run.
    pub at: Duration,
}

#[derive(Debug, Clone)]
pub struct NameStats {
    pub latency: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

const KEEP_SLOWEST: usize = 10;
const MAX_TIMELINE_SECONDS: usize = 86_400;
const KEEP_FAILED: usize = 20;

#[derive(Debug, Clone)]
pub struct Stats {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub per_name: BTreeMap<String, NameStats>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub timeline: Vec<Second>,
    pub slowest: Vec<RequestRecord>,
    pub failed: Vec<RequestRecord>,
    pub requests: u64,
    pub failures: u64,
    /// Arrivals never sent (the open model's queue was full, or the run was interrupted while
    /// they waited): errors, but neither requests nor latencies.
    pub unsent: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            service: histogram(),
            per_name: BTreeMap::new(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            timeline: Vec::new(),
            slowest: Vec::new(),
            failed: Vec::new(),
            requests: 0,
            failures: 0,
            unsent: 0,
        }
    }
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_US)
}

impl Stats {
    /// What was sent and measured, plus what was meant to be: the denominator of the error rate.
    pub fn attempts(&self) -> u64 {
        self.requests + self.unsent
    }

    pub fn record(&mut self, s: &Sample<'_>) {
        if let Some((ErrorKind::Dropped, message)) = &s.error {
            // Never sent, so no latency: counted as an error in its second, nothing more.
            self.unsent += 1;
            self.failures += 1;
            *self.errors.entry(ErrorKind::Dropped).or_insert(0) += 1;
            self.second(s.at).errors += 1;
            if self.failed.len() < KEEP_FAILED {
                self.failed.push(self.record_of(s, 0, Some(message.clone())));
            }
            return;
        }
        let latency = us(s.latency);
        self.requests += 1;
        self.latency.saturating_record(latency);
        // Without a separate service time (closed and plain models) the two are the same; the
        // report then takes `latency` for both instead of recording twice.
        if let Some(service) = s.service {
            self.service.saturating_record(us(service));
        }
        if let Some(status) = s.status {
            *self.statuses.entry(status).or_insert(0) += 1;
        }
        let name = match self.per_name.get_mut(s.name) {
            Some(name) => name,
            None => self.per_name.entry(s.name.to_string()).or_insert_with(|| NameStats {
                latency: histogram(),
                requests: 0,
                errors: 0,
            }),
        };
        name.requests += 1;
        name.latency.saturating_record(latency);
        let failed = s.error.is_some();
        if failed {
            name.errors += 1;
        }
        let slot = self.second(s.at);
        slot.requests += 1;
        slot.latency.saturating_record(latency);
        if failed {
            slot.errors += 1;
        }
        if let Some((kind, message)) = &s.error {
            self.failures += 1;
            *self.errors.entry(*kind).or_insert(0) += 1;
            if self.failed.len() < KEEP_FAILED {
                self.failed.push(self.record_of(s, latency, Some(message.clone())));
            }
        }
        if self.slowest.len() < KEEP_SLOWEST || self.slowest.last().is_some_and(|r| r.latency_us < latency) {
            let record = self.record_of(s, latency, s.error.as_ref().map(|e| e.1.clone()));
            self.keep_slowest(record);
        }
    }

    /// The timeline's slot for the second `at` falls in (bounded: a day of seconds at most).
    fn second(&mut self, at: Duration) -> &mut Second {
        let second = (at.as_secs() as usize).min(MAX_TIMELINE_SECONDS);
        if self.timeline.len() <= second {
            self.timeline.resize_with(second + 1, || Second {
                requests: 0,
                errors: 0,
                latency: coarse_histogram(),
            });
        }
        &mut self.timeline[second]
    }

    fn record_of(&self, s: &Sample<'_>, latency_us: u64, error: Option<String>) -> RequestRecord {
        RequestRecord {
            name: s.name.to_string(),
            correlation_id: s.correlation_id.to_string(),
            latency_us,
            status: s.status,
            error,
            at_ms: s.at.as_millis() as u64,
        }
    }

    fn keep_slowest(&mut self, record: RequestRecord) {
        let at = self.slowest.partition_point(|r| r.latency_us >= record.latency_us);
        self.slowest.insert(at, record);
        self.slowest.truncate(KEEP_SLOWEST);
    }

    /// Adds another worker's measurements to these.
    pub fn merge(&mut self, other: Stats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        for (name, theirs) in other.per_name {
            match self.per_name.get_mut(&name) {
                Some(ours) => {
                    let _ = ours.latency.add(&theirs.latency);
                    ours.requests += theirs.requests;
                    ours.errors += theirs.errors;
                }
                None => {
                    self.per_name.insert(name, theirs);
                }
            }
        }
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_insert(0) += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_insert(0) += n;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize_with(other.timeline.len(), || Second {
                requests: 0,
                errors: 0,
                latency: coarse_histogram(),
            });
        }
        for (ours, theirs) in self.timeline.iter_mut().zip(other.timeline) {
            ours.requests += theirs.requests;
            ours.errors += theirs.errors;
            let _ = ours.latency.add(&theirs.latency);
        }
        for record in other.slowest {
            self.keep_slowest(record);
        }
        let room = KEEP_FAILED.saturating_sub(self.failed.len());
        self.failed.extend(other.failed.into_iter().take(room));
        self.requests += other.requests;
        self.failures += other.failures;
        self.unsent += other.unsent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ErrorKind::ALL` lists every kind once (the match fails to compile when a kind is added).
    #[test]
    fn all_error_kinds_are_listed_once() {
        let position = |k: ErrorKind| match k {
            ErrorKind::Refused => 0,
            ErrorKind::Timeout => 1,
            ErrorKind::Reset => 2,
            ErrorKind::RateLimited => 3,
            ErrorKind::Http4xx => 4,
            ErrorKind::Http5xx => 5,
            ErrorKind::UnexpectedStatus => 6,
            ErrorKind::BadResponse => 7,
            ErrorKind::Dropped => 8,
            ErrorKind::Other => 9,
        };
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(position(*kind), i, "{kind:?}");
        }
    }

    fn sample(name: &str, ms: u64, error: Option<ErrorKind>, at_s: u64) -> Sample<'_> {
        Sample {
            name,
            correlation_id: "run-1",
            latency: Duration::from_millis(ms),
            service: None,
            status: if error.is_some() { Some(500) } else { Some(200) },
            error: error.map(|k| (k, "boom".to_string())),
            at: Duration::from_secs(at_s),
        }
    }

    #[test]
    fn records_merge_without_loss() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 0..100 {
            a.record(&sample("list", 10 + i % 5, None, i / 50));
            b.record(&sample("view", 20, (i % 10 == 0).then_some(ErrorKind::Http5xx), 2));
        }
        a.merge(b);
        assert_eq!(a.requests, 200);
        assert_eq!(a.failures, 10);
        assert_eq!(a.latency.len(), 200);
        assert_eq!(a.per_name["view"].errors, 10);
        assert_eq!(a.errors[&ErrorKind::Http5xx], 10);
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.timeline[2].requests, 100);
        assert_eq!(a.slowest.len(), KEEP_SLOWEST);
        assert!(a.slowest.windows(2).all(|w| w[0].latency_us >= w[1].latency_us));
        assert_eq!(a.slowest[0].latency_us, 20_000);
        assert_eq!(a.failed.len(), 10);
    }

    #[test]
    fn io_errors_are_classified() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(ErrorKind::for_error(&refused), ErrorKind::Refused);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(ErrorKind::for_io(&reset), ErrorKind::Reset);
        assert_eq!(ErrorKind::for_status(404), ErrorKind::Http4xx);
        assert_eq!(ErrorKind::for_status(429), ErrorKind::RateLimited, "a kind of its own");
        assert_eq!(ErrorKind::for_status(503), ErrorKind::Http5xx);
    }
}

/// Counters the progress bar reads while a run goes on.
#[derive(Debug)]
pub struct Live {
    pub requests: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    /// Latencies since the progress bar last looked (for a live p99).
    pub window: std::sync::Mutex<Histogram<u64>>,
    /// Open model: transactions running now, and arrivals that started late so far.
    pub in_flight: std::sync::atomic::AtomicI64,
    pub late: std::sync::atomic::AtomicU64,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            requests: Default::default(),
            errors: Default::default(),
            window: std::sync::Mutex::new(coarse_histogram()),
            in_flight: Default::default(),
            late: Default::default(),
        }
    }
}

impl Live {
    pub fn note(&self, latency: Duration, failed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.requests.fetch_add(1, Relaxed);
        if failed {
            self.errors.fetch_add(1, Relaxed);
        }
        // Every 16th latency feeds the live p99: enough for a progress bar, and the lock is
        // not taken on the hot path of every request.
        if n.is_multiple_of(16)
            && let Ok(mut window) = self.window.try_lock()
        {
            window.saturating_record(us(latency));
        }
    }

    /// Offers one latency to the live p99 window (skipped when the window is busy).
    pub fn sample(&self, latency: Duration) {
        if let Ok(mut window) = self.window.try_lock() {
            window.saturating_record(us(latency));
        }
    }

    /// Adds a batch counted locally by a worker.
    pub fn add(&self, requests: u64, errors: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(requests, Relaxed);
        self.errors.fetch_add(errors, Relaxed);
    }

    /// The p99 of the window in µs, resetting it.
    pub fn take_p99(&self) -> u64 {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let p99 = window.value_at_quantile(0.99);
        window.reset();
        p99
    }
}

/// Where open- and closed-model requests are recorded: shared stats and live counters.
#[derive(Debug, Default)]
pub struct Recorder {
    pub stats: std::sync::Mutex<Stats>,
    pub live: Live,
}

impl Recorder {
    pub fn record(&self, sample: &Sample<'_>) {
        self.live.note(sample.latency, sample.error.is_some());
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).record(sample);
    }

    pub fn take(&self) -> Stats {
        std::mem::take(&mut *self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
