//! The storage layer: one small API over PostgreSQL (compose) and SQLite (embedded), with
//! the durable jobs table written in the same transaction as the order it serves.

mod audit;
mod jobs;
mod schema;

use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tracing::instrument::WithSubscriber;

pub use audit::{AuditReport, GatewayCharge, GatewayRefund, MoneySummary, StockSummary, Violation};
pub use jobs::{Claimed, FailedOrder};
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
    backend: Backend,
    max_connections: u32,
    clock: Clock,
}

pub(crate) const ORDER_COLUMNS: &str = "id, product_id, quantity, amount_cents, status, correlation_id, trace_id, \
     failure_reason, stock_reserved, payment_ref, created_at, updated_at, refund_ref";
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
        Ok(Store {
            pool,
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

    pub async fn ping(&self) -> StoreResult<()> {
        untraced(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
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

    /// Seeds the catalogue into an empty products table; returns how many were inserted.
    pub async fn seed_if_empty(&self) -> StoreResult<u64> {
        untraced(async move {
            let count: i64 = sqlx::query("SELECT COUNT(*) FROM products")
                .fetch_one(&self.pool)
                .await?
                .get(0);
            if count > 0 {
                return Ok(0);
            }
            let mut tx = self.begin_write().await?;
            let mut inserted = 0;
            for (title, artist, genre, price, stock) in CATALOGUE {
                inserted += sqlx::query(
                    "INSERT INTO products (title, artist, genre, price_cents, stock, initial_stock, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (title, artist) DO NOTHING",
                )
                .bind(*title)
                .bind(*artist)
                .bind(*genre)
                .bind(*price)
                .bind(*stock)
                .bind(self.now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(inserted)
        })
        .await
    }

    pub async fn list_products(&self, limit: i64, offset: i64) -> StoreResult<Vec<Product>> {
        self.traced("SELECT", "products", async move {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT $1 OFFSET $2");
            let rows = sqlx::query(&sql).bind(limit).bind(offset).fetch_all(&self.pool).await?;
            Ok(rows.iter().map(product_from_row).collect())
        })
        .await
    }

    pub async fn get_product(&self, id: i64) -> StoreResult<Option<Product>> {
        self.traced("SELECT", "products", async move {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            Ok(row.as_ref().map(product_from_row))
        })
        .await
    }

    /// Inserts a product; `None` when one with the same title and artist exists.
    pub async fn create_product(&self, new: &NewProduct) -> StoreResult<Option<Product>> {
        self.traced("INSERT", "products", async move {
            let sql = format!(
                "INSERT INTO products (title, artist, genre, price_cents, stock, initial_stock, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (title, artist) DO NOTHING \
                 RETURNING {PRODUCT_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(&new.title)
                .bind(&new.artist)
                .bind(&new.genre)
                .bind(new.price_cents)
                .bind(new.stock)
                .bind(self.now_ms())
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.as_ref().map(product_from_row))
        })
        .await
    }

    /// Writes the order and its processing job in one transaction: once this returns, the
    /// order will be processed even if this process dies right after.
    pub async fn create_order_with_job(&self, new: &NewOrder) -> StoreResult<Order> {
        self.traced("INSERT", "orders", async move {
            match self.backend {
                Backend::Postgres => self.insert_order_and_job_pg(new).await,
                Backend::Sqlite => self.insert_order_and_job_tx(new).await,
            }
        })
        .await
    }

    /// PostgreSQL: one statement (data-modifying CTEs), atomic without a transaction and
    /// one round trip instead of four.
    async fn insert_order_and_job_pg(&self, new: &NewOrder) -> StoreResult<Order> {
        let sql = format!(
            "WITH o AS (INSERT INTO orders (product_id, quantity, amount_cents, status, correlation_id, \
                 trace_id, traceparent, stock_reserved, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) RETURNING *), \
             j AS (INSERT INTO jobs (order_id, kind, status, attempts, max_attempts, run_at, \
                 correlation_id, traceparent, created_at, updated_at) \
                 SELECT id, 'process_order', 'queued', 0, $9, $8, $5, $7, $8, $8 FROM o) \
             SELECT {ORDER_COLUMNS} FROM o"
        );
        let row = sqlx::query(&sql)
            .bind(new.product_id)
            .bind(new.quantity)
            .bind(new.amount_cents)
            .bind(order_status::PENDING)
            .bind(&new.correlation_id)
            .bind(&new.trace_id)
            .bind(&new.traceparent)
            .bind(self.now_ms())
            .bind(new.max_attempts)
            .fetch_one(&self.pool)
            .await?;
        Ok(order_from_row(&row))
    }

    /// SQLite: the order and its job in one write transaction.
    async fn insert_order_and_job_tx(&self, new: &NewOrder) -> StoreResult<Order> {
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "INSERT INTO orders (product_id, quantity, amount_cents, status, correlation_id, \
             trace_id, traceparent, stock_reserved, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) RETURNING {ORDER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(new.product_id)
            .bind(new.quantity)
            .bind(new.amount_cents)
            .bind(order_status::PENDING)
            .bind(&new.correlation_id)
            .bind(&new.trace_id)
            .bind(&new.traceparent)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let order = order_from_row(&row);
        sqlx::query(
            "INSERT INTO jobs (order_id, kind, status, attempts, max_attempts, run_at, \
             correlation_id, traceparent, created_at, updated_at) \
             VALUES ($1, 'process_order', 'queued', 0, $2, $3, $4, $5, $3, $3)",
        )
        .bind(order.id)
        .bind(new.max_attempts)
        .bind(now)
        .bind(&new.correlation_id)
        .bind(&new.traceparent)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(order)
    }

    pub async fn get_order(&self, id: i64) -> StoreResult<Option<Order>> {
        self.traced("SELECT", "orders", async move {
            let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            Ok(row.as_ref().map(order_from_row))
        })
        .await
    }

    /// Newest first, optionally filtered by status and correlation id.
    pub async fn list_orders(
        &self,
        limit: i64,
        status: Option<&str>,
        correlation_id: Option<&str>,
    ) -> StoreResult<Vec<Order>> {
        self.traced("SELECT", "orders", async move {
            let sql = format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR status = $1) \
                 AND ($2 IS NULL OR correlation_id = $2) ORDER BY id DESC LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(status)
                .bind(correlation_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(order_from_row).collect())
        })
        .await
    }

    pub async fn queue_stats(&self) -> StoreResult<QueueStats> {
        untraced(async move {
            let row = sqlx::query("SELECT COUNT(*), MIN(created_at) FROM jobs WHERE status IN ('queued', 'running')")
                .fetch_one(&self.pool)
                .await?;
            let depth: i64 = row.get(0);
            let oldest: Option<i64> = row.get(1);
            Ok(QueueStats {
                depth,
                oldest_age_ms: oldest.map(|t| (self.now_ms() - t).max(0)).unwrap_or(0),
            })
        })
        .await
    }

    /// Orders per status, every status present (zero when none).
    pub async fn order_counts(&self) -> StoreResult<Vec<(&'static str, i64)>> {
        untraced(async move {
            let rows = sqlx::query("SELECT status, COUNT(*) FROM orders GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
            Ok(order_status::ALL
                .iter()
                .map(|status| {
                    let n = rows
                        .iter()
                        .find(|row| row.get::<String, _>(0) == *status)
                        .map(|row| row.get::<i64, _>(1))
                        .unwrap_or(0);
                    (*status, n)
                })
                .collect())
        })
        .await
    }

    pub async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        untraced(async move {
            let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
        .await
    }

    pub async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        untraced(async move {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(self.now_ms())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn delete_setting(&self, key: &str) -> StoreResult<()> {
        untraced(async move {
            sqlx::query("DELETE FROM settings WHERE key = $1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }
}

/// Runs sqlx under no subscriber (see [`Store::traced`] for why).
pub(crate) async fn untraced<T>(query: impl Future<Output = T>) -> T {
    query.with_subscriber(tracing::Dispatch::none()).await
}

fn product_from_row(row: &AnyRow) -> Product {
    Product {
        id: row.get(0),
        title: row.get(1),
        artist: row.get(2),
        genre: row.get(3),
        price_cents: row.get(4),
        stock: row.get(5),
    }
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
