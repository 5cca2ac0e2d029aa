//! Plain mode on a schedule (`--connections N --rate R`): the open model's arrivals, one GET
//! of one URL each, over plain mode's own HTTP/1.1 connections. The arrival clock hands each
//! due time to the load threads in turn; on each thread, a free connection takes the next
//! due arrival. A request's latency counts from when it was due (coordinated-omission
//! correct), its service time from the actual send; an arrival that waits for a free
//! connection more than 2 ms starts late, and past `max_queue` waiting ones are dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::traffic::open::{LATE_AFTER, ScheduleReport, UNSENT, loops_by_rate, shard_peak};
use crate::traffic::plain::{PlainTarget, judged, load_threads};
use crate::traffic::raw_http::Failure;
use crate::traffic::schedule::{RateSchedule, Shard};
use crate::traffic::stats::{ErrorKind, Live, Sample, Stats};

#[cfg(target_os = "linux")]
mod epoll;
mod threads;

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
    let threads = load_threads(plan.connections);
    let ctx = Arc::new(Ctx {
        target,
        run_id: run_id.into(),
        live,
        cancel,
        shared: Shared::default(),
        start: Instant::now(),
        timeout: plan.timeout,
        max_queue: plan.max_queue,
    });
    #[cfg(target_os = "linux")]
    let outcome = match epoll::EventLoops::new(&ctx, event_loops(&plan)) {
        Ok(loops) => loops.run(&plan).await,
        Err(err) => {
            eprintln!(
                "recordctl: no epoll instance ({err}); plain mode on a schedule falls back to its portable engine"
            );
            threads::run(&ctx, &plan, threads).await
        }
    };
    #[cfg(not(target_os = "linux"))]
    let outcome = threads::run(&ctx, &plan, threads).await;
    let mut stats = outcome;
    let report = report(&plan, &ctx.shared);
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

/// Event loops for a schedule: as many as its rate takes ([`loops_by_rate`]), at most one per
/// load thread (so per core and per connection).
#[cfg(target_os = "linux")]
fn event_loops(plan: &PlainSchedule) -> usize {
    loops_by_rate(&plan.schedule, plan.shard).min(load_threads(plan.connections))
}

/// What every load thread shares: the target, the counters, and how an arrival and an
/// exchange are counted, whichever engine runs them.
struct Ctx {
    target: PlainTarget,
    run_id: Arc<str>,
    live: Arc<Live>,
    cancel: CancellationToken,
    shared: Shared,
    start: Instant,
    timeout: Duration,
    max_queue: usize,
}

impl Ctx {
    /// An arrival came due (the clock noticed at `now`) and must wait for a free connection:
    /// true when it may, false when `max_queue` arrivals already wait and it is dropped.
    fn arrived(&self, due: Instant, now: Instant) -> bool {
        self.came_due(due, now);
        self.wait()
    }

