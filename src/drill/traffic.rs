//! Background traffic for a drill: the load engine's open model (arrivals on schedule, so an
//! outage cannot slow the traffic down and hide itself) running a scenario, with a ledger of
//! every checkout: the ones the store acknowledged, the ones it refused and the ones that got
//! no answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::traffic::EngineError;
use crate::traffic::executor::{Executor, Observer, Seen};
use crate::traffic::open::{self, ScheduleReport};
use crate::traffic::schedule::{RateSchedule, Stage};
use crate::traffic::stats::Recorder;

/// A checkout the store answered 202 to: a promise that the order will be processed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ack {
    pub order_id: i64,
    pub correlation_id: String,
    pub at_ms: i64,
}

/// A checkout that was not acknowledged: answered with an error (the store promised nothing,
/// so it must have made no order) or not answered at all (either outcome is possible).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unacked {
    pub correlation_id: String,
    /// The answer's status, 0 when none came.
    pub status: u16,
    pub at_ms: i64,
}

#[derive(Default)]
pub struct Ledger(Mutex<Entries>);

#[derive(Default, Clone)]
struct Entries {
    acks: Vec<Ack>,
    refused: Vec<Unacked>,
    unanswered: Vec<Unacked>,
}

impl Ledger {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.entries().acks.clone()
    }

    /// Checkouts answered with an error status.
    pub fn refused(&self) -> Vec<Unacked> {
        self.entries().refused.clone()
    }

    /// Of the refused checkouts, those the store's rate limit refused (429).
    pub fn rate_limited(&self) -> usize {
        self.entries().refused.iter().filter(|u| u.status == 429).count()
    }

    /// Checkouts with no answer, or an acknowledgement without an order id.
    pub fn unanswered(&self) -> Vec<Unacked> {
        self.entries().unanswered.clone()
    }

    pub(crate) fn observe(&self, seen: &Seen<'_>) {
        let is_checkout = seen.method == "POST" && (seen.path == "/checkout" || seen.path == "/orders");
        if !is_checkout {
            return;
        }
        let correlation_id = seen.correlation_id.to_string();
        let at_ms = super::journal::now_ms();
        let order_id = seen.body["order_id"].as_i64();
        let mut entries = self.entries();
        match (seen.status, order_id) {
            (200..=299, Some(order_id)) => entries.acks.push(Ack {
                order_id,
                correlation_id,
                at_ms,
            }),
            (400..=599, _) => entries.refused.push(Unacked {
                correlation_id,
                status: seen.status,
                at_ms,
            }),
            (status, _) => entries.unanswered.push(Unacked {
                correlation_id,
                status,
                at_ms,
            }),
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
    pub fn start(
        base: &str,
        spec: &super::file::Traffic,
        run_id: &str,
        max_run: Duration,
    ) -> Result<Traffic, EngineError> {
        let scenario = crate::traffic::scenario::load(&spec.scenario).map_err(|e| EngineError::Setup(e.to_string()))?;
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
            tick: None,
            tick_auto: false,
        };
        let recorder = Arc::new(Recorder::default());
        let cancel = CancellationToken::new();
        let handle = {
            let (recorder, cancel) = (recorder.clone(), cancel.clone());
            let executor = Arc::new(executor);
            tokio::spawn(async move { open::run(executor, &schedule, None, 256, 4096, recorder, cancel).await })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn seen<'a>(path: &'a str, status: u16, body: &'a Value, correlation_id: &'a str) -> Seen<'a> {
        Seen {
            name: "checkout",
            method: "POST",
            path,
            status,
            body,
            correlation_id,
        }
    }

    #[test]
    fn checkouts_are_sorted_into_acknowledged_refused_and_unanswered() {
        let ledger = Ledger::default();
        let accepted = json!({ "order_id": 7, "status": "pending" });
        let error = json!({ "error": "unavailable" });
        ledger.observe(&seen("/checkout", 202, &accepted, "run-1"));
        ledger.observe(&seen("/checkout", 503, &error, "run-2"));
        ledger.observe(&seen("/checkout", 409, &error, "run-3"));
        ledger.observe(&seen("/checkout", 429, &error, "run-7"));
        ledger.observe(&seen("/checkout", 0, &Value::Null, "run-4"));
        ledger.observe(&seen("/checkout", 202, &Value::Null, "run-5"));
        ledger.observe(&seen("/products", 200, &accepted, "run-6"));
        let acks = ledger.acks();
        assert_eq!(acks.len(), 1);
        assert_eq!((acks[0].order_id, acks[0].correlation_id.as_str()), (7, "run-1"));
        let refused: Vec<_> = ledger
            .refused()
            .into_iter()
            .map(|u| (u.correlation_id, u.status))
            .collect();
        assert_eq!(
            refused,
            [
                ("run-2".to_string(), 503),
                ("run-3".to_string(), 409),
                ("run-7".to_string(), 429)
            ]
        );
        assert_eq!(ledger.rate_limited(), 1, "429s are refused, and counted apart");
        let unanswered: Vec<_> = ledger
            .unanswered()
            .into_iter()
            .map(|u| (u.correlation_id, u.status))
            .collect();
        assert_eq!(unanswered, [("run-4".to_string(), 0), ("run-5".to_string(), 202)]);
    }
}
