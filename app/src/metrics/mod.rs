//! The app's metrics: the `recordstore_` families of the telemetry contract, and the
//! gauges read from the database when Prometheus scrapes.

mod registry;

use std::sync::Arc;
use std::time::Duration;

pub use registry::{Exemplar, Family, Format, Kind, Registry, Series};

use crate::store::Store;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const JOB_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0];

/// Every metric the app exports; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

#[derive(Debug)]
pub struct MetricsInner {
    registry: Registry,
    pub http_requests: Arc<Family>,
    pub http_duration: Arc<Family>,
    pub http_in_flight: Arc<Family>,
    pub http_response_size: Arc<Family>,
    pub checkouts: Arc<Family>,
    pub order_transitions: Arc<Family>,
    pub orders: Arc<Family>,
    pub jobs_queue_depth: Arc<Family>,
    pub jobs_oldest_age: Arc<Family>,
    pub jobs_processed: Arc<Family>,
    pub job_duration: Arc<Family>,
    pub job_attempts: Arc<Family>,
    pub order_completion: Arc<Family>,
    pub payments: Arc<Family>,
    pub payment_duration: Arc<Family>,
    pub payment_charges: Arc<Family>,
    pub payment_refunds: Arc<Family>,
    pub leases_lost: Arc<Family>,
    pub rate_limited: Arc<Family>,
    pub breaker_state: Arc<Family>,
    pub db_up: Arc<Family>,
    pub db_pool: Arc<Family>,
    pub db_pool_max: Arc<Family>,
    pub build_info: Arc<Family>,
}

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.inner
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let (http_requests, http_duration, http_in_flight, http_response_size) = http_families(&mut r);
        let (checkouts, order_transitions, orders) = orders_families(&mut r);
        let [
            jobs_queue_depth,
            jobs_oldest_age,
            jobs_processed,
            job_duration,
            job_attempts,
            order_completion,
        ] = jobs_families(&mut r);
        let (payments, payment_duration, payment_charges, payment_refunds) = payments_families(&mut r);
        let [
            leases_lost,
            rate_limited,
            breaker_state,
            db_up,
            db_pool,
            db_pool_max,
            build_info,
        ] = service_families(&mut r);
        build_info.with(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        for state in ["closed", "open", "half_open"] {
            breaker_state
                .with(&[state])
                .set(if state == "closed" { 1.0 } else { 0.0 });
        }
        for result in ["accepted", "not_found", "out_of_stock", "invalid", "error"] {
            checkouts.with(&[result]);
        }
        http_in_flight.with(&[]);
        payment_charges.with(&[]);
        payment_refunds.with(&[]);
        leases_lost.with(&[]);
        for route in ["/checkout", "/orders", "/products"] {
            rate_limited.with(&[route]);
        }
        Metrics {
            inner: Arc::new(MetricsInner {
                registry: r,
                http_requests,
                http_duration,
                http_in_flight,
                http_response_size,
                checkouts,
                order_transitions,
                orders,
                jobs_queue_depth,
                jobs_oldest_age,
                jobs_processed,
                job_duration,
                job_attempts,
                order_completion,
                payments,
                payment_duration,
                payment_charges,
                payment_refunds,
                leases_lost,
                rate_limited,
                breaker_state,
                db_up,
                db_pool,
                db_pool_max,
                build_info,
            }),
        }
    }

    /// Refreshes the database-backed gauges (bounded by a short timeout so a dead database
    /// cannot stall a scrape), then encodes everything. `recordstore_db_up` is a ping's answer
    /// in the same budget, not whether the gauges' queries made it: those are several round
    /// trips on the shared pool, and a database 300 ms away failed them at every scrape, so
    /// DatabaseDown paged for a database that answered every request.
    pub async fn gather(&self, store: &Store, format: Format) -> String {
        let pool = store.pool_stats();
        self.db_pool
            .with(&["in_use"])
            .set(f64::from(pool.size.saturating_sub(pool.idle)));
        self.db_pool.with(&["idle"]).set(f64::from(pool.idle));
        self.db_pool_max.with(&[]).set(f64::from(pool.max));
        let budget = Duration::from_millis(800);
        let (pinged, refreshed) = tokio::join!(
            tokio::time::timeout(budget, store.ping()),
            tokio::time::timeout(budget, async {
                tokio::try_join!(store.queue_stats(), store.order_counts())
            }),
        );
        let up = matches!(pinged, Ok(Ok(())));
        self.db_up.with(&[]).set(if up { 1.0 } else { 0.0 });
        if let Ok(Ok((queue, counts))) = refreshed {
            self.jobs_queue_depth.with(&[]).set(queue.depth as f64);
            self.jobs_oldest_age.with(&[]).set(queue.oldest_age_ms as f64 / 1000.0);
            for (status, n) in counts {
                self.orders.with(&[status]).set(n as f64);
            }
        }
        self.registry.encode(format)
    }

    pub fn encode(&self, format: Format) -> String {
        self.registry.encode(format)
    }
}

