//! Orders: a checkout's order and its job in one transaction, and what the store holds.

use sqlx::Row;

use super::*;

impl Store {
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
}
