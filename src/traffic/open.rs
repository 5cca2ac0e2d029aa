//! The open model: arrivals on schedule whether or not earlier ones have answered. Each
//! arrival runs one transaction; its first request's latency counts from the intended
//! arrival time (coordinated-omission-correct), its service time from the actual send.
//! At most `max_in_flight` run at once; later arrivals wait (late), and past `max_queue`
//! waiting arrivals are dropped and reported as errors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::traffic::executor::{Executor, Pace};
use crate::traffic::schedule::{RateSchedule, Shard};
use crate::traffic::stats::{ErrorKind, Recorder, Sample};

/// An arrival counts as late when it starts this much after it was due.
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// How well the schedule was kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScheduleReport {
    /// The schedule's peak arrival rate: transactions (scenario iterations) per second, each
    /// of which may make several requests.
    pub target_rate_tps: f64,
    pub intended: u64,
    pub started: u64,
    /// Started more than 2 ms after they were due (waiting for a free slot, or a busy client).
    pub late: u64,
    /// Of all arrivals, those this process handed out more than 2 ms after they were due:
    /// the generator itself fell behind (CPU, timers), before any wait for the target.
    #[serde(default)]
    pub generator_late: u64,
    /// Of all arrivals, those a loop's relief handed out while the loop was held up (see
    /// `run_part`); 0 where no relief runs.
    #[serde(default)]
    pub relieved: u64,
    /// Never sent: the queue of waiting arrivals was full.
    pub dropped: u64,
    /// Never sent: still waiting for a slot when the run was interrupted.
    #[serde(default)]
    pub unsent_at_interrupt: u64,
    pub max_in_flight: usize,
    pub peak_queue: usize,
    /// Arrivals were sent in groups, one per this many microseconds (`--tick`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_us: Option<u64>,
    /// The tick was `--tick auto`'s, chosen by the rate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tick_auto: bool,
}

impl ScheduleReport {
    /// The generator fell behind its own schedule for more than 1% of the arrivals, enough to
    /// move the p99: their latency from the intended send time holds the generator's delay,
    /// not the target's. (Fewer are shown on the schedule line, without the warning.)
    pub fn generator_fell_behind(&self) -> bool {
        self.generator_late * 100 > self.intended
    }
}

/// Arrivals a second one loop hands out at the schedule's peak: one loop keeps 20,000/s with
/// room to spare on this kind of machine, and one loop wakes least.
const ARRIVALS_PER_LOOP: f64 = 20_000.0;

/// Runs the schedule's arrivals, each a transaction of the executor's scenario.
///
/// The arrivals and their transactions run on event loops of their own: threads each with a
/// single-threaded runtime, one per 20,000 arrivals a second at the schedule's peak (at most
/// one per core, per pool of the executor and per slot). A loop's timer, its transactions and
/// their connections live on one thread, so an arrival and its answer wake that thread alone,
/// never a second worker of a shared runtime to share the work (a cross-thread wake for most
/// requests, a fifth of the CPU at 20,000/s). Loop `l` of `L` takes every `L`-th arrival and
/// its share of `max_in_flight` and `max_queue`.
pub async fn run(
    executor: Arc<Executor>,
    schedule: &RateSchedule,
    shard: Option<Shard>,
    max_in_flight: usize,
    max_queue: usize,
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
) -> ScheduleReport {
    let loops = event_loops(schedule, shard, executor.lanes(), max_in_flight);
    let open = Arc::new(OpenRun {
        executor,
        schedule: schedule.clone(),
        shard,
        recorder,
        cancel,
        start: Instant::now(),
    });
    run_in_loops(open, loops, max_in_flight, max_queue).await
}

/// How many event loops an open run takes (see [`run`]).
fn event_loops(schedule: &RateSchedule, shard: Option<Shard>, lanes: usize, max_in_flight: usize) -> usize {
    loops_by_rate(schedule, shard).min(lanes).min(max_in_flight).max(1)
}

/// The schedule's peak arrival rate for this shard (the whole schedule's without one).
pub(crate) fn shard_peak(schedule: &RateSchedule, shard: Option<Shard>) -> f64 {
    schedule.peak() / shard.map_or(1, |s| s.count) as f64
}

