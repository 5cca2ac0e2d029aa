//! Background traffic for a drill: the load engine's open model (arrivals on schedule, so an
//! outage cannot slow the traffic down and hide itself) running a scenario, with a ledger of
//! every checkout the store acknowledged.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::load::executor::{Executor, Observer, Seen};
use crate::load::open::{self, ScheduleReport};
use crate::load::plan::{RateSchedule, Stage};
use crate::load::stats::Recorder;

/// A checkout the store answered 202 to: a promise that the order will be processed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ack {
    pub order_id: i64,
    pub correlation_id: String,
    pub at_ms: i64,
}

#[derive(Default)]
pub struct Ledger(Mutex<Vec<Ack>>);

impl Ledger {
    pub fn acks(&self) -> Vec<Ack> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn observe(&self, seen: &Seen<'_>) {
        let is_checkout = seen.method == "POST" && (seen.path == "/checkout" || seen.path == "/orders");
        if is_checkout
            && seen.status == 202
            && let Some(order_id) = seen.body["order_id"].as_i64()
        {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                order_id,
                correlation_id: seen.correlation_id.to_string(),
                at_ms: super::journal::now_ms(),
            });
        }
    }
}

pub struct Traffic {
    cancel: CancellationToken,
    handle: JoinHandle<ScheduleReport>,
    pub recorder: Arc<Recorder>,
    pub ledger: Arc<Ledger>,
    seen_requests: u64,
    seen_errors: u64,
}

/// Requests and errors since the last look.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Delta {
    pub requests: u64,
    pub errors: u64,
}

impl Traffic {
    /// Starts `rate` scenario transactions per second against `base` until stopped (capped at
    /// `max_run`).
    pub fn start(base: &str, spec: &super::file::Traffic, run_id: &str, max_run: Duration) -> Result<Traffic, String> {
        let scenario = crate::load::scenario::load(&spec.scenario).map_err(|e| e.to_string())?;
        let ledger = Arc::new(Ledger::default());
        let observer_ledger = ledger.clone();
        let observer: Observer = Arc::new(move |seen: &Seen<'_>| observer_ledger.observe(seen));
        let executor =
            Executor::new(base, scenario, None, spec.timeout.0, 256, run_id, Instant::now())?.with_observer(observer);
        let schedule = RateSchedule {
            stages: vec![Stage {
                duration: max_run,
                from: spec.rate,
                to: spec.rate,
            }],
        };
        let recorder = Arc::new(Recorder::default());
        let cancel = CancellationToken::new();
        let handle = {
            let (recorder, cancel) = (recorder.clone(), cancel.clone());
            let executor = Arc::new(executor);
            tokio::spawn(async move { open::run(executor, &schedule, 256, 4096, recorder, cancel).await })
        };
        Ok(Traffic {
            cancel,
            handle,
            recorder,
            ledger,
            seen_requests: 0,
            seen_errors: 0,
        })
    }

    pub fn delta(&mut self) -> Delta {
        let requests = self.recorder.live.requests.load(Ordering::Relaxed);
        let errors = self.recorder.live.errors.load(Ordering::Relaxed);
        let delta = Delta {
            requests: requests - self.seen_requests,
            errors: errors - self.seen_errors,
        };
        self.seen_requests = requests;
        self.seen_errors = errors;
        delta
    }

    pub fn totals(&self) -> Delta {
        Delta {
            requests: self.recorder.live.requests.load(Ordering::Relaxed),
            errors: self.recorder.live.errors.load(Ordering::Relaxed),
        }
    }

    /// Stops the arrivals and waits (bounded) for transactions in flight.
    pub async fn stop(self) -> (ScheduleReport, Arc<Recorder>, Arc<Ledger>) {
        self.cancel.cancel();
        let report = tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        (report, self.recorder, self.ledger)
    }
}
