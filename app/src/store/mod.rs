//! The storage layer: one small API over PostgreSQL (compose) and SQLite (embedded), with
//! the durable jobs table written in the same transaction as the order it serves. One file
//! per concern: `products`, `orders`, `jobs` (the queue and every fenced write), `settings`,
//! `audit`, `schema`; this one holds the types, the pool and the tracing of statements.

mod audit;
mod jobs;
mod orders;
mod products;
mod schema;
mod settings;

use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tracing::instrument::WithSubscriber;

pub use audit::{AuditReport, GatewayCharge, GatewayRefund, MoneySummary, StockSummary, Violation};
pub use jobs::{Claimed, Completed, Completion, FailedOrder, Renewal};
pub use schema::CATALOGUE;

use crate::clock::Clock;

/// Which database a [`Store`] talks to; decides the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    /// The `db.system.name` of the OpenTelemetry semantic conventions.
    pub fn system_name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported DATABASE_URL {0:?}: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// The job's lease ran out or another worker claimed it: the write was not made.
    #[error("job lease lost: another worker holds the job or its lease ran out")]
    LeaseLost,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                StoreError::Unavailable(err)
            }
            other => StoreError::Query(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Product {
    pub id: i64,
    pub title: String,
    pub artist: String,
    pub genre: String,
    pub price_cents: i64,
    pub stock: i64,
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub title: String,
    pub artist: String,
    pub genre: String,
    pub price_cents: i64,
    pub stock: i64,
}

/// Order life: `pending` → `processing` → `completed` | `failed`.
pub mod order_status {
    pub const PENDING: &str = "pending";
    pub const PROCESSING: &str = "processing";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 4] = [PENDING, PROCESSING, COMPLETED, FAILED];
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Order {
    pub id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    pub status: String,
    pub correlation_id: String,
    pub trace_id: Option<String>,
    pub failure_reason: Option<String>,
    pub stock_reserved: bool,
    pub payment_ref: Option<String>,
    /// Set once a charge made for a failed order was refunded.
    #[serde(default)]
    pub refund_ref: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewOrder {
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    pub correlation_id: String,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub max_attempts: i64,
}

/// A job claimed by a worker, with the lease it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub order_id: i64,
    pub kind: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub correlation_id: String,
    pub traceparent: Option<String>,
    pub lease_owner: String,
    pub created_at_ms: i64,
}

/// What reserving stock for an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    AlreadyReserved,
    OutOfStock,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Jobs queued or running.
    pub depth: i64,
    /// Age of the oldest job still queued or running, in milliseconds.
    pub oldest_age_ms: i64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL: connections of their own for [`Store::ping`], so that readiness measures
    /// the database and not the wait for a busy pool (SQLite pings through `pool`). Four, so
    /// that the pings of one second need not queue: a readiness probe from each of the drill,
    /// the blackbox exporter and the container's healthcheck, and a metrics scrape.
    probe: Option<AnyPool>,
    backend: Backend,
    max_connections: u32,
    clock: Clock,
}

pub(crate) const ORDER_COLUMNS: &str = "id, product_id, quantity, amount_cents, status, correlation_id, trace_id, \
     failure_reason, stock_reserved, payment_ref, created_at, updated_at, refund_ref";
/// Connections [`Store::ping`] may open on PostgreSQL.
const PROBE_CONNECTIONS: u32 = 4;
const PRODUCT_COLUMNS: &str = "id, title, artist, genre, price_cents, stock";

