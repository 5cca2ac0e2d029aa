//! Plain mode on a schedule (`--connections N --rate R`): the open model's arrivals, one GET
//! of one URL each, over plain mode's own HTTP/1.1 connections. The arrival clock hands each
//! due time to the load threads in turn; on each thread, a free connection takes the next
//! due arrival. A request's latency counts from when it was due (coordinated-omission
//! correct), its service time from the actual send; an arrival that waits for a free
//! connection more than 2 ms starts late, and past `max_queue` waiting ones are dropped.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use crate::traffic::open::{LATE_AFTER, ScheduleReport, UNSENT, arrivals};
use crate::traffic::plain::{PlainTarget, load_threads, timed_exchange};
use crate::traffic::raw_http::RawConn;
use crate::traffic::schedule::{RateSchedule, Shard};
use crate::traffic::stats::{ErrorKind, Live, Sample, Stats};

/// Arrivals the clock hands out this close together came in one of its wakes.
const SAME_WAKE: Duration = Duration::from_micros(20);

/// What a plain open run is asked to do.
#[derive(Debug, Clone)]
pub struct PlainSchedule {
    pub connections: usize,
    pub schedule: RateSchedule,
    pub shard: Option<Shard>,
    pub max_queue: usize,
    pub timeout: Duration,
}

/// Counters the arrival clock and the connections share.
#[derive(Default)]
struct Shared {
    /// Handed out, not yet taken by a connection.
    queued: AtomicUsize,
    peak_queue: AtomicUsize,
    intended: AtomicU64,
    generator_late: AtomicU64,
    dropped: AtomicU64,
    started: AtomicU64,
    late: AtomicU64,
}

pub async fn run(
    target: PlainTarget,
    plan: PlainSchedule,
    run_id: String,
    live: Arc<Live>,
    cancel: CancellationToken,
) -> (Stats, ScheduleReport) {
    let start = Instant::now();
    let threads = load_threads(plan.connections);
    let shared = Arc::new(Shared::default());
    let (target, run_id) = (Arc::new(target), Arc::<str>::from(run_id));
    let mut feeds = Vec::new();
    let mut results = Vec::new();
    for thread in 0..threads {
        let (feed, due) = unbounded_channel();
        feeds.push(feed);
        let share: Vec<usize> = (0..plan.connections).filter(|c| c % threads == thread).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        results.push(rx);
        let (target, run_id, live, cancel, shared) = (
            target.clone(),
            run_id.clone(),
            live.clone(),
            cancel.clone(),
            shared.clone(),
        );
        let timeout = plan.timeout;
        let spawned = std::thread::Builder::new()
            .name(format!("recordctl-plain-{thread}"))
            .spawn(move || {
                let conns = Conns {
                    target,
                    run_id,
                    live,
                    cancel,
                    shared,
                    start,
                    timeout,
                };
                let _ = tx.send(conns.run_thread(share, due));
            });
        if let Err(err) = spawned {
            eprintln!("recordctl: cannot start a load thread: {err}");
        }
    }
    hand_out(&plan, start, cancel.clone(), shared.clone(), feeds);
    let mut stats = Stats::default();
    for rx in results {
        if let Ok(s) = rx.await {
            stats.merge(s);
        }
    }
    let report = report(&plan, &shared);
    for _ in 0..report.dropped {
        record_unsent(
            &mut stats,
            "the queue of arrivals waiting for a free connection was full",
        );
    }
    for _ in 0..report.unsent_at_interrupt {
        record_unsent(
            &mut stats,
            "still waiting for a free connection when the run was interrupted",
        );
    }
    (stats, report)
}

