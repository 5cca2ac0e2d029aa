//! Runs a scenario's transactions over HTTP (our HTTP/1.1 client, `http_client`): fills
//! templates, injects the correlation id and a traceparent, checks statuses, extracts values
//! for later requests, polls until a field settles, and records every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::traffic::http_client::{HttpClient, Request, Target};
use crate::traffic::scenario::{RequestSpec, Scenario, ThinkTime, Vars, extract, render, render_body};
use crate::traffic::stats::{ErrorKind, Recorder, Sample};

pub struct Executor {
    /// Kept-alive connections in a few pools (each with its own lock): a transaction uses
    /// its lane's, so users on different threads seldom meet on one lock. As many again
    /// are kept for the open model's reliefs ([`Executor::spare_lane`]).
    client: HttpClient,
    lanes: usize,
    scenario: Scenario,
    think_override: Option<ThinkTime>,
    run_id: String,
    seq: AtomicU64,
    started: Instant,
    cumulative_weights: Vec<u32>,
    observer: Option<Observer>,
}

/// Sees every request with its outcome (drills keep a ledger of checkouts with it).
pub type Observer = std::sync::Arc<dyn Fn(&Seen<'_>) + Send + Sync>;

/// One request and its outcome, as an [`Observer`] sees it.
pub struct Seen<'a> {
    pub name: &'a str,
    pub method: &'static str,
    /// The path template from the scenario, e.g. `/checkout` or `/orders/{order_id}`.
    pub path: &'a str,
    /// The answer's status; 0 when none came (refused, reset, timed out).
    pub status: u16,
    /// The JSON body when the scenario needed it (extraction or polling), else null.
    pub body: &'a Value,
    pub correlation_id: &'a str,
}

/// How a transaction is run.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// When the transaction was due (open model); its first request's latency counts from here.
    pub intended: Option<Instant>,
    /// Pause between requests (closed model); the open model paces by arrivals instead.
    pub think: bool,
    /// Which of the executor's clients to use (a closed-model user keeps its own).
    pub lane: usize,
}

/// Clients (connection pools) an executor keeps at most.
const LANES: usize = 8;

/// What went wrong with one request, and whether the transaction can go on.
struct Failure {
    kind: ErrorKind,
    message: String,
}

impl Executor {
    pub fn new(
        base: &str,
        scenario: Scenario,
        think_override: Option<ThinkTime>,
        timeout: Duration,
        max_connections: usize,
        run_id: &str,
        started: Instant,
    ) -> Result<Executor, super::EngineError> {
        let lanes = max_connections.clamp(1, LANES);
        let target = Target::parse(base).map_err(super::EngineError::Setup)?;
        // A relief hands out a loop's arrivals in bursts (those due while the loop was held
        // up), all on its one pool: it keeps as many connections as may be in flight.
        let client = HttpClient::new(target, lanes, max_connections.div_ceil(lanes), timeout)
            .with_spare_lanes(lanes, max_connections);
        let mut total = 0;
        let cumulative_weights = scenario
            .transactions
            .iter()
            .map(|t| {
                total += t.weight;
                total
            })
            .collect();
        Ok(Executor {
            client,
            lanes,
            scenario,
            think_override,
            run_id: run_id.to_string(),
            seq: AtomicU64::new(0),
            started,
            cumulative_weights,
            observer: None,
        })
    }

    pub fn with_observer(mut self, observer: Observer) -> Executor {
        self.observer = Some(observer);
        self
    }

    /// The pools the client keeps connections in; [`Pace::lane`] picks one (modulo this).
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// A pool beside the [`lanes`](Executor::lanes), the `n`-th (modulo their count): the
    /// open model's relief for its loop `n` sends on it, so its connections are its own.
    pub fn spare_lane(&self, n: usize) -> usize {
        self.lanes + n % self.lanes
    }

