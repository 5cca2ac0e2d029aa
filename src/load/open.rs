//! The open model: arrivals on schedule whether or not earlier ones have answered. Each
//! arrival runs one transaction; its first request's latency counts from the intended
//! arrival time (coordinated-omission-correct), its service time from the actual send.
//! At most `max_in_flight` run at once; later arrivals wait (late), and past `max_queue`
//! waiting arrivals are dropped and reported as errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::load::executor::{Executor, Pace};
use crate::load::plan::RateSchedule;
use crate::load::stats::{ErrorKind, Recorder, Sample};

/// An arrival counts as late when it starts this much after it was due.
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// How well the schedule was kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScheduleReport {
    pub target_rate_rps: f64,
    pub intended: u64,
    pub started: u64,
    /// Started more than 2 ms after they were due (waiting for a free slot, or a busy client).
    pub late: u64,
    /// Never sent: the queue of waiting arrivals was full.
    pub dropped: u64,
    pub max_in_flight: usize,
    pub peak_queue: usize,
}

pub async fn run(
    executor: Arc<Executor>,
    schedule: &RateSchedule,
    max_in_flight: usize,
    max_queue: usize,
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
) -> ScheduleReport {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let waiting = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let started_count = Arc::new(AtomicU64::new(0));
    let mut report = ScheduleReport {
        target_rate_rps: schedule.peak(),
        max_in_flight,
        ..ScheduleReport::default()
    };
    let start = Instant::now();
    let arrivals = arrival_clock(schedule.clone(), start, cancel.clone());
    let mut arrivals = arrivals;
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(due) = arrivals.recv().await {
        let offset = due - start;
        report.intended += 1;
        let queued = waiting.load(Ordering::Relaxed);
        report.peak_queue = report.peak_queue.max(queued);
        if slots.available_permits() == 0 && queued >= max_queue {
            report.dropped += 1;
            let correlation_id = executor.next_correlation_id();
            recorder.record(&Sample {
                name: "(dropped arrival)",
                correlation_id: &correlation_id,
                latency: Duration::ZERO,
                service: None,
                status: None,
                error: Some((
                    ErrorKind::Dropped,
                    format!("{queued} arrivals already waiting for one of {max_in_flight} slots"),
                )),
                at: offset,
            });
        } else {
            let (executor, recorder, slots, waiting, late, started_count, cancel) = (
                executor.clone(),
                recorder.clone(),
                slots.clone(),
                waiting.clone(),
                late.clone(),
                started_count.clone(),
                cancel.clone(),
            );
            tasks.spawn(async move {
                waiting.fetch_add(1, Ordering::Relaxed);
                let permit = tokio::select! {
                    permit = slots.acquire_owned() => permit,
                    _ = cancel.cancelled() => { waiting.fetch_sub(1, Ordering::Relaxed); return; }
                };
                waiting.fetch_sub(1, Ordering::Relaxed);
                let Ok(_permit) = permit else { return };
                started_count.fetch_add(1, Ordering::Relaxed);
                if Instant::now().saturating_duration_since(due) > LATE_AFTER {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                // Once started, a transaction runs to its end (each request bounded by the
                // timeout) even after Ctrl-C, so every request sent is in the report.
                let index = executor.pick_transaction();
                executor
                    .run_transaction(
                        index,
                        Pace {
                            intended: Some(due),
                            think: false,
                        },
                        &recorder,
                    )
                    .await;
            });
        }
        // Reap finished tasks so the set does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    report.started = started_count.load(Ordering::Relaxed);
    report.late = late.load(Ordering::Relaxed);
    report
}

/// Emits each arrival's due time from a thread of its own that sleeps to the exact instant:
/// tokio's timer wheel rounds up to whole milliseconds, which would add up to 1 ms of the
/// tool's own lateness to every corrected latency.
fn arrival_clock(
    schedule: RateSchedule,
    start: Instant,
    cancel: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("recordctl-arrivals".into())
        .spawn(move || {
            let end = start + schedule.duration();
            let mut offset = Duration::ZERO;
            while !cancel.is_cancelled() {
                let rate = schedule.rate_at(offset);
                if rate <= 0.0 {
                    // A stage that starts from zero: look again a millisecond later.
                    offset += Duration::from_millis(1);
                    if start + offset >= end {
                        break;
                    }
                    continue;
                }
                let due = start + offset;
                if due >= end {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    // Sleep in slices so a cancel is noticed within 50 ms.
                    std::thread::sleep((due - now).min(Duration::from_millis(50)));
                    if Instant::now() < due {
                        continue;
                    }
                }
                if tx.send(due).is_err() {
                    break;
                }
                offset += Duration::from_secs_f64(1.0 / rate);
            }
        })
        .expect("spawn the arrival clock thread");
    rx
}