/// HTTP: requests, their latency (with exemplars), in flight, bytes sent.
fn http_families(r: &mut Registry) -> (Arc<Family>, Arc<Family>, Arc<Family>, Arc<Family>) {
    let http_requests = r.counter(
        "recordstore_http_requests",
        "HTTP requests handled, by method, route template and status code.",
        &["method", "route", "status"],
    );
    let http_duration = r.histogram(
        "recordstore_http_request_duration_seconds",
        "HTTP request latency in seconds, by method and route template; exemplars carry the trace id.",
        &["method", "route"],
        LATENCY_BUCKETS,
    );
    let http_in_flight = r.gauge(
        "recordstore_http_requests_in_flight",
        "HTTP requests being handled now.",
        &[],
    );
    let http_response_size = r.counter(
        "recordstore_http_response_size_bytes",
        "Bytes of HTTP response bodies sent, by route template.",
        &["route"],
    );
    (http_requests, http_duration, http_in_flight, http_response_size)
}

/// Checkouts and orders.
fn orders_families(r: &mut Registry) -> (Arc<Family>, Arc<Family>, Arc<Family>) {
    let checkouts = r.counter(
        "recordstore_checkouts",
        "Checkout attempts by result: accepted, not_found, out_of_stock, invalid, error.",
        &["result"],
    );
    let order_transitions = r.counter(
        "recordstore_order_transitions",
        "Orders that entered a status, counted by this process.",
        &["status"],
    );
    let orders = r.gauge("recordstore_orders", "Orders in the database by status.", &["status"]);
    (checkouts, order_transitions, orders)
}

/// The job queue and its runs, and the end-to-end time of an order.
fn jobs_families(r: &mut Registry) -> [Arc<Family>; 6] {
    let jobs_queue_depth = r.gauge(
        "recordstore_jobs_queue_depth",
        "Jobs queued or running, not yet finished.",
        &[],
    );
    let jobs_oldest_age = r.gauge(
        "recordstore_jobs_oldest_age_seconds",
        "Age in seconds of the oldest job not yet finished (0 when none).",
        &[],
    );
    let jobs_processed = r.counter(
        "recordstore_jobs_processed",
        "Job runs by result: completed, failed, retried, released, lease_lost.",
        &["result"],
    );
    let job_duration = r.histogram(
        "recordstore_job_duration_seconds",
        "Time in seconds a worker spent on one job run, by result.",
        &["result"],
        JOB_BUCKETS,
    );
    let job_attempts = r.histogram(
        "recordstore_job_attempts",
        "Attempts a job took when it finished.",
        &["result"],
        ATTEMPT_BUCKETS,
    );
    let order_completion = r.histogram(
        "recordstore_order_completion_seconds",
        "Time in seconds from an accepted checkout to the order's final status (completed or failed), the end-to-end time a buyer waits.",
        &["status"],
        JOB_BUCKETS,
    );
    [
        jobs_queue_depth,
        jobs_oldest_age,
        jobs_processed,
        job_duration,
        job_attempts,
        order_completion,
    ]
}

/// The payment gateway.
fn payments_families(r: &mut Registry) -> (Arc<Family>, Arc<Family>, Arc<Family>, Arc<Family>) {
    let payments = r.counter(
        "recordstore_payment_requests",
        "Payment gateway calls by result: success, declined, error, circuit_open.",
        &["result"],
    );
    let payment_duration = r.histogram(
        "recordstore_payment_duration_seconds",
        "Payment gateway call latency in seconds.",
        &[],
        LATENCY_BUCKETS,
    );
    let payment_charges = r.counter(
        "recordstore_payment_charges",
        "Charges the payment gateway made (a replay of the same idempotency key, the order id, is not counted again).",
        &[],
    );
    let payment_refunds = r.counter(
        "recordstore_payment_refunds",
        "Charges the payment gateway refunded, for orders that failed after being charged.",
        &[],
    );
    (payments, payment_duration, payment_charges, payment_refunds)
}

/// Leases, rate limits, the payment circuit, the database, the build.
fn service_families(r: &mut Registry) -> [Arc<Family>; 7] {
    let leases_lost = r.counter(
        "recordstore_job_leases_lost",
        "Job runs stopped without effect because their lease ran out or another worker claimed the job.",
        &[],
    );
    let rate_limited = r.counter(
        "recordstore_rate_limited",
        "Write requests refused with 429 because their client exceeded its rate, by route.",
        &["route"],
    );
    let breaker_state = r.gauge(
        "recordstore_payment_circuit_state",
        "Payment circuit breaker: 1 for the state it is in, 0 for the others.",
        &["state"],
    );
    let db_up = r.gauge(
        "recordstore_db_up",
        "1 when the database answered the last check, else 0.",
        &[],
    );
    let db_pool = r.gauge(
        "recordstore_db_pool_connections",
        "Database pool connections by state (in_use, idle).",
        &["state"],
    );
    let db_pool_max = r.gauge("recordstore_db_pool_max_connections", "Database pool size limit.", &[]);
    let build_info = r.gauge("recordstore_build_info", "Build information; always 1.", &["version"]);
    [
        leases_lost,
        rate_limited,
        breaker_state,
        db_up,
        db_pool,
        db_pool_max,
        build_info,
    ]
}
