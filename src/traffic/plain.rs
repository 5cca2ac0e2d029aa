//! Plain mode, for raw throughput: `connections` tasks, each with its own HTTP/1.1
//! connection (a minimal client of our own, see `raw_http`), sending back-to-back GETs of
//! one URL. Each task records into its own histograms; they are merged at the end, so the hot
//! path takes no lock and allocates no result record.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::traffic::raw_http::{RawConn, write_get};
use crate::traffic::stats::{ErrorKind, Live, Sample, Stats};

#[derive(Debug, Clone)]
pub struct PlainTarget {
    pub authority: String,
    pub host_header: String,
    pub path: String,
    pub name: String,
}

impl PlainTarget {
    pub fn parse(url: &str) -> Result<PlainTarget, super::EngineError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| super::EngineError::Setup(format!("{url}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| super::EngineError::Setup(format!("{url}: no host")))?;
        let port = uri.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let host_header = uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| host.to_string());
        Ok(PlainTarget {
            authority: format!("{host}:{port}"),
            host_header,
            name: format!("GET {}", uri.path()),
            path: path.to_string(),
        })
    }
}

pub async fn run(
    target: PlainTarget,
    connections: usize,
    duration: Duration,
    timeout: Duration,
    run_id: String,
    live: Arc<Live>,
    cancel: CancellationToken,
) -> Result<Stats, super::EngineError> {
    // A load thread that cannot start stops the others: a run with fewer connections than
    // asked would report numbers for a load nobody asked for.
    let cancel = cancel.child_token();
    let start = Instant::now();
    let deadline = start + duration;
    let target = Arc::new(target);
    let run_id: Arc<str> = Arc::from(run_id);
    let threads = closed_threads(cores(), on_this_machine(&target.authority).await, connections);
    let mut results = Vec::new();
    let mut failed = None;
    for thread in 0..threads {
        let share: Vec<usize> = (0..connections).filter(|c| c % threads == thread).collect();
        let (target, run_id, live, stop) = (target.clone(), run_id.clone(), live.clone(), cancel.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<Stats, String>>();
        let spawned = std::thread::Builder::new()
            .name(format!("recordctl-plain-{thread}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = tx.send(Err(format!("no runtime for a load thread: {err}")));
                        return;
                    }
                };
                // The thread's connections share one Stats (they never run at once), so
                // memory does not grow with the number of connections.
                let stats = Rc::new(RefCell::new(Stats::default()));
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async {
                    let tasks: Vec<_> = share
                        .into_iter()
                        .map(|worker| {
                            let (target, run_id, live, cancel, stats) = (
                                target.clone(),
                                run_id.clone(),
                                live.clone(),
                                stop.clone(),
                                stats.clone(),
                            );
                            tokio::task::spawn_local(async move {
                                let args = (start, deadline, timeout);
                                connection_loop(worker, &target, &run_id, args, &live, &cancel, &stats).await
                            })
                        })
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                });
                let _ = tx.send(Ok(stats.take()));
            });
        match spawned {
            Ok(_) => results.push(rx),
            Err(err) => {
                failed = Some(format!("cannot start a load thread: {err}"));
                cancel.cancel();
                break;
            }
        }
    }
    let mut stats = Stats::default();
    for rx in results {
        match rx.await {
            Ok(Ok(s)) => stats.merge(s),
            Ok(Err(why)) => {
                cancel.cancel();
                failed.get_or_insert(why);
            }
            // The thread ended without its results: it panicked (the message is above).
            Err(_) => {
                cancel.cancel();
                failed.get_or_insert_with(|| "a load thread stopped without its results".to_string());
            }
        }
    }
    match failed {
        Some(why) => Err(super::EngineError::Setup(why)),
        None => Ok(stats),
    }
}