    /// Closes the kept-alive connections of `lane` (see [`HttpClient::forget_idle`]).
    pub fn forget_idle(&self, lane: usize) {
        self.client.forget_idle(lane);
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// A pause before `spec` (or between transactions): the flag, the request's, the scenario's.
    pub fn think_time(&self, spec: Option<&RequestSpec>) -> Duration {
        self.think_override
            .or(spec.and_then(|s| s.think_time))
            .or(self.scenario.defaults.think_time)
            .unwrap_or(ThinkTime::ZERO)
            .sample()
    }

    /// Waits out a think time, if there is one. A zero wait is skipped: `sleep(0)` still goes
    /// through the timer wheel, whose millisecond tick would pace every user.
    pub async fn think(&self, spec: Option<&RequestSpec>) {
        let wait = self.think_time(spec);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A transaction index, drawn by weight.
    pub fn pick_transaction(&self) -> usize {
        let total = *self.cumulative_weights.last().unwrap_or(&1);
        let roll = rand::rng().random_range(0..total);
        self.cumulative_weights.partition_point(|w| *w <= roll)
    }

    /// The next correlation id of this run: `RUNID-SEQ`.
    pub fn next_correlation_id(&self) -> String {
        format!("{}-{}", self.run_id, self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Runs transaction `index` once; a failed request ends it (later ones depend on it).
    pub async fn run_transaction(&self, index: usize, pace: Pace, recorder: &Recorder) {
        let tx = &self.scenario.transactions[index];
        let lane = pace.lane;
        let mut vars = tx.picked();
        let mut intended = pace.intended;
        for (i, spec) in tx.requests.iter().enumerate() {
            if i > 0 && pace.think {
                self.think(Some(spec)).await;
            }
            let ok = match &spec.poll {
                None => (self.request(lane, spec, &mut vars, intended.take(), recorder).await).is_some(),
                Some(_) => self.poll(lane, spec, &mut vars, intended.take(), recorder).await,
            };
            if !ok {
                return;
            }
        }
    }

    /// Repeats the request until its field takes a wanted value, or the poll times out.
    async fn poll(
        &self,
        lane: usize,
        spec: &RequestSpec,
        vars: &mut Vars,
        intended: Option<Instant>,
        recorder: &Recorder,
    ) -> bool {
        let poll = spec.poll.as_ref().expect("a poll spec");
        let deadline = Instant::now() + poll.timeout.0;
        let mut intended = intended;
        loop {
            let Some(body) = self.request(lane, spec, vars, intended.take(), recorder).await else {
                return false;
            };
            let value =
                extract(&body, &poll.field).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            if value.as_ref().is_some_and(|v| poll.until.contains(v)) {
                return true;
            }
            if Instant::now() + poll.every.0 > deadline {
                let at = Instant::now().saturating_duration_since(self.started);
                let correlation_id = self.next_correlation_id();
                recorder.record(&Sample {
                    name: &spec.name,
                    correlation_id: &correlation_id,
                    latency: poll.timeout.0,
                    service: None,
                    status: None,
                    error: Some((
                        ErrorKind::BadResponse,
                        format!(
                            "{} stayed {:?}, not one of {:?}, for {:?}",
                            poll.field, value, poll.until, poll.timeout.0
                        ),
                    )),
                    at,
                });
                return false;
            }
            tokio::time::sleep(poll.every.0).await;
        }
    }

    /// Sends one request and records it; returns its JSON body (or null) when it succeeded.
    async fn request(
        &self,
        lane: usize,
        spec: &RequestSpec,
        vars: &mut Vars,
        intended: Option<Instant>,
        recorder: &Recorder,
    ) -> Option<Value> {
        let correlation_id = self.next_correlation_id();
        let sent = Instant::now();
        let due = intended.unwrap_or(sent).min(sent);
        let result = self.exchange(lane, spec, vars, &correlation_id).await;
        let done = Instant::now();
        if let Some(observer) = &self.observer {
            let (status, body) = match &result {
                Ok((status, body)) => (*status, body.as_ref()),
                Err((status, _)) => (status.unwrap_or(0), None),
            };
            observer(&Seen {
                name: &spec.name,
                method: spec.method.as_str(),
                path: &spec.path,
                status,
                body: body.unwrap_or(&Value::Null),
                correlation_id: &correlation_id,
            });
        }
        let (status, outcome) = match result {
            Ok((status, body)) => (Some(status), Ok(body)),
            Err((status, failure)) => (status, Err(failure)),
        };
        recorder.record(&Sample {
            name: &spec.name,
            correlation_id: &correlation_id,
            latency: done - due,
            service: Some(done - sent),
            status,
            error: outcome.as_ref().err().map(|f| (f.kind, f.message.clone())),
            at: due.saturating_duration_since(self.started),
        });
        outcome.ok().flatten()
    }

    /// The request's status and, when the transaction can go on, its JSON body (or null).
    async fn exchange(
        &self,
        lane: usize,
        spec: &RequestSpec,
        vars: &mut Vars,
        correlation_id: &str,
    ) -> Result<(u16, Option<Value>), (Option<u16>, Failure)> {
        let path = render(&spec.path, vars);
        let url = || self.client.target().url(&path);
        let trace: u128 = rand::rng().random::<u128>() | 1;
        let span: u64 = rand::rng().random::<u64>() | 1;
        let traceparent = format!("00-{trace:032x}-{span:016x}-01");
        let rendered: Vec<(&str, String)> = spec
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), render(v, vars)))
            .collect();
        let mut headers = Vec::with_capacity(2 + rendered.len());
        headers.push(("x-correlation-id", correlation_id));
        headers.push(("traceparent", traceparent.as_str()));
        headers.extend(rendered.iter().map(|(n, v)| (*n, v.as_str())));
        let json = match &spec.body {
            Some(body) => Some(serde_json::to_vec(&render_body(body, vars)).map_err(|e| {
                (
                    None,
                    Failure {
                        kind: ErrorKind::Other,
                        message: format!("cannot write the body of {} {}: {e}", spec.method.as_str(), url()),
                    },
                )
            })?),
            None => None,
        };
        let request = Request {
            method: spec.method.as_str(),
            path: &path,
            headers: &headers,
            json: json.as_deref(),
        };
        let answer = self.client.send(lane, &request).await.map_err(|(kind, message)| {
            (
                None,
                Failure {
                    kind,
                    message: format!("{} {}: {message}", spec.method.as_str(), url()),
                },
            )
        })?;
        let status = answer.status;
        let bytes = answer.body;
        let expected = if spec.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            spec.expect_status.contains(&status)
        };
        if !expected {
            let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string();
            let kind = ErrorKind::for_status(status);
            return Err((
                Some(status),
                Failure {
                    kind,
                    message: format!("{} {} answered {status}: {detail}", spec.method.as_str(), url()),
                },
            ));
        }
        let needs_json = !spec.extract.is_empty() || spec.poll.is_some();
        let body = if needs_json {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                (
                    Some(status),
                    Failure {
                        kind: ErrorKind::BadResponse,
                        message: format!("{} did not answer JSON: {e}", url()),
                    },
                )
            })?
        } else {
            Value::Null
        };
        for (name, path) in &spec.extract {
            match extract(&body, path) {
                Some(value) => {
                    vars.insert(name.clone(), value.clone());
                }
                // An expected non-2xx answer (409 out of stock on checkout, say) has nothing to
                // extract: a success, but the transaction cannot go on.
                None if !(200..300).contains(&status) => return Ok((status, None)),
                None => {
                    return Err((
                        Some(status),
                        Failure {
                            kind: ErrorKind::BadResponse,
                            message: format!("{}: no value at {path:?} to extract as {name}", url()),
                        },
                    ));
                }
            }
        }
        Ok((status, Some(body)))
    }
}
