//! Plain mode, for raw throughput: `connections` tasks, each with its own HTTP/1.1
//! connection (hyper's client connection API, no pool), sending back-to-back GETs of one
//! URL. Each task records into its own histograms; they are merged at the end, so the hot
//! path takes no lock and allocates no result record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::load::stats::{ErrorKind, Live, Sample, Stats};

#[derive(Debug, Clone)]
pub struct PlainTarget {
    pub authority: String,
    pub host_header: String,
    pub path: String,
    pub name: String,
}

impl PlainTarget {
    pub fn parse(url: &str) -> Result<PlainTarget, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(PlainTarget {
            authority: format!("{host}:{port}"),
            host_header: uri
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| host.to_string()),
            name: format!("GET {}", uri.path()),
            path,
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
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let target = Arc::new(target);
    let run_id: Arc<str> = Arc::from(run_id);
    let tasks: Vec<_> = (0..connections)
        .map(|worker| {
            let (target, run_id, live, cancel) = (target.clone(), run_id.clone(), live.clone(), cancel.clone());
            tokio::spawn(async move {
                connection_loop(worker, &target, &run_id, start, deadline, timeout, &live, &cancel).await
            })
        })
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        if let Ok(s) = task.await {
            stats.merge(s);
        }
    }
    stats
}

/// One HTTP/1.1 connection, driven by the task that uses it (no separate connection task,
/// so a request costs no cross-task wake-ups).
struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: std::pin::Pin<Box<http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>>>,
}

async fn connect(target: &PlainTarget) -> Result<Conn, (ErrorKind, String)> {
    let stream = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| (ErrorKind::for_io(&e), format!("connect {}: {e}", target.authority)))?;
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| {
        (
            ErrorKind::for_error(&e),
            format!("handshake with {}: {e}", target.authority),
        )
    })?;
    Ok(Conn {
        sender,
        driver: Box::pin(driver),
    })
}

#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    worker: usize,
    target: &PlainTarget,
    run_id: &str,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    live: &Live,
    cancel: &CancellationToken,
) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<Conn> = None;
    let mut seq: u64 = 0;
    let mut correlation_id = String::with_capacity(48);
    while Instant::now() < deadline && !cancel.is_cancelled() {
        seq += 1;
        correlation_id.clear();
        use std::fmt::Write;
        let _ = write!(correlation_id, "{run_id}-{worker}-{seq}");
        let sent = Instant::now();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, exchange(&mut conn, target, &correlation_id)) => {
                outcome.unwrap_or_else(|_| Err((ErrorKind::Timeout, format!("no answer within {timeout:?}"))))
            }
            _ = cancel.cancelled() => break,
        };
        let done = Instant::now();
        let (status, error) = match outcome {
            Ok(status) if (200..400).contains(&status) => (Some(status), None),
            Ok(status) => (
                Some(status),
                Some((ErrorKind::for_status(status), format!("answered {status}"))),
            ),
            Err(error) => {
                conn = None;
                (None, Some(error))
            }
        };
        live.note(done - sent, error.is_some());
        let refused = matches!(error, Some((ErrorKind::Refused, _)));
        stats.record(&Sample {
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
    stats
}

async fn exchange(
    conn: &mut Option<Conn>,
    target: &PlainTarget,
    correlation_id: &str,
) -> Result<u16, (ErrorKind, String)> {
    if conn.is_none() {
        *conn = Some(connect(target).await?);
    }
    let Conn { sender, driver } = conn.as_mut().expect("connected");
    let trace: u128 = rand::random::<u128>() | 1;
    let request = Request::get(target.path.as_str())
        .header("host", target.host_header.as_str())
        .header("x-correlation-id", correlation_id)
        .header("traceparent", format!("00-{trace:032x}-{:016x}-01", (trace as u64) | 1))
        .body(Empty::<Bytes>::new())
        .expect("valid request");
    let round_trip = async {
        sender
            .ready()
            .await
            .map_err(|e| (ErrorKind::for_error(&e), e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| (ErrorKind::for_error(&e), e.to_string()))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| (ErrorKind::for_error(&e), e.to_string()))?;
        }
        Ok(status)
    };
    tokio::select! {
        biased;
        result = round_trip => result,
        ended = driver.as_mut() => Err(match ended {
            Ok(()) => (ErrorKind::Reset, "the server closed the connection".to_string()),
            Err(e) => (ErrorKind::for_error(&e), e.to_string()),
        }),
    }
}