/// Starts the arrival clock: each due time goes to the next thread's feed, or is dropped
/// when `max_queue` arrivals already wait.
fn hand_out(
    plan: &PlainSchedule,
    start: Instant,
    cancel: CancellationToken,
    shared: Arc<Shared>,
    feeds: Vec<UnboundedSender<Instant>>,
) {
    let max_queue = plan.max_queue;
    let (mut next, mut last_emit) = (0, start);
    arrivals(plan.schedule.clone(), plan.shard, start, cancel, move |due| {
        shared.intended.fetch_add(1, Ordering::Relaxed);
        if Instant::now().saturating_duration_since(due) > LATE_AFTER {
            shared.generator_late.fetch_add(1, Ordering::Relaxed);
        }
        let queued = shared.queued.load(Ordering::Relaxed);
        if queued >= max_queue {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        shared.queued.fetch_add(1, Ordering::Relaxed);
        shared.peak_queue.fetch_max(queued + 1, Ordering::Relaxed);
        // Arrivals handed out in one wake of the clock go to one thread: one wake-up of it,
        // not one per arrival; the next wake's go to the next thread.
        let now = Instant::now();
        if now.saturating_duration_since(last_emit) > SAME_WAKE {
            next = (next + 1) % feeds.len();
        }
        last_emit = now;
        if feeds[next].send(due).is_err() {
            // That thread is gone (interrupted): nobody will take the arrival.
            shared.queued.fetch_sub(1, Ordering::Relaxed);
        }
        true
    });
}

fn report(plan: &PlainSchedule, shared: &Shared) -> ScheduleReport {
    let intended = shared.intended.load(Ordering::Relaxed);
    let started = shared.started.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    ScheduleReport {
        target_rate_tps: plan.schedule.peak() / plan.shard.map_or(1, |s| s.count) as f64,
        intended,
        started,
        late: shared.late.load(Ordering::Relaxed),
        generator_late: shared.generator_late.load(Ordering::Relaxed),
        dropped,
        unsent_at_interrupt: intended.saturating_sub(started + dropped),
        max_in_flight: plan.connections,
        peak_queue: shared.peak_queue.load(Ordering::Relaxed),
    }
}

fn record_unsent(stats: &mut Stats, why: &str) {
    stats.record(&Sample {
        name: UNSENT,
        correlation_id: "",
        latency: Duration::ZERO,
        service: None,
        status: None,
        error: Some((ErrorKind::Dropped, why.to_string())),
        at: Duration::ZERO,
    });
}

/// One load thread's connections and what they share.
struct Conns {
    target: Arc<PlainTarget>,
    run_id: Arc<str>,
    live: Arc<Live>,
    cancel: CancellationToken,
    shared: Arc<Shared>,
    start: Instant,
    timeout: Duration,
}

impl Conns {
    /// Runs this thread's connections on a single-threaded runtime until its feed ends.
    fn run_thread(self, share: Vec<usize>, due: UnboundedReceiver<Instant>) -> Stats {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return Stats::default();
        };
        let stats = Rc::new(RefCell::new(Stats::default()));
        // Free connections queue for the feed, in turn: the first to wait takes the next arrival.
        let due = Rc::new(tokio::sync::Mutex::new(due));
        let this = Rc::new(self);
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let tasks: Vec<_> = share
                .into_iter()
                .map(|worker| {
                    let (this, due, stats) = (this.clone(), due.clone(), stats.clone());
                    tokio::task::spawn_local(async move { this.connection_loop(worker, &due, &stats).await })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        });
        stats.take()
    }

    async fn connection_loop(
        &self,
        worker: usize,
        feed: &tokio::sync::Mutex<UnboundedReceiver<Instant>>,
        stats: &RefCell<Stats>,
    ) {
        let mut conn: Option<RawConn> = None;
        let mut seq: u64 = 0;
        let mut correlation_id = String::with_capacity(48);
        loop {
            let next = tokio::select! {
                due = async { feed.lock().await.recv().await } => due,
                _ = self.cancel.cancelled() => None,
            };
            let Some(due) = next else { break };
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.started.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            correlation_id.clear();
            use std::fmt::Write;
            let _ = write!(correlation_id, "{}-{worker}-{seq}", self.run_id);
            let sent = Instant::now();
            if sent.saturating_duration_since(due) > LATE_AFTER {
                self.shared.late.fetch_add(1, Ordering::Relaxed);
                self.live.late.fetch_add(1, Ordering::Relaxed);
            }
            let (status, error) = timed_exchange(&mut conn, &self.target, &correlation_id, self.timeout).await;
            let done = Instant::now();
            self.live.add(1, u64::from(error.is_some()));
            if seq % 16 == 1 {
                self.live.sample(done - sent);
            }
            stats.borrow_mut().record(&Sample {
                name: &self.target.name,
                correlation_id: &correlation_id,
                latency: done - due,
                service: Some(done - sent),
                status,
                error,
                at: due - self.start,
            });
        }
    }
}