/// Event loops for a schedule, by its rate: one per 20,000 arrivals a second at its peak (a
/// loop that is its own clock keeps that rate with room to spare, and one loop wakes
/// least), at least one, at most one per core. Plain mode's loops count the same way.
pub(crate) fn loops_by_rate(schedule: &RateSchedule, shard: Option<Shard>) -> usize {
    let by_rate = (shard_peak(schedule, shard) / ARRIVALS_PER_LOOP).ceil();
    let by_rate = if by_rate.is_finite() && by_rate >= 1.0 {
        by_rate as usize
    } else {
        1
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    by_rate.min(cores)
}

/// What every loop of an open run shares.
struct OpenRun {
    executor: Arc<Executor>,
    schedule: RateSchedule,
    shard: Option<Shard>,
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
    start: Instant,
}

/// One loop's share of an open run: every `of`-th arrival from the `index`-th, its slots and
/// queue, and the executor's pools `index`, `index + of`, … (no two loops share a pool, so
/// a connection is only ever driven by the runtime it was made on).
#[derive(Debug, Clone, Copy)]
struct Part {
    index: usize,
    of: usize,
    max_in_flight: usize,
    max_queue: usize,
}

impl Part {
    /// The pools the loop uses.
    fn lanes(&self, lanes: usize) -> impl Iterator<Item = usize> {
        let (index, of) = (self.index, self.of);
        (0..(lanes / of).max(1)).map(move |j| index + of * j)
    }
}

/// `total` split `of` ways: the `index`-th share (the first ones take the remainder).
fn share(total: usize, index: usize, of: usize) -> usize {
    total / of + usize::from(index < total % of)
}

async fn run_in_loops(open: Arc<OpenRun>, loops: usize, max_in_flight: usize, max_queue: usize) -> ScheduleReport {
    let mut running = Vec::with_capacity(loops);
    for index in 0..loops {
        let part = Part {
            index,
            of: loops,
            max_in_flight: share(max_in_flight, index, loops),
            max_queue: share(max_queue, index, loops),
        };
        running.push(on_a_loop(open.clone(), part));
    }
    let mut report = ScheduleReport {
        target_rate_tps: shard_peak(&open.schedule, open.shard),
        max_in_flight,
        tick_us: open.schedule.tick_us(),
        tick_auto: open.schedule.tick_auto,
        ..ScheduleReport::default()
    };
    for part in running {
        let part = part.await;
        report.intended += part.intended;
        report.started += part.started;
        report.late += part.late;
        report.generator_late += part.generator_late;
        report.relieved += part.relieved;
        report.dropped += part.dropped;
        report.unsent_at_interrupt += part.unsent_at_interrupt;
        // Each loop's own peak, added up: exact with one loop, a bound with several.
        report.peak_queue += part.peak_queue;
    }
    report
}

/// Starts `part` at once on a thread of its own with a single-threaded runtime (where neither
/// can be had, on the caller's runtime); its report when it ends. Every loop starts before
/// any is awaited: they run side by side.
fn on_a_loop(open: Arc<OpenRun>, part: Part) -> impl Future<Output = ScheduleReport> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let theirs = open.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("recordctl-open-{}", part.index))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let report = match runtime {
                Ok(runtime) => Some(runtime.block_on(run_part(theirs, part))),
                Err(err) => {
                    eprintln!("recordctl: no runtime for an arrival loop ({err}); it runs on the main one");
                    None
                }
            };
            let _ = tx.send(report);
        });
    let handle = match spawned {
        Ok(handle) => Some(handle),
        Err(err) => {
            eprintln!("recordctl: cannot start an arrival loop thread ({err}); it runs on the main runtime");
            None
        }
    };
    // Started now, not when awaited.
    let here = handle.is_none().then(|| on_this_runtime(open.clone(), part));
    async move {
        if let Some(here) = here {
            return joined(here.await);
        }
        match rx.await {
            Ok(Some(report)) => report,
            Ok(None) => joined(on_this_runtime(open, part).await),
            // The loop ended without a report: it panicked. The panic goes on here.
            Err(_) => match handle.map(|handle| tokio::task::spawn_blocking(move || handle.join())) {
                Some(join) => match join.await {
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    _ => ScheduleReport::default(),
                },
                None => ScheduleReport::default(),
            },
        }
    }
}

/// Starts `part` on the caller's runtime.
fn on_this_runtime(open: Arc<OpenRun>, part: Part) -> tokio::task::JoinHandle<ScheduleReport> {
    tokio::spawn(run_part(open, part))
}

/// A loop's report; its panic goes on here.
fn joined(result: Result<ScheduleReport, tokio::task::JoinError>) -> ScheduleReport {
    match result {
        Ok(report) => report,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        // The runtime is shutting down: nothing more to report.
        Err(_) => ScheduleReport::default(),
    }
}

/// How long an arrival may be overdue before a loop's relief hands it out in the loop's place:
/// well inside [`LATE_AFTER`], so an arrival the relief takes still starts on time.
const RELIEF_AFTER: Duration = Duration::from_millis(1);

/// Runs one loop's share of the arrivals and their transactions, on this runtime; the part's
/// report.
///
/// On Linux a loop has a relief: a second thread with a runtime and a timer of its own,
/// asleep while the loop keeps time. Each time the loop goes to sleep until
/// its next arrival it sets the relief's timer to 1 ms after that one (a system call, no
/// wake-up). When the loop is held up — its CPU taken by another process or the kernel for a
/// few milliseconds, as a virtual machine's housekeeping does — the timer fires and the relief,
/// woken on another core, hands out every arrival then due on its own pool, until the loop is
/// back. Both take arrivals from one queue, so each is handed out once, and share the part's
/// slots and queue bound.
async fn run_part(open: Arc<OpenRun>, part: Part) -> ScheduleReport {
    let gate = Arc::new(Gate {
        slots: Arc::new(Semaphore::new(part.max_in_flight)),
        waiting: AtomicUsize::new(0),
        late: AtomicU64::new(0),
        started: AtomicU64::new(0),
        max_in_flight: part.max_in_flight,
        max_queue: part.max_queue,
    });
    let lanes: Vec<usize> = part.lanes(open.executor.lanes()).collect();
    let offsets = DueOffsets::new(open.schedule.clone(), open.shard).part(part.index, part.of);
    let (arrivals, relief) = arrivals_with_relief(&open, offsets, &gate, part.index);
    let mut report = hand_out(&open, arrivals, &gate, &lanes).await;
    if let Some(relief) = relief {
        let relieved = relief.report().await;
        report.relieved = relieved.intended;
        report.intended += relieved.intended;
        report.generator_late += relieved.generator_late;
        report.dropped += relieved.dropped;
        // Both hands saw the part's whole queue (the gate's count of waiting arrivals).
        report.peak_queue = report.peak_queue.max(relieved.peak_queue);
    }
    report.started = gate.started.load(Ordering::Relaxed);
    report.late = gate.late.load(Ordering::Relaxed);
    // Interrupted while waiting: neither started nor dropped by the queue, but counted.
    report.unsent_at_interrupt = report.intended.saturating_sub(report.started + report.dropped);
    report
}