    /// An arrival came due (the clock noticed at `now`): counted, and late if the clock was.
    fn came_due(&self, due: Instant, now: Instant) {
        let shared = &self.shared;
        shared.intended.fetch_add(1, Ordering::Relaxed);
        if now.saturating_duration_since(due) > LATE_AFTER {
            shared.generator_late.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An arrival that came due waits for a free connection: true when it may, false when
    /// `max_queue` arrivals already wait and it is dropped.
    fn wait(&self) -> bool {
        let shared = &self.shared;
        let queued = shared.queued.load(Ordering::Relaxed);
        if queued >= self.max_queue {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        shared.queued.fetch_add(1, Ordering::Relaxed);
        shared.peak_queue.fetch_max(queued + 1, Ordering::Relaxed);
        true
    }

    /// Arrivals that waited and will never be taken (interrupted): no longer queued.
    fn abandoned(&self, count: usize) {
        self.shared.queued.fetch_sub(count, Ordering::Relaxed);
    }

    /// A free connection took an arrival due at `due` and sends it now (`sent`); `waited`:
    /// the arrival had waited for it (and was counted in the queue).
    fn started(&self, due: Instant, sent: Instant, waited: bool) {
        if waited {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.started.fetch_add(1, Ordering::Relaxed);
        if sent.saturating_duration_since(due) > LATE_AFTER {
            self.shared.late.fetch_add(1, Ordering::Relaxed);
            self.live.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes `{run}-{worker}-{seq}`, the request's correlation id, into `into`.
    fn correlation_id(&self, into: &mut String, worker: usize, seq: u64) {
        use std::fmt::Write;
        into.clear();
        let _ = write!(into, "{}-{worker}-{seq}", self.run_id);
    }

    /// An exchange ended at `done`: counted live and recorded.
    fn finished(&self, stats: &mut Stats, exchange: &Exchange, outcome: Result<u16, Failure>, done: Instant) {
        let (status, error) = judged(outcome);
        self.live.add(1, u64::from(error.is_some()));
        if exchange.seq % 16 == 1 {
            self.live.sample(done - exchange.sent);
        }
        stats.record(&Sample {
            name: &self.target.name,
            correlation_id: exchange.correlation_id,
            latency: done - exchange.due,
            service: Some(done - exchange.sent),
            status,
            error,
            at: exchange.due - self.start,
        });
    }
}

/// One arrival on its connection: when it was due, when it was sent, its correlation id
/// and the connection's count of exchanges.
struct Exchange<'a> {
    due: Instant,
    sent: Instant,
    seq: u64,
    correlation_id: &'a str,
}

fn report(plan: &PlainSchedule, shared: &Shared) -> ScheduleReport {
    let intended = shared.intended.load(Ordering::Relaxed);
    let started = shared.started.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    ScheduleReport {
        target_rate_tps: shard_peak(&plan.schedule, plan.shard),
        intended,
        started,
        late: shared.late.load(Ordering::Relaxed),
        generator_late: shared.generator_late.load(Ordering::Relaxed),
        // Plain mode's loops have no relief.
        relieved: 0,
        dropped,
        unsent_at_interrupt: intended.saturating_sub(started + dropped),
        max_in_flight: plan.connections,
        peak_queue: shared.peak_queue.load(Ordering::Relaxed),
        tick_us: plan.schedule.tick_us(),
        tick_auto: plan.schedule.tick_auto,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::schedule::Stage;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers every request head on every connection it accepts, in turn: a sized body, a
    /// chunked one, and a close-framed one that ends its connection (so the engines must
    /// reconnect). Counts the requests and the connections.
    async fn rotating_server() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (requests, connections) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, c) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer: &[u8] = match r.fetch_add(1, Ordering::SeqCst) % 3 {
                                0 => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                                1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                                _ => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye",
                            };
                            let _ = socket.write_all(answer).await;
                            if answer.ends_with(b"bye") {
                                return;
                            }
                        }
                        let mut chunk = [0u8; 1024];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/x"), requests, connections)
    }

    /// Accepts connections and never answers.
    async fn silent_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("http://{addr}/")
    }

    fn plan(connections: usize, rate: f64, seconds: u64, timeout: Duration) -> PlainSchedule {
        PlainSchedule {
            connections,
            schedule: RateSchedule {
                stages: vec![Stage {
                    duration: Duration::from_secs(seconds),
                    from: rate,
                    to: rate,
                }],
                tick: None,
                tick_auto: false,
            },
            shard: None,
            max_queue: 10_000,
            timeout,
        }
    }

    fn ctx(url: &str, plan: &PlainSchedule, cancel: CancellationToken) -> Arc<Ctx> {
        Arc::new(Ctx {
            target: PlainTarget::parse(url).unwrap(),
            run_id: "t".into(),
            live: Arc::new(Live::default()),
            cancel,
            shared: Shared::default(),
            start: Instant::now(),
            timeout: plan.timeout,
            max_queue: plan.max_queue,
        })
    }

    /// Both engines, each on a fresh context: what they recorded and the schedule report.
    async fn both(url: &str, plan: &PlainSchedule) -> Vec<(Stats, ScheduleReport)> {
        let mut runs = Vec::new();
        let portable = ctx(url, plan, CancellationToken::new());
        let stats = threads::run(&portable, plan, 2).await;
        runs.push((stats, report(plan, &portable.shared)));
        #[cfg(target_os = "linux")]
        {
            let linux = ctx(url, plan, CancellationToken::new());
            let stats = epoll::EventLoops::new(&linux, 2).unwrap().run(plan).await;
            runs.push((stats, report(plan, &linux.shared)));
        }
        runs
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sized_chunked_and_closing_answers_are_all_read_and_closed_connections_reopened() {
        let (url, requests, connections) = rotating_server().await;
        let plan = plan(3, 300.0, 1, Duration::from_secs(2));
        for (stats, report) in both(&url, &plan).await {
            assert_eq!(
                (report.intended, report.started, report.dropped),
                (300, 300, 0),
                "{report:?}"
            );
            assert_eq!((stats.requests, stats.failures), (300, 0), "{:?}", stats.errors);
            assert_eq!(stats.statuses.get(&200), Some(&300));
            assert_eq!(stats.service.len(), 300);
        }
        let served = requests.load(Ordering::SeqCst);
        assert_eq!(served, 300 * if cfg!(target_os = "linux") { 2 } else { 1 });
        // Every third answer closed its connection; each was reopened for the next arrival.
        assert!(connections.load(Ordering::SeqCst) >= served / 3, "{connections:?}");
    }

    /// An arrival a free connection takes at once never counts as queued: not in the peak,
    /// not against `max_queue`; one that waits does, up to the bound.
    #[test]
    fn only_arrivals_that_wait_count_in_the_queue() {
        let mut plan = plan(2, 10.0, 1, Duration::from_secs(1));
        plan.max_queue = 1;
        let ctx = ctx("http://127.0.0.1:9/", &plan, CancellationToken::new());
        let now = Instant::now();
        for _ in 0..2 {
            ctx.came_due(now, now);
            ctx.started(now, now, false);
        }
        assert_eq!(report(&plan, &ctx.shared).peak_queue, 0);
        assert!(ctx.arrived(now, now), "the first to wait has room");
        assert!(!ctx.arrived(now, now), "the queue of 1 is full: dropped");
        ctx.started(now, now, true);
        assert!(ctx.arrived(now, now), "room again once the waiting one started");
        let r = report(&plan, &ctx.shared);
        assert_eq!((r.intended, r.started, r.dropped, r.peak_queue), (5, 3, 1, 1), "{r:?}");
    }

    /// Arrivals that come due in one wake (a tick's group) and find free connections are
    /// all sent, however small the queue: none of them waits.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_finds_free_connections_is_sent_whole_with_a_queue_of_one() {
        let (url, requests, _) = rotating_server().await;
        let mut plan = plan(8, 400.0, 1, Duration::from_secs(2));
        plan.schedule.tick = Some(Duration::from_millis(10));
        plan.max_queue = 1;
        let linux = ctx(&url, &plan, CancellationToken::new());
        let stats = epoll::EventLoops::new(&linux, 1).unwrap().run(&plan).await;
        let report = report(&plan, &linux.shared);
        // Groups of 4 on 8 connections of a server that answers at once.
        assert_eq!(
            (report.intended, report.started, report.dropped),
            (400, 400, 0),
            "{report:?}"
        );
        assert_eq!((stats.requests, stats.failures), (400, 0), "{:?}", stats.errors);
        assert_eq!(requests.load(Ordering::SeqCst), 400);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_port_makes_every_arrival_a_refused_error_and_the_run_ends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let plan = plan(2, 200.0, 1, Duration::from_secs(2));
        for (stats, report) in both(&url, &plan).await {
            assert_eq!((report.intended, report.started), (200, 200), "{report:?}");
            assert_eq!(stats.failures, 200);
            assert_eq!(stats.errors.get(&ErrorKind::Refused), Some(&200), "{:?}", stats.errors);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_that_never_answers_times_out_each_exchange() {
        let url = silent_server().await;
        let plan = plan(4, 20.0, 1, Duration::from_millis(300));
        for (stats, report) in both(&url, &plan).await {
            // 20 arrivals on 4 connections, each held 300 ms: all start, some late.
            assert_eq!((report.intended, report.started), (20, 20), "{report:?}");
            assert_eq!(stats.errors.get(&ErrorKind::Timeout), Some(&20), "{:?}", stats.errors);
            assert!(stats.service.min() >= 299_000, "{}", stats.service.min());
        }
    }

    /// Answers one request per connection with a kept-alive response, then closes the
    /// connection (as a server whose keep-alive timeout ran out does).
    async fn one_answer_per_connection_server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 1024];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        (format!("http://{addr}/"), connections)
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_alive_connection_the_server_closed_while_idle_is_reopened_without_an_error() {
        let (url, connections) = one_answer_per_connection_server().await;
        // 50 ms between arrivals on one connection: each close arrives while it is idle.
        let plan = plan(1, 20.0, 1, Duration::from_secs(2));
        let linux = ctx(&url, &plan, CancellationToken::new());
        let stats = epoll::EventLoops::new(&linux, 1).unwrap().run(&plan).await;
        assert_eq!((stats.requests, stats.failures), (20, 0), "{:?}", stats.errors);
        assert_eq!(connections.load(Ordering::SeqCst), 20, "one connection per answer");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_run_stops_its_arrivals_and_counts_the_waiting_ones_unsent() {
        let url = silent_server().await;
        // One connection held by a silent target: every later arrival waits.
        let plan = plan(1, 100.0, 60, Duration::from_millis(500));
        let cancel = CancellationToken::new();
        let linux = ctx(&url, &plan, cancel.clone());
        let running = {
            let (linux, plan) = (linux.clone(), plan.clone());
            tokio::spawn(async move { epoll::EventLoops::new(&linux, 1).unwrap().run(&plan).await })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while linux.shared.intended.load(Ordering::Relaxed) < 10 {
            assert!(Instant::now() < deadline, "waiting for 10 arrivals to come due");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        let stats = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("an interrupted run ends within its timeout")
            .unwrap();
        let report = report(&plan, &linux.shared);
        assert_eq!(report.started, 1, "{report:?}");
        assert!(report.intended >= 10 && report.intended < 6000, "{report:?}");
        assert_eq!(report.unsent_at_interrupt, report.intended - 1);
        assert_eq!(stats.errors.get(&ErrorKind::Timeout), Some(&1));
    }
}