impl Store {
    /// Connects lazily: the app starts (and reports not-ready) while the database is down.
    pub fn connect_lazy(url: &str, max_connections: u32) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact(url)))?;
        let options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3));
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let pool = options.connect_lazy(&url).map_err(StoreError::from)?;
        let probe = match backend {
            Backend::Postgres => Some(
                AnyPoolOptions::new()
                    .max_connections(PROBE_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(3))
                    .test_before_acquire(true)
                    .connect_lazy(&url)
                    .map_err(StoreError::from)?,
            ),
            Backend::Sqlite => None,
        };
        Ok(Store {
            pool,
            probe,
            backend,
            max_connections,
            clock: Clock::system(),
        })
    }

    /// The same store measuring leases and timestamps by `clock` (tests hold time still).
    pub fn with_clock(mut self, clock: Clock) -> Store {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tests and tools that need a statement this layer does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.max_connections,
        }
    }

    pub async fn close(&self) {
        if let Some(probe) = &self.probe {
            probe.close().await;
        }
        self.pool.close().await;
    }

    /// Starts a transaction that will write. SQLite takes the write lock up front so that
    /// concurrent writers queue on `busy_timeout` instead of failing with SQLITE_BUSY.
    pub(crate) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// Runs `query` inside a client span that follows the database semantic conventions.
    /// sqlx itself runs under no subscriber: it hands `Span::current()` to its own threads
    /// (SQLite) and streams, where a span dropped outside this app's dispatcher would keep
    /// its parent span from ever closing.
    pub(crate) async fn traced<T>(
        &self,
        operation: &'static str,
        collection: &'static str,
        query: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let span = tracing::info_span!(
            "db",
            otel.name = format!("{operation} {collection}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = self.backend.system_name(),
            db.operation.name = operation,
            db.collection.name = collection,
            error.type = tracing::field::Empty,
        );
        let result = query.with_subscriber(tracing::Dispatch::none()).await;
        if let Err(err) = &result {
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.type",
                if matches!(err, StoreError::Unavailable(_)) {
                    "unavailable"
                } else {
                    "query"
                },
            );
        }
        result
    }

    /// PostgreSQL: one round trip, on the probe's own pool, which pings its idle connection
    /// before it hands it out (`test_before_acquire`) or opens a new one. On the shared pool
    /// and with a query on top, a database 300 ms away made readiness miss its 1 s budget (the
    /// wait for one of the busy pool's connections, then two or three round trips for the
    /// query) while the store still served every checkout.
    ///
    /// The ping runs in a task of its own, so a caller that stops waiting (readiness gives up
    /// after 1 s) cancels neither a ping half-way, which would close its connection, nor the
    /// opening of a new one: four round trips, which a slow database could otherwise never
    /// finish inside the caller's budget, leaving readiness failing for as long as it is slow.
    pub async fn ping(&self) -> StoreResult<()> {
        let Some(probe) = self.probe.clone() else {
            return untraced(async move {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            })
            .await;
        };
        let ping = tokio::spawn(untraced(async move { probe.acquire().await.map(drop) }));
        match ping.await {
            Ok(answer) => Ok(answer?),
            Err(stopped) => Err(StoreError::Unavailable(sqlx::Error::Protocol(format!(
                "the ping's task stopped: {stopped}"
            )))),
        }
    }

    /// Applies pending migrations; safe to run from several processes at once.
    pub async fn migrate(&self) -> StoreResult<Vec<i64>> {
        untraced(async move {
            let mut tx = self.begin_write().await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(7301966)")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *tx)
            .await?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.get::<i64, _>(0))
                .collect();
            let mut newly = Vec::new();
            for migration in schema::MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
                let sql = match self.backend {
                    Backend::Postgres => migration.postgres,
                    Backend::Sqlite => migration.sqlite,
                };
                for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(migration.version)
                    .bind(migration.name)
                    .bind(self.now_ms())
                    .execute(&mut *tx)
                    .await?;
                newly.push(migration.version);
            }
            tx.commit().await?;
            Ok(newly)
        })
        .await
    }
}

/// Runs sqlx under no subscriber (see [`Store::traced`] for why).
pub(crate) async fn untraced<T>(query: impl Future<Output = T>) -> T {
    query.with_subscriber(tracing::Dispatch::none()).await
}

pub(crate) fn order_from_row(row: &AnyRow) -> Order {
    Order {
        id: row.get(0),
        product_id: row.get(1),
        quantity: row.get(2),
        amount_cents: row.get(3),
        status: row.get(4),
        correlation_id: row.get(5),
        trace_id: row.get(6),
        failure_reason: row.get(7),
        stock_reserved: row.get::<i64, _>(8) != 0,
        payment_ref: row.get(9),
        created_at_ms: row.get(10),
        updated_at_ms: row.get(11),
        refund_ref: row.get(12),
    }
}

/// A database URL with its password replaced, safe for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:****{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/store"),
            "postgres://app:****@db:5432/store"
        );
        assert_eq!(redact("postgres://app@db/store"), "postgres://app@db/store");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(Backend::from_url("postgresql://x/y"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("mysql://x"), None);
    }
}
