//! Small axum servers on 127.0.0.1:0 that count what they serve.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone, Copy)]
pub enum Server {
    /// Answers at once and counts.
    Counting,
    /// Answers after exactly 20 ms.
    Fixed20ms,
    /// Stalls for the second half of every two seconds.
    Stalling,
    /// /items, /items/{id}, POST /orders, recording what it was sent.
    Shop,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub traceparents: Arc<AtomicU64>,
    pub correlation_ids: Arc<Mutex<HashSet<String>>>,
    pub seen: Arc<Mutex<Vec<String>>>,
    arrivals: Arc<Mutex<Vec<Duration>>>,
    started: Instant,
}

#[derive(Clone)]
struct Shared {
    hits: Arc<AtomicU64>,
    traceparents: Arc<AtomicU64>,
    correlation_ids: Arc<Mutex<HashSet<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
    arrivals: Arc<Mutex<Vec<Duration>>>,
    started: Instant,
    kind: Server,
}

impl TestServer {
    pub async fn start(kind: Server) -> TestServer {
        if let Server::Fixed20ms = kind {
            return TestServer::start_fixed_delay(Duration::from_millis(20));
        }
        let shared = Shared {
            hits: Arc::default(),
            traceparents: Arc::default(),
            correlation_ids: Arc::default(),
            seen: Arc::default(),
            arrivals: Arc::default(),
            started: Instant::now(),
            kind,
        };
        let app = Router::new()
            .route("/hit", get(hit))
            .route("/items", get(items))
            .route("/items/{id}", get(item))
            .route("/orders", post(order))
            .with_state(shared.clone());
        // The server gets a runtime (and threads) of its own, so the test's own tasks and
        // the child process it waits for cannot delay its answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap()
            });
        });
        TestServer {
            addr,
            hits: shared.hits,
            traceparents: shared.traceparents,
            correlation_ids: shared.correlation_ids,
            seen: shared.seen,
            arrivals: shared.arrivals,
            started: shared.started,
        }
    }

    /// A plain-thread HTTP/1.1 server answering every request exactly `delay` after its last
    /// byte arrived: a thread sleep for most of it, then a spin to the deadline, so no async
    /// runtime or timer granularity blurs the reference.
    fn start_fixed_delay(delay: Duration) -> TestServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<AtomicU64> = Arc::default();
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_nodelay(true);
                    let mut buf = [0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let deadline = Instant::now() + delay;
                            pending.drain(..end + 4);
                            counter.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(delay.saturating_sub(Duration::from_millis(2)));
                            while Instant::now() < deadline {
                                std::hint::spin_loop();
                            }
                            let body = b"{\"ok\":true}";
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if stream.write_all(&[head.as_bytes(), body].concat()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        TestServer {
            addr,
            hits,
            traceparents: Arc::default(),
            correlation_ids: Arc::default(),
            seen: Arc::default(),
            arrivals: Arc::default(),
            started: Instant::now(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests per whole second since the first one arrived.
    pub fn per_second(&self) -> Vec<u64> {
        let arrivals = self.arrivals.lock().unwrap();
        let Some(first) = arrivals.iter().min().copied() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for at in arrivals.iter() {
            let second = (*at - first).as_secs() as usize;
            if out.len() <= second {
                out.resize(second + 1, 0);
            }
            out[second] += 1;
        }
        let _ = self.started;
        out
    }
}

fn note(state: &Shared, headers: &HeaderMap) {
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.arrivals.lock().unwrap().push(state.started.elapsed());
    if let Some(id) = headers.get("x-correlation-id").and_then(|v| v.to_str().ok()) {
        state.correlation_ids.lock().unwrap().insert(id.to_string());
    }
    if headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() == 55 && v.starts_with("00-"))
    {
        state.traceparents.fetch_add(1, Ordering::SeqCst);
    }
}

async fn hit(State(state): State<Shared>, headers: HeaderMap) -> Json<Value> {
    note(&state, &headers);
    match state.kind {
        // A blocking sleep is precise to well under a millisecond; tokio's timer is not.
        Server::Stalling => {
            let elapsed = state.started.elapsed();
            let into_cycle = elapsed.as_millis() as u64 % 2000;
            if into_cycle >= 1000 {
                tokio::time::sleep(Duration::from_millis(2000 - into_cycle)).await;
            }
        }
        Server::Counting | Server::Shop | Server::Fixed20ms => {}
    }
    Json(json!({ "ok": true }))
}

async fn items(State(state): State<Shared>, headers: HeaderMap) -> Json<Value> {
    note(&state, &headers);
    Json(json!({ "items": [{ "id": 42, "label": "blue" }, { "id": 7, "label": "red" }] }))
}

async fn item(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Json<Value> {
    note(&state, &headers);
    let label = headers.get("x-label").and_then(|v| v.to_str().ok()).unwrap_or("-");
    state.seen.lock().unwrap().push(format!("view {id} label={label}"));
    Json(json!({ "id": id }))
}

async fn order(State(state): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    note(&state, &headers);
    state.seen.lock().unwrap().push(format!("order {body}"));
    (StatusCode::CREATED, Json(json!({ "order_id": 1 })))
}

/// The real Pushgateway (Debian's prometheus-pushgateway) on a free port, killed on drop.
pub use crate::support::Pushgateway;