/// One single-threaded runtime per core, each driving its share of the connections (as wrk
/// does): no work stealing, no cross-thread wake-ups on the hot path.
pub(super) fn load_threads(connections: usize) -> usize {
    closed_threads(cores(), false, connections)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Plain mode's load threads back to back: one per core, less one left to a target on this
/// machine. A load thread keeps its core busy, so with a thread on every core the target
/// runs on cores it shares: on 2 cores against nginx (one worker) on 127.0.0.1, 2 threads
/// sent ~97k requests/s and 1 thread ~146k/s.
fn closed_threads(cores: usize, target_here: bool, connections: usize) -> usize {
    let threads = if target_here { cores.saturating_sub(1) } else { cores };
    threads.clamp(1, connections.max(1))
}

/// Whether `authority` (host:port) resolves to loopback addresses only. An address that
/// does not resolve counts as elsewhere: its connections fail and say so.
async fn on_this_machine(authority: &str) -> bool {
    match tokio::net::lookup_host(authority).await {
        Ok(addrs) => {
            let mut any = false;
            for addr in addrs {
                if !addr.ip().is_loopback() {
                    return false;
                }
                any = true;
            }
            any
        }
        Err(_) => false,
    }
}

async fn connection_loop(
    worker: usize,
    target: &PlainTarget,
    run_id: &str,
    (start, deadline, timeout): (Instant, Instant, Duration),
    live: &Live,
    cancel: &CancellationToken,
    stats: &RefCell<Stats>,
) {
    let mut conn: Option<RawConn> = None;
    let mut seq: u64 = 0;
    let mut correlation_id = String::with_capacity(48);
    let (mut local_requests, mut local_errors) = (0u64, 0u64);
    while Instant::now() < deadline && !cancel.is_cancelled() {
        seq += 1;
        correlation_id.clear();
        use std::fmt::Write;
        let _ = write!(correlation_id, "{run_id}-{worker}-{seq}");
        let sent = Instant::now();
        // Ctrl-C is noticed between requests (the loop condition); a request in flight ends
        // within its timeout. Waiting on the token here would take its lock every request.
        let (status, error) = judged(timed_exchange(&mut conn, target, &correlation_id, timeout).await);
        let done = Instant::now();
        local_requests += 1;
        local_errors += u64::from(error.is_some());
        if seq % 16 == 1 {
            live.sample(done - sent);
        }
        if local_requests == 64 {
            live.add(local_requests, local_errors);
            (local_requests, local_errors) = (0, 0);
        }
        let refused = matches!(error, Some((ErrorKind::Refused, _)));
        stats.borrow_mut().record(&Sample {
            name: &target.name,
            correlation_id: &correlation_id,
            latency: done - sent,
            service: None,
            status,
            error,
            at: sent - start,
        });
        if refused {
            // Do not spin on a dead port: a short pause before reconnecting.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    live.add(local_requests, local_errors);
}

/// One GET within `timeout`: the answer's status, or why there was none. A connection that
/// failed is dropped; the next request opens another.
pub(super) async fn timed_exchange(
    conn: &mut Option<RawConn>,
    target: &PlainTarget,
    correlation_id: &str,
    timeout: Duration,
) -> Result<u16, (ErrorKind, String)> {
    let outcome = tokio::time::timeout(timeout, exchange(conn, target, correlation_id))
        .await
        .unwrap_or_else(|_| Err((ErrorKind::Timeout, format!("no answer within {timeout:?}"))));
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

/// Writes the GET of `target` with its correlation id and a fresh traceparent into `buf`.
pub(super) fn write_request(buf: &mut Vec<u8>, target: &PlainTarget, correlation_id: &str) {
    let tp = traceparent();
    let headers: [(&str, &[u8]); 2] = [("X-Correlation-ID", correlation_id.as_bytes()), ("traceparent", &tp)];
    write_get(buf, &target.path, &target.host_header, &headers);
}

/// An exchange's status, and what went wrong if anything did: a status of 400 or more, or
/// no answer.
pub(super) fn judged(outcome: Result<u16, (ErrorKind, String)>) -> (Option<u16>, Option<(ErrorKind, String)>) {
    match outcome {
        Ok(status) if (200..400).contains(&status) => (Some(status), None),
        Ok(status) => (
            Some(status),
            Some((ErrorKind::for_status(status), format!("answered {status}"))),
        ),
        Err(error) => (None, Some(error)),
    }
}

async fn exchange(
    conn: &mut Option<RawConn>,
    target: &PlainTarget,
    correlation_id: &str,
) -> Result<u16, (ErrorKind, String)> {
    let open = match conn {
        Some(open) => open,
        None => conn.insert(RawConn::connect(&target.authority).await?),
    };
    write_request(open.request(), target, correlation_id);
    let (status, reusable) = open.exchange().await?;
    if !reusable {
        *conn = None;
    }
    Ok(status)
}

/// A random sampled W3C traceparent, hex-encoded into a stack buffer.
fn traceparent() -> [u8; 55] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (trace, span) = (rand::random::<u128>() | 1, rand::random::<u64>() | 1);
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-01";
    for i in 0..32 {
        buf[3 + i] = HEX[((trace >> (124 - 4 * i)) & 0xf) as usize];
    }
    for i in 0..16 {
        buf[36 + i] = HEX[((span >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_valid_and_random() {
        let (a, b) = (traceparent(), traceparent());
        assert_ne!(a, b);
        let text = std::str::from_utf8(&a).unwrap();
        assert_eq!(text.len(), 55);
        assert!(recordstore::telemetry::TraceParent::parse(text).is_some(), "{text}");
    }

    #[test]
    fn targets_parse_host_port_and_path() {
        let t = PlainTarget::parse("http://127.0.0.1:8080/products?limit=5").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path, "/products?limit=5");
        assert_eq!(t.name, "GET /products");
        assert_eq!(
            PlainTarget::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
    }

    #[test]
    fn a_target_on_this_machine_is_left_a_core() {
        assert_eq!(closed_threads(2, true, 50), 1);
        assert_eq!(closed_threads(2, false, 50), 2);
        assert_eq!(closed_threads(8, true, 50), 7);
        assert_eq!(closed_threads(1, true, 50), 1, "never no thread");
        assert_eq!(closed_threads(8, false, 3), 3, "never more threads than connections");
        assert_eq!(closed_threads(8, true, 0), 1);
    }

    #[tokio::test]
    async fn loopback_addresses_are_this_machine_and_others_are_not() {
        assert!(on_this_machine("127.0.0.1:80").await);
        assert!(on_this_machine("[::1]:80").await);
        assert!(on_this_machine("localhost:80").await);
        assert!(
            !on_this_machine("192.0.2.1:80").await,
            "a documentation address elsewhere"
        );
        assert!(!on_this_machine("no-such-host.invalid:80").await, "does not resolve");
    }
}