/// The part's arrivals for its loop and, where one can be had, its relief.
fn arrivals_with_relief(
    open: &Arc<OpenRun>,
    offsets: Offsets,
    gate: &Arc<Gate>,
    index: usize,
) -> (Arrivals, Option<Relief>) {
    #[cfg(target_os = "linux")]
    if let Ok(timer) = precise::Timer::new() {
        let queue = Arc::new(DueQueue::new(offsets, open.start));
        let (standby, relief) = match relieve(open, &queue, gate, index) {
            Some((standby, relief)) => (Some(standby), Some(relief)),
            None => (None, None),
        };
        let arrivals = Arrivals::Timer {
            timer,
            queue,
            taken: VecDeque::new(),
            cancel: open.cancel.clone(),
            relief: standby,
        };
        return (arrivals, relief);
    }
    // Only Linux's timers make a relief.
    let _ = (gate, index);
    (Arrivals::new(offsets, open.start, open.cancel.clone()), None)
}

/// A loop's slots and counts, shared with its relief.
struct Gate {
    slots: Arc<Semaphore>,
    /// Arrivals handed out and not yet started.
    waiting: AtomicUsize,
    late: AtomicU64,
    started: AtomicU64,
    max_in_flight: usize,
    max_queue: usize,
}

/// Hands out arrivals and runs their transactions on this runtime, each on one of `lanes` in
/// turn, until the arrivals end and every transaction has; this hand's count of arrivals
/// (intended, handed out late, dropped, peak queue). The gate counts the started and late.
async fn hand_out(open: &OpenRun, mut arrivals: Arrivals, gate: &Arc<Gate>, lanes: &[usize]) -> ScheduleReport {
    let OpenRun {
        executor,
        recorder,
        cancel,
        start,
        ..
    } = open;
    let mut report = ScheduleReport::default();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(due) = arrivals.next().await {
        let offset = due.saturating_duration_since(*start);
        report.intended += 1;
        if Instant::now().saturating_duration_since(due) > LATE_AFTER {
            report.generator_late += 1;
        }
        // Arrivals not yet started, this one with them, less the slots free for them: the
        // ones that must wait. `waiting` is raised here, before the task exists, so the
        // bound is exact (but for arrivals a relief hands out at the very same moment).
        let must_wait = (gate.waiting.load(Ordering::SeqCst) + 1).saturating_sub(gate.slots.available_permits());
        if must_wait > gate.max_queue {
            let queued = must_wait - 1;
            report.dropped += 1;
            record_unsent(
                executor,
                recorder,
                offset,
                format!(
                    "{queued} arrivals already waiting for one of {} slots",
                    gate.max_in_flight
                ),
            );
        } else {
            gate.waiting.fetch_add(1, Ordering::SeqCst);
            let lane = lanes
                .get((report.intended % lanes.len().max(1) as u64) as usize)
                .copied()
                .unwrap_or(0);
            report.peak_queue = report.peak_queue.max(must_wait);
            let (executor, recorder, gate, cancel) = (executor.clone(), recorder.clone(), gate.clone(), cancel.clone());
            tasks.spawn(async move {
                let permit = tokio::select! {
                    biased;
                    permit = gate.slots.clone().acquire_owned() => permit,
                    _ = cancel.cancelled() => {
                        gate.waiting.fetch_sub(1, Ordering::SeqCst);
                        record_unsent(&executor, &recorder, offset, "still waiting for a slot when the run was interrupted".into());
                        return;
                    }
                };
                gate.waiting.fetch_sub(1, Ordering::SeqCst);
                let Ok(_permit) = permit else { return };
                gate.started.fetch_add(1, Ordering::Relaxed);
                if Instant::now().saturating_duration_since(due) > LATE_AFTER {
                    gate.late.fetch_add(1, Ordering::Relaxed);
                    recorder.live.late.fetch_add(1, Ordering::Relaxed);
                }
                recorder.live.in_flight.fetch_add(1, Ordering::Relaxed);
                // Once started, a transaction runs to its end (each request bounded by the
                // timeout) even after Ctrl-C, so every request sent is in the report.
                let index = executor.pick_transaction();
                executor
                    .run_transaction(
                        index,
                        Pace {
                            intended: Some(due),
                            think: false,
                            lane,
                        },
                        &recorder,
                    )
                    .await;
                recorder.live.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Reap finished tasks so the set does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    // The hand's runtime ends with it: the connections it made go too.
    for lane in lanes {
        executor.forget_idle(*lane);
    }
    report
}

/// The request name an arrival that was never sent is recorded under.
pub const UNSENT: &str = "(unsent arrival)";

/// An arrival that was never sent: an error with no latency.
fn record_unsent(executor: &Executor, recorder: &Recorder, at: Duration, why: String) {
    let correlation_id = executor.next_correlation_id();
    recorder.record(&Sample {
        name: UNSENT,
        correlation_id: &correlation_id,
        latency: Duration::ZERO,
        service: None,
        status: None,
        error: Some((ErrorKind::Dropped, why)),
        at,
    });
}

/// A loop's due arrivals, taken by the loop and by its relief: each once.
struct DueQueue {
    start: Instant,
    offsets: Mutex<std::iter::Peekable<Offsets>>,
}

impl DueQueue {
    fn new(offsets: Offsets, start: Instant) -> DueQueue {
        DueQueue {
            start,
            offsets: Mutex::new(offsets.peekable()),
        }
    }

    /// Moves every arrival due by `now` into `into`, if the first of them has been due for at
    /// least `overdue_by`; the due time of the next one left (`None` once none is left).
    fn take(&self, now: Instant, overdue_by: Duration, into: &mut VecDeque<Instant>) -> Option<Instant> {
        // A poisoned lock only means a panic elsewhere, which goes on from there.
        let mut offsets = self.offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = |offset: &Duration| self.start.checked_add(*offset);
        let first = due(offsets.peek()?)?;
        if first.checked_add(overdue_by).is_some_and(|by| by <= now) {
            while let Some(offset) = offsets.next_if(|offset| due(offset).is_some_and(|at| at <= now)) {
                into.extend(due(&offset));
            }
        }
        offsets.peek().and_then(due)
    }

    /// The due time of the next arrival not yet taken.
    #[cfg(target_os = "linux")]
    fn next_due(&self) -> Option<Instant> {
        let mut offsets = self.offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        offsets.peek().and_then(|offset| self.start.checked_add(*offset))
    }
}

/// Each arrival's due time, on time. On Linux the task that hands out the arrivals sleeps on
/// a timer of its own (a `timerfd` in the runtime's event loop: nanoseconds, where tokio's
/// timers round up to whole milliseconds), so an arrival costs one wake-up of the thread that
/// starts it; a loop's relief sleeps on another. Elsewhere, or when the timer cannot be made,
/// a thread of its own sleeps to each instant and hands the arrivals over ([`arrival_clock`]).
enum Arrivals {
    /// The loop's own: the arrivals from the queue as each comes due.
    #[cfg(target_os = "linux")]
    Timer {
        timer: precise::Timer,
        queue: Arc<DueQueue>,
        /// Taken from the queue, not yet handed out.
        taken: VecDeque<Instant>,
        cancel: CancellationToken,
        relief: Option<Standby>,
    },
    /// A relief's: the arrivals the loop left overdue, when its timer fires.
    #[cfg(target_os = "linux")]
    Relief {
        timer: precise::Timer,
        queue: Arc<DueQueue>,
        taken: VecDeque<Instant>,
        /// The loop's arrivals have ended (or the run was interrupted).
        done: CancellationToken,
    },
    Thread(tokio::sync::mpsc::UnboundedReceiver<Instant>),
}

/// A loop's hold on its relief: the relief's timer, and the word that the arrivals ended.
#[cfg(target_os = "linux")]
struct Standby {
    timer: std::os::fd::OwnedFd,
    done: CancellationToken,
}

/// A loop's share of the schedule: every `of`-th due offset from the `index`-th.
type Offsets = std::iter::StepBy<std::iter::Skip<DueOffsets>>;

impl Arrivals {
    /// The arrivals of `due` from `start`, with no relief.
    fn new(due: Offsets, start: Instant, cancel: CancellationToken) -> Arrivals {
        #[cfg(target_os = "linux")]
        if let Ok(timer) = precise::Timer::new() {
            return Arrivals::Timer {
                timer,
                queue: Arc::new(DueQueue::new(due, start)),
                taken: VecDeque::new(),
                cancel,
                relief: None,
            };
        }
        Arrivals::Thread(arrival_clock(due, start, cancel))
    }

    /// The next arrival's due time once it is due; `None` at the schedule's end or once
    /// cancelled.
    async fn next(&mut self) -> Option<Instant> {
        match self {
            #[cfg(target_os = "linux")]
            Arrivals::Timer {
                timer,
                queue,
                taken,
                cancel,
                relief,
            } => loop {
                if let Some(at) = taken.pop_front() {
                    return Some(at);
                }
                let next = match cancel.is_cancelled() {
                    true => None,
                    false => queue.take(Instant::now(), Duration::ZERO, taken),
                };
                if !taken.is_empty() {
                    continue;
                }
                let Some(at) = next else {
                    if let Some(relief) = relief {
                        relief.done.cancel();
                    }
                    return None;
                };
                if let Some(relief) = relief {
                    // Errors only for a closed timer: the relief has gone, the loop goes on.
                    let _ = at.checked_add(RELIEF_AFTER).map(|by| precise::arm(&relief.timer, by));
                }
                let cancelled = tokio::select! {
                    slept = timer.sleep_until(at) => {
                        // A timer that cannot be armed: tokio's (up to 1 ms late, and the
                        // lateness is counted, in the latency from due and as the
                        // generator's own).
                        if slept.is_err() {
                            tokio::time::sleep_until(at.into()).await;
                        }
                        false
                    }
                    _ = cancel.cancelled() => true,
                };
                if cancelled {
                    return None;
                }
            },
            #[cfg(target_os = "linux")]
            Arrivals::Relief {
                timer,
                queue,
                taken,
                done,
            } => loop {
                if let Some(at) = taken.pop_front() {
                    return Some(at);
                }
                let fired = tokio::select! {
                    biased;
                    _ = done.cancelled() => false,
                    fired = timer.fired() => fired.is_ok(),
                };
                if !fired {
                    return None;
                }
                let now = Instant::now();
                match queue.take(now, RELIEF_AFTER, taken) {
                    // Until the loop is back, the relief keeps its own time.
                    Some(next) => {
                        let by = next.checked_add(RELIEF_AFTER).unwrap_or(next);
                        // A timer that cannot be armed: the ones taken still go, then the
                        // relief waits for the end and leaves the rest to the loop.
                        if timer.arm(by).is_err() && taken.is_empty() {
                            return None;
                        }
                    }
                    None if taken.is_empty() => return None,
                    None => {}
                }
            },
            Arrivals::Thread(rx) => rx.recv().await,
        }
    }
}

/// A loop's relief at work on its thread; its report when it ends.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Relief {
    report: tokio::sync::oneshot::Receiver<ScheduleReport>,
    thread: std::thread::JoinHandle<()>,
}

impl Relief {
    /// Its report (the arrivals it handed out) once its transactions have ended; a panic on
    /// its thread goes on here.
    async fn report(self) -> ScheduleReport {
        if let Ok(report) = self.report.await {
            return report;
        }
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            _ => ScheduleReport::default(),
        }
    }
}

/// Starts a relief for loop `index` on a thread of its own, with a pool of its own (see
/// [`run_part`]); `None` when no timer or thread can be had (the loop runs alone, as it does
/// elsewhere than Linux).
#[cfg(target_os = "linux")]
fn relieve(open: &Arc<OpenRun>, queue: &Arc<DueQueue>, gate: &Arc<Gate>, index: usize) -> Option<(Standby, Relief)> {
    let lane = open.executor.spare_lane(index);
    let timer = precise::timerfd().ok()?;
    let standby = Standby {
        timer: timer.try_clone().ok()?,
        done: open.cancel.child_token(),
    };
    // Armed for the first arrival, should the loop be held up before it first sleeps.
    if let Some(by) = queue.next_due().and_then(|at| at.checked_add(RELIEF_AFTER)) {
        precise::arm(&timer, by).ok()?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (open, queue, gate, done) = (open.clone(), queue.clone(), gate.clone(), standby.done.clone());
    let thread = std::thread::Builder::new()
        .name(format!("recordctl-open-{index}-relief"))
        .spawn(move || {
            let report = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(async {
                    match precise::Timer::from_fd(timer) {
                        Ok(timer) => {
                            let arrivals = Arrivals::Relief {
                                timer,
                                queue,
                                taken: VecDeque::new(),
                                done,
                            };
                            hand_out(&open, arrivals, &gate, &[lane]).await
                        }
                        Err(_) => ScheduleReport::default(),
                    }
                }),
                Err(_) => ScheduleReport::default(),
            };
            let _ = tx.send(report);
        })
        .ok()?;
    Some((standby, Relief { report: rx, thread }))
}

/// One-shot timers with nanosecond resolution in tokio's event loop.
#[cfg(target_os = "linux")]
mod precise {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    use tokio::io::unix::AsyncFd;

    /// A `timerfd` on the monotonic clock (the one `Instant` reads), not yet armed.
    pub fn timerfd() -> io::Result<OwnedFd> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd that
        // nothing else owns.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned here alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Sets the timer of `fd` (or of any copy of it) to fire once at `at`, at once if that
    /// has passed. Re-arming resets its count of expirations, so a fired timer is ready again
    /// only after its next expiry.
    pub fn arm(fd: &OwnedFd, at: Instant) -> io::Result<()> {
        // Zero would disarm it: a nanosecond fires it at once.
        let left = at
            .saturating_duration_since(Instant::now())
            .max(std::time::Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                // Under 10^9: fits any c_long.
                tv_nsec: left.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the fd is a live timerfd; `spec` is a valid itimerspec; the old value is
        // not asked for (null).
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub struct Timer {
        fd: AsyncFd<OwnedFd>,
    }

    impl Timer {
        /// A new timer, registered with the current runtime.
        pub fn new() -> io::Result<Timer> {
            Timer::from_fd(timerfd()?)
        }

        /// The timer of `fd` (from [`timerfd`]), registered with the current runtime.
        pub fn from_fd(fd: OwnedFd) -> io::Result<Timer> {
            // SAFETY: the `AsyncFd` owns the fd: it stays open and the same until it is dropped
            // (a copy of it elsewhere refers to the same timer and does not close this one).
            let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
            Ok(Timer { fd })
        }

        /// Sets it to fire once at `at` (see [`arm`]).
        pub fn arm(&self, at: Instant) -> io::Result<()> {
            arm(self.fd.get_ref(), at)
        }

        /// Returns once it fires (or has fired since it was last armed or waited on). The
        /// count of expirations is never read: re-arming resets it.
        pub async fn fired(&self) -> io::Result<()> {
            let mut ready = self.fd.readable().await?;
            ready.clear_ready();
            Ok(())
        }

        /// Returns at `at` (or at once if it has passed): one system call per sleep besides
        /// the event loop's own.
        pub async fn sleep_until(&self, at: Instant) -> io::Result<()> {
            if at <= Instant::now() {
                return Ok(());
            }
            self.arm(at)?;
            self.fired().await
        }
    }
}

/// Emits each arrival's due time from a thread of its own that sleeps to the exact instant:
/// tokio's timer wheel rounds up to whole milliseconds, which would add up to 1 ms of the
/// tool's own lateness to every corrected latency. Arrival `k` is due when the integral of the
/// rate reaches `k`, so ramps (from zero too) send exactly what they promise.
fn arrival_clock(
    due: impl Iterator<Item = Duration> + Send + 'static,
    start: Instant,
    cancel: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    arrivals(due, start, cancel, move |due| tx.send(due).is_ok());
    rx
}

/// Calls `emit` with each arrival's due time (`start` plus each of `due`, usually a
/// schedule's [`DueOffsets`]), on time, from a thread of its own (see [`arrival_clock`]),
/// until the offsets end, `cancel`, or `emit` answers `false`.
pub(crate) fn arrivals(
    due: impl Iterator<Item = Duration> + Send + 'static,
    start: Instant,
    cancel: CancellationToken,
    mut emit: impl FnMut(Instant) -> bool + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("recordctl-arrivals".into())
        .spawn(move || {
            for offset in due {
                let Some(due) = start.checked_add(offset) else {
                    break;
                };
                loop {
                    if cancel.is_cancelled() {
                        return;
                    }
                    let now = Instant::now();
                    if due <= now {
                        break;
                    }
                    // Sleep in slices so a cancel is noticed within 50 ms.
                    std::thread::sleep((due - now).min(Duration::from_millis(50)));
                }
                if !emit(due) {
                    break;
                }
            }
        });
    // Without the thread no arrival is emitted: the run sends nothing and its report says so.
    if let Err(err) = spawned {
        eprintln!("recordctl: cannot start the arrival clock thread: {err}");
    }
}

/// The due offsets of a schedule's arrivals, in order: arrival `k` is due when the integral
/// of the rate reaches `k` — with a tick, at the start of the tick that instant falls in.
/// A shard gets every N-th arrival of the whole schedule.
pub(crate) struct DueOffsets {
    schedule: RateSchedule,
    shard: Option<Shard>,
    end: Duration,
    k: u64,
    tick: Option<Duration>,
}

impl DueOffsets {
    pub(crate) fn new(schedule: RateSchedule, shard: Option<Shard>) -> DueOffsets {
        let end = schedule.duration();
        DueOffsets {
            tick: schedule.tick.filter(|t| !t.is_zero()),
            schedule,
            shard,
            end,
            k: 0,
        }
    }

    /// Every `of`-th of these offsets from the `index`-th: one loop's share.
    fn part(self, index: usize, of: usize) -> Offsets {
        self.skip(index).step_by(of.max(1))
    }
}

impl Iterator for DueOffsets {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let offset = self.schedule.time_of_count(self.k as f64)?;
            if offset >= self.end {
                return None;
            }
            let k = self.k;
            self.k += 1;
            if self.shard.is_none_or(|s| s.owns(k)) {
                return Some(match self.tick {
                    Some(tick) => start_of_tick(offset, tick),
                    None => offset,
                });
            }
        }
    }
}

/// The start of the tick `offset` falls in.
fn start_of_tick(offset: Duration, tick: Duration) -> Duration {
    let ticks = offset.as_nanos() / tick.as_nanos();
    u64::try_from(ticks * tick.as_nanos()).map_or(offset, Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::traffic::schedule::Stage;

    fn ramp(tick: Option<Duration>) -> RateSchedule {
        RateSchedule {
            stages: vec![
                Stage {
                    duration: Duration::from_secs(2),
                    from: 0.0,
                    to: 3000.0,
                },
                Stage {
                    duration: Duration::from_secs(1),
                    from: 3000.0,
                    to: 3000.0,
                },
            ],
            tick,
            tick_auto: false,
        }
    }

    #[test]
    fn a_tick_moves_each_arrival_to_the_start_of_its_tick_and_keeps_every_one() {
        let tick = Duration::from_millis(1);
        let exact: Vec<Duration> = DueOffsets::new(ramp(None), None).collect();
        let grouped: Vec<Duration> = DueOffsets::new(ramp(Some(tick)), None).collect();
        assert_eq!(exact.len(), 6000);
        assert_eq!(grouped.len(), exact.len(), "the same arrivals, only grouped");
        for (e, g) in exact.iter().zip(&grouped) {
            assert_eq!(g.as_nanos() % tick.as_nanos(), 0, "{g:?} starts a tick");
            assert!(*g <= *e && *e - *g < tick, "{e:?} grouped at {g:?}");
        }
        // At 3,000/s a 1 ms tick holds three arrivals: groups, not one by one.
        let last_second: Vec<&Duration> = grouped.iter().filter(|g| **g >= Duration::from_secs(2)).collect();
        let mut groups = last_second.clone();
        groups.dedup();
        assert_eq!(last_second.len(), 3000);
        assert_eq!(groups.len(), 1000, "one group per millisecond");
        // Shards of a grouped schedule share it out exactly.
        let shards: usize = (0..3)
            .map(|index| DueOffsets::new(ramp(Some(tick)), Some(Shard { index, count: 3 })).count())
            .sum();
        assert_eq!(shards, 6000);
    }

    fn steady(rate: f64, seconds: u64) -> RateSchedule {
        RateSchedule {
            stages: vec![Stage {
                duration: Duration::from_secs(seconds),
                from: rate,
                to: rate,
            }],
            tick: None,
            tick_auto: false,
        }
    }

    /// Every arrival of `schedule`, as one loop takes them.
    fn every(schedule: &RateSchedule) -> Offsets {
        DueOffsets::new(schedule.clone(), None).part(0, 1)
    }

    /// The arrivals come from the event loop's own timer, each at or after its due time and
    /// every one of the schedule; a cancel ends them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn arrivals_are_handed_out_on_the_timer_no_earlier_than_due_and_stop_on_cancel() {
        let schedule = steady(2000.0, 1);
        let start = Instant::now();
        let mut arrivals = Arrivals::new(every(&schedule), start, CancellationToken::new());
        #[cfg(target_os = "linux")]
        assert!(
            matches!(arrivals, Arrivals::Timer { .. }),
            "Linux hands arrivals out on a timerfd"
        );
        let mut handed = Vec::new();
        while let Some(due) = arrivals.next().await {
            let now = Instant::now();
            assert!(
                now >= due,
                "arrival {} handed out {:?} before it was due",
                handed.len(),
                due - now
            );
            handed.push(due - start);
        }
        let expected: Vec<Duration> = DueOffsets::new(schedule.clone(), None).collect();
        assert_eq!(handed, expected, "every arrival, at its own instant");

        let cancel = CancellationToken::new();
        let mut arrivals = Arrivals::new(every(&steady(10.0, 60)), Instant::now(), cancel.clone());
        assert!(arrivals.next().await.is_some(), "the first is due at once");
        cancel.cancel();
        assert_eq!(arrivals.next().await, None, "a cancel ends the arrivals at once");
    }

    /// The loop and its relief take from one queue: each arrival once, the loop's as they
    /// come due, the relief's only once the first has been due for its 1 ms.
    #[test]
    fn the_queue_hands_each_arrival_out_once_and_to_the_relief_only_when_overdue() {
        let start = Instant::now();
        let due: Vec<Instant> = DueOffsets::new(steady(1000.0, 1), None).map(|o| start + o).collect();
        assert_eq!(due.len(), 1000);
        let between = |a: usize, b: usize| due[a] + (due[b] - due[a]) / 2;
        let queue = DueQueue::new(every(&steady(1000.0, 1)), start);
        let mut taken = VecDeque::new();
        assert_eq!(queue.next_due(), Some(due[0]));
        // The loop, between the third and the fourth: the first three.
        assert_eq!(queue.take(between(2, 3), Duration::ZERO, &mut taken), Some(due[3]));
        assert_eq!(Vec::from(taken.clone()), due[..3]);
        taken.clear();
        // The relief, half a millisecond after the fourth: not yet.
        assert_eq!(queue.take(between(3, 4), RELIEF_AFTER, &mut taken), Some(due[3]));
        assert!(taken.is_empty());
        // Past the fifth and 1 ms after the fourth: both.
        assert_eq!(queue.take(between(4, 5), RELIEF_AFTER, &mut taken), Some(due[5]));
        assert_eq!(Vec::from(taken.clone()), due[3..5]);
        taken.clear();
        // The rest, then the end: nothing more for either.
        assert_eq!(queue.take(due[999] + RELIEF_AFTER, RELIEF_AFTER, &mut taken), None);
        assert_eq!(Vec::from(taken.clone()), due[5..]);
        taken.clear();
        assert_eq!(queue.take(due[999] + LATE_AFTER, Duration::ZERO, &mut taken), None);
        assert!(taken.is_empty() && queue.next_due().is_none());
    }

    /// The portable clock (a thread of its own) hands out the same arrivals.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_clock_thread_hands_out_the_same_arrivals() {
        let schedule = steady(1000.0, 1);
        let start = Instant::now();
        let mut arrivals = Arrivals::Thread(arrival_clock(every(&schedule), start, CancellationToken::new()));
        let mut handed = Vec::new();
        while let Some(due) = arrivals.next().await {
            assert!(Instant::now() >= due);
            handed.push(due - start);
        }
        assert_eq!(handed, DueOffsets::new(schedule, None).collect::<Vec<_>>());
    }

    /// The loops' pools: each loop's own, within the executor's, none shared; the shares of
    /// slots and queue add up to the whole.
    #[test]
    fn loops_split_the_pools_slots_and_queue_without_sharing_any() {
        for lanes in 1..=8 {
            for of in 1..=lanes {
                let mut used = BTreeSet::new();
                for index in 0..of {
                    let part = Part {
                        index,
                        of,
                        max_in_flight: 1,
                        max_queue: 1,
                    };
                    let own: BTreeSet<usize> = part.lanes(lanes).collect();
                    assert_eq!(own.len(), (lanes / of).max(1), "{lanes} pools, loop {index} of {of}");
                    assert!(own.iter().all(|lane| *lane < lanes), "{own:?} of {lanes}");
                    assert!(used.is_disjoint(&own), "loop {index} of {of} shares a pool: {own:?}");
                    used.extend(own);
                }
            }
        }
        for (total, of) in [(256, 3), (1, 1), (7, 2), (100_000, 2), (0, 2)] {
            let shares: Vec<usize> = (0..of).map(|index| share(total, index, of)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total, "{shares:?}");
            assert!(
                shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1,
                "{shares:?}"
            );
        }
        let at = |rate: f64| RateSchedule {
            stages: vec![Stage {
                duration: Duration::from_secs(1),
                from: rate,
                to: rate,
            }],
            tick: None,
            tick_auto: false,
        };
        assert_eq!(event_loops(&at(20_000.0), None, 8, 256), 1);
        assert_eq!(event_loops(&at(0.5), None, 8, 256), 1);
        assert_eq!(event_loops(&at(1e9), None, 8, 1), 1, "one slot, one loop");
        assert_eq!(event_loops(&at(1e9), None, 1, 256), 1, "one pool, one loop");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(event_loops(&at(1e9), None, 8, 256), cores.min(8));
    }

    /// A server that answers every request 200 and keeps each request's correlation id.
    async fn counting_server() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ids = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let ids = ids.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            let id = head
                                .lines()
                                .find_map(|l| l.strip_prefix("x-correlation-id: "))
                                .unwrap_or("")
                                .to_string();
                            ids.lock().unwrap().push(id);
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    /// An executor of one GET / against `base` with 16 connections (8 pools), telling
    /// `observer` of each request on the thread that sent it.
    fn one_request(base: &str, observer: crate::traffic::executor::Observer) -> Arc<Executor> {
        let scenario = crate::traffic::scenario::parse(
            "name = \"one\"\n[[transaction]]\nname = \"get\"\n[[transaction.request]]\nname = \"GET /\"\npath = \"/\"\n",
            "one.toml",
        )
        .unwrap();
        let executor = Executor::new(base, scenario, None, Duration::from_secs(5), 16, "t", Instant::now()).unwrap();
        Arc::new(executor.with_observer(observer))
    }

    /// A loop held up (its thread blocked for 80 ms, as when the CPU it runs on is taken
    /// from it) has its arrivals handed out by its relief on another thread, on time: each
    /// once, and far fewer late than the ~160 due in the stall.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_up_loop_is_relieved_on_time_and_every_arrival_is_sent_once() {
        let (base, seen) = counting_server().await;
        let stall = Duration::from_millis(80);
        let (count, relief_sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (on_loop, by_relief) = (count.clone(), relief_sent.clone());
        let executor = one_request(
            &base,
            Arc::new(move |_seen| match std::thread::current().name() {
                // The loop's 400th request (0.2 s in) blocks its thread: the fault under test.
                Some("recordctl-open-0") if on_loop.fetch_add(1, Ordering::Relaxed) == 400 => {
                    std::thread::sleep(stall);
                }
                Some("recordctl-open-0-relief") => {
                    by_relief.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }),
        );
        let recorder = Arc::new(Recorder::default());
        let schedule = steady(2000.0, 1);
        let open = Arc::new(OpenRun {
            executor,
            schedule: schedule.clone(),
            shard: None,
            recorder: recorder.clone(),
            cancel: CancellationToken::new(),
            start: Instant::now(),
        });
        let report = run_in_loops(open, 1, 16, 10_000).await;
        assert_eq!(
            (
                report.intended,
                report.started,
                report.dropped,
                report.unsent_at_interrupt
            ),
            (2000, 2000, 0, 0),
            "{report:?}"
        );
        let ids = seen.lock().unwrap().clone();
        assert_eq!(ids.len(), 2000, "the server saw each arrival once");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 2000, "no arrival sent twice");
        assert!(
            report.relieved > 0 && relief_sent.load(Ordering::Relaxed) == report.relieved,
            "the relief sent what it reports: {report:?}, {} seen on its thread",
            relief_sent.load(Ordering::Relaxed)
        );
        let stalled = (stall.as_secs_f64() * 2000.0) as u64;
        assert!(
            report.generator_late * 2 < stalled,
            "{} of the {stalled} arrivals due in the stall were handed out late: {report:?}",
            report.generator_late
        );
    }

    /// Two loops on threads of their own send every arrival of the schedule once, each
    /// request on its loop's thread, all of them counted by the server and in the report.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_loops_on_their_own_threads_send_every_arrival_once() {
        let (base, seen) = counting_server().await;
        let sent_on = Arc::new(Mutex::new(Vec::new()));
        let on = sent_on.clone();
        let executor = one_request(
            &base,
            Arc::new(move |_seen| {
                let name = std::thread::current().name().unwrap_or("?").to_string();
                on.lock().unwrap().push((name, Instant::now()));
            }),
        );
        let recorder = Arc::new(Recorder::default());
        let schedule = RateSchedule {
            stages: vec![Stage {
                duration: Duration::from_secs(1),
                from: 2000.0,
                to: 2000.0,
            }],
            tick: None,
            tick_auto: false,
        };
        let open = Arc::new(OpenRun {
            executor: executor.clone(),
            schedule: schedule.clone(),
            shard: None,
            recorder: recorder.clone(),
            cancel: CancellationToken::new(),
            start: Instant::now(),
        });
        let report = run_in_loops(open, 2, 16, 10_000).await;
        let due = DueOffsets::new(schedule, None).count() as u64;
        assert_eq!(due, 2000);
        assert_eq!(
            (
                report.intended,
                report.started,
                report.dropped,
                report.unsent_at_interrupt
            ),
            (due, due, 0, 0),
            "{report:?}"
        );
        assert_eq!(report.max_in_flight, 16);
        let stats = recorder.take();
        assert_eq!(stats.requests, due);
        assert_eq!(stats.failures, 0, "{:?}", stats.failed.first());
        let ids = seen.lock().unwrap().clone();
        assert_eq!(ids.len() as u64, due, "the server saw each arrival once");
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            ids.len(),
            "correlation ids are unique"
        );
        let sent_on = sent_on.lock().unwrap().clone();
        // A loop held up for a moment (a busy test machine) hands some to its relief.
        let loop_of = |name: &str| name.strip_suffix("-relief").unwrap_or(name).to_string();
        let sent_on: Vec<(String, Instant)> = sent_on.into_iter().map(|(name, at)| (loop_of(&name), at)).collect();
        let threads: BTreeSet<&str> = sent_on.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            threads,
            BTreeSet::from(["recordctl-open-0", "recordctl-open-1"]),
            "each loop ran its requests on its own thread"
        );
        // Side by side, not one after the other: each loop's first request came before the
        // other's last (the schedule spreads each loop's 1,000 over the whole second).
        let on_loop =
            |name: &str| -> Vec<Instant> { sent_on.iter().filter(|(n, _)| n == name).map(|(_, at)| *at).collect() };
        for (one, other) in [
            ("recordctl-open-0", "recordctl-open-1"),
            ("recordctl-open-1", "recordctl-open-0"),
        ] {
            assert!(
                on_loop(one).iter().min() < on_loop(other).iter().max(),
                "{one} started only after {other} had ended"
            );
        }
    }
}
