//! The portable engine: one arrival clock thread hands each due time to the load threads
//! (single-threaded tokio runtimes) in turn; on each thread, a free connection takes the next
//! due arrival. Linux runs the event loops of `epoll` instead, which skip the hand-off.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{Ctx, Exchange, PlainSchedule};
use crate::traffic::open::{DueOffsets, arrivals};
use crate::traffic::plain::timed_exchange;
use crate::traffic::raw_http::RawConn;
use crate::traffic::stats::Stats;

/// Arrivals the clock hands out this close together came in one of its wakes.
const SAME_WAKE: Duration = Duration::from_micros(20);

#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(super) async fn run(ctx: &Arc<Ctx>, plan: &PlainSchedule, threads: usize) -> Stats {
    let mut feeds = Vec::new();
    let mut results = Vec::new();
    for thread in 0..threads {
        let (feed, due) = unbounded_channel();
        feeds.push(feed);
        let share: Vec<usize> = (0..plan.connections).filter(|c| c % threads == thread).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        results.push(rx);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("recordctl-plain-{thread}"))
            .spawn(move || {
                let _ = tx.send(run_thread(ctx, share, due));
            });
        if let Err(err) = spawned {
            eprintln!("recordctl: cannot start a load thread: {err}");
        }
    }
    hand_out(ctx.clone(), plan, feeds);
    let mut stats = Stats::default();
    for rx in results {
        if let Ok(s) = rx.await {
            stats.merge(s);
        }
    }
    stats
}

/// Starts the arrival clock: each due time goes to the next thread's feed, or is dropped
/// when `max_queue` arrivals already wait.
fn hand_out(ctx: Arc<Ctx>, plan: &PlainSchedule, feeds: Vec<UnboundedSender<Instant>>) {
    let (mut next, mut last_emit) = (0, ctx.start);
    let (start, cancel) = (ctx.start, ctx.cancel.clone());
    let due = DueOffsets::new(plan.schedule.clone(), plan.shard);
    arrivals(due, start, cancel, move |due| {
        let now = Instant::now();
        if !ctx.arrived(due, now) {
            return true;
        }
        // Arrivals handed out in one wake of the clock go to one thread: one wake-up of it,
        // not one per arrival; the next wake's go to the next thread.
        if now.saturating_duration_since(last_emit) > SAME_WAKE {
            next = (next + 1) % feeds.len();
        }
        last_emit = now;
        if feeds[next].send(due).is_err() {
            // That thread is gone (interrupted): nobody will take the arrival.
            ctx.abandoned(1);
        }
        true
    });
}

/// Runs one thread's connections on a single-threaded runtime until its feed ends.
fn run_thread(ctx: Arc<Ctx>, share: Vec<usize>, due: UnboundedReceiver<Instant>) -> Stats {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return Stats::default();
    };
    let stats = Rc::new(RefCell::new(Stats::default()));
    // Free connections queue for the feed, in turn: the first to wait takes the next arrival.
    let due = Rc::new(tokio::sync::Mutex::new(due));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let tasks: Vec<_> = share
            .into_iter()
            .map(|worker| {
                let (ctx, due, stats) = (ctx.clone(), due.clone(), stats.clone());
                tokio::task::spawn_local(async move { connection_loop(&ctx, worker, &due, &stats).await })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    stats.take()
}

async fn connection_loop(
    ctx: &Ctx,
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
            _ = ctx.cancel.cancelled() => None,
        };
        let Some(due) = next else { break };
        seq += 1;
        ctx.correlation_id(&mut correlation_id, worker, seq);
        let sent = Instant::now();
        ctx.started(due, sent, true);
        let outcome = timed_exchange(&mut conn, &ctx.target, &correlation_id, ctx.timeout).await;
        let exchange = Exchange {
            due,
            sent,
            seq,
            correlation_id: &correlation_id,
        };
        ctx.finished(&mut stats.borrow_mut(), &exchange, outcome, Instant::now());
    }
}
