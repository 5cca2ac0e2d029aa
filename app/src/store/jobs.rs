//! The job queue, and every write a job makes to an order, to stock or to itself, fenced by
//! the job's lease.
//!
//! A claim bumps the job's `attempts`; the pair (job id, attempts) is the holder's fencing
//! token. Each fenced write runs in one transaction whose first statement reads the job
//! row only if the token still matches, the job is still running and its lease has not run
//! out. A holder that lost its lease (another worker re-claimed the job, or it was too slow
//! to renew) gets [`StoreError::LeaseLost`] and its write is not made. On PostgreSQL that
//! first statement also locks the job row (`FOR UPDATE`), so a concurrent claim (`FOR UPDATE SKIP LOCKED`)
//! passes the job by until the write commits; SQLite serialises writers with `BEGIN
//! IMMEDIATE`.

use std::time::Duration;

use sqlx::{Any, Row, Transaction};

use super::{Job, Order, Reservation, Store, StoreError, StoreResult, order_status, untraced};

/// A claimed job, its order as the claim left it, and what the claim did about its stock
/// (`None`: nothing was to be done, or the job is past its attempts).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: Job,
    pub order: Option<Order>,
    pub reservation: Option<Reservation>,
}

fn job_from_row(row: &sqlx::any::AnyRow) -> Job {
    Job {
        id: row.get(0),
        order_id: row.get(1),
        kind: row.get(2),
        attempts: row.get(3),
        max_attempts: row.get(4),
        correlation_id: row.get(5),
        traceparent: row.get(6),
        lease_owner: row.get(7),
        created_at_ms: row.get(8),
    }
}

/// One job's completion for [`Store::complete_orders`]: its order, and the payment just
/// captured for it (if any).
#[derive(Debug, Clone)]
pub struct Completion {
    pub job: Job,
    pub order_id: i64,
    pub payment_ref: Option<String>,
}

/// What [`Store::complete_orders`] did for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The order is `completed` and the job `done`.
    Completed,
    /// Nothing written for it: the order holds no stock or no payment, or is final already.
    NotCompletable,
    /// The job is no longer held (see [`StoreError::LeaseLost`]): nothing written for it.
    LeaseLost,
}

/// What [`Store::renew_lease`] found, when the lease was not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease runs `lease` from now.
    Renewed,
    /// The holder's own attempt ended the job (done, failed or queued again) before the
    /// renewal: nothing to renew, nothing lost.
    Ended,
}

/// What [`Store::fail_order`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedOrder {
    /// The order became `failed` now (`false`: it already was final).
    pub failed_now: bool,
    pub stock_released: bool,
}

impl Store {
    /// Claims the next due job, or one whose lease expired (its worker died or stalled), and
    /// leases it to `owner` for `lease` from now. Every claim is a new attempt and a new
    /// fencing token; a job claimed past its `max_attempts` is one the worker must end.
    pub async fn claim_job(&self, owner: &str, lease: Duration) -> StoreResult<Option<Job>> {
        untraced(async move {
            let row = sqlx::query(&self.claim_sql())
                .bind(owner)
                .bind(self.now_ms().saturating_add(lease_ms(lease)))
                .bind(self.now_ms())
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.as_ref().map(job_from_row))
        })
        .await
    }

    /// [`Store::claim_batch`] of one job.
    pub async fn claim_and_reserve(&self, owner: &str, lease: Duration) -> StoreResult<Option<Claimed>> {
        Ok(self.claim_batch(owner, lease, 1).await?.into_iter().next())
    }

    /// Claims up to `limit` jobs as [`Store::claim_job`] would one by one (expired leases
    /// first, then the due jobs in order), reads their orders and reserves the stock of every
    /// order that still needs it, all in one transaction: one commit for the batch on the hot
    /// path. Products are locked in id order (no deadlock between two batches); each product's
    /// orders take their stock in job order, so when stock runs out the earlier orders have
    /// it. Every order is as it stands after the reservation.
    pub async fn claim_batch(&self, owner: &str, lease: Duration, limit: usize) -> StoreResult<Vec<Claimed>> {
        untraced(async move {
            let mut tx = self.begin_write().await?;
            let now = self.now_ms();
            let rows = sqlx::query(&self.claim_batch_sql())
                .bind(owner)
                .bind(now.saturating_add(lease_ms(lease)))
                .bind(now)
                .bind(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(Vec::new());
            }
            let mut jobs: Vec<Job> = rows.iter().map(job_from_row).collect();
            jobs.sort_by_key(|job| job.id);
            let orders = self.orders_by_id(&mut tx, jobs.iter().map(|job| job.order_id)).await?;
            let mut claimed: Vec<Claimed> = jobs
                .into_iter()
                .map(|job| {
                    let order = orders.iter().find(|order| order.id == job.order_id).cloned();
                    Claimed {
                        job,
                        order,
                        reservation: None,
                    }
                })
                .collect();
            self.reserve_claimed(&mut tx, &mut claimed, now).await?;
            tx.commit().await?;
            Ok(claimed)
        })
        .await
    }

    async fn orders_by_id(
        &self,
        tx: &mut Transaction<'static, Any>,
        ids: impl Iterator<Item = i64>,
    ) -> StoreResult<Vec<Order>> {
        let ids: Vec<i64> = ids.collect();
        let sql = format!(
            "SELECT {} FROM orders WHERE id IN ({})",
            super::ORDER_COLUMNS,
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in &ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        Ok(rows.iter().map(super::order_from_row).collect())
    }

    /// Takes the stock of every claimed order that still needs it (stock first: an order
    /// that cannot have it changes nothing), then flags the orders that got it, in one
    /// statement. A product's orders are tried together first, one by one when that fails.
    async fn reserve_claimed(
        &self,
        tx: &mut Transaction<'static, Any>,
        claimed: &mut [Claimed],
        now: i64,
    ) -> StoreResult<()> {
        let mut wanting: Vec<Wanting> = claimed
            .iter()
            .enumerate()
            .filter_map(|(index, Claimed { job, order, .. })| {
                let order = order.as_ref()?;
                let needs = job.attempts <= job.max_attempts
                    && !order.stock_reserved
                    && (order.status == order_status::PENDING || order.status == order_status::PROCESSING);
                needs.then_some(Wanting {
                    index,
                    order_id: order.id,
                    product_id: order.product_id,
                    quantity: order.quantity,
                })
            })
            .collect();
        // Claimed is in job order already; a stable sort keeps it within a product.
        wanting.sort_by_key(|want| want.product_id);
        let mut reserved: Vec<&Wanting> = Vec::new();
        for group in wanting.chunk_by(|a, b| a.product_id == b.product_id) {
            let total: i64 = group.iter().map(|want| want.quantity).sum();
            if take_stock(tx, group[0].product_id, total).await? {
                reserved.extend(group);
                continue;
            }
            for want in group {
                if take_stock(tx, want.product_id, want.quantity).await? {
                    reserved.push(want);
                } else {
                    claimed[want.index].reservation = Some(Reservation::OutOfStock);
                }
            }
        }
        if reserved.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE orders SET stock_reserved = 1, status = $1, updated_at = $2 WHERE id IN ({})",
            placeholders(3, reserved.len())
        );
        let mut query = sqlx::query(&sql).bind(order_status::PROCESSING).bind(now);
        for want in &reserved {
            query = query.bind(want.order_id);
        }
        query.execute(&mut **tx).await?;
        for want in reserved {
            let claimed = &mut claimed[want.index];
            claimed.reservation = Some(Reservation::Reserved);
            if let Some(order) = claimed.order.as_mut() {
                order.stock_reserved = true;
                order.status = order_status::PROCESSING.to_string();
                order.updated_at_ms = now;
            }
        }
        Ok(())
    }

    fn claim_sql(&self) -> String {
        self.claim_batch_sql().replace("$4", "1")
    }

    fn claim_batch_sql(&self) -> String {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        // Jobs whose lease ran out first (few rows: only running jobs), then the due ones;
        // each lookup walks a partial index, so a deep queue costs no sort per claim, and the
        // outer limit stops the second lookup once the first has filled the batch.
        format!(
            "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id IN ( \
                 SELECT id FROM (SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < $3 \
                     ORDER BY lease_expires_at, id LIMIT $4{lock}) AS expired \
                 UNION ALL \
                 SELECT id FROM (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $3 \
                     ORDER BY run_at, id LIMIT $4{lock}) AS due \
                 LIMIT $4) \
             RETURNING id, order_id, kind, attempts, max_attempts, correlation_id, traceparent, \
                 lease_owner, created_at"
        )
    }

    /// Extends a held lease to `lease` from now. [`Renewal::Ended`] when the holder's own
    /// attempt has ended the job meanwhile (its completion, failure or retry committed: only
    /// the holder can, every ending is fenced); [`StoreError::LeaseLost`] when another claim
    /// took the job or the lease ran out.
    ///
    /// The two must not be confused: a renewal that waited on the row lock of the holder's own
    /// completion (written together with others', see [`Store::complete_orders`]) finds the
    /// job no longer running, and that job was not lost.
    pub async fn renew_lease(&self, job: &Job, lease: Duration) -> StoreResult<Renewal> {
        untraced(async move {
            let now = self.now_ms();
            let renewed = sqlx::query(
                "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
                 WHERE id = $3 AND attempts = $4 AND status = 'running' AND lease_expires_at >= $2",
            )
            .bind(now.saturating_add(lease_ms(lease)))
            .bind(now)
            .bind(job.id)
            .bind(job.attempts)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if renewed == 1 {
                return Ok(Renewal::Renewed);
            }
            let row = sqlx::query("SELECT status, attempts FROM jobs WHERE id = $1")
                .bind(job.id)
                .fetch_optional(&self.pool)
                .await?;
            let ended_by_holder = row.is_some_and(|row| {
                let status: String = row.get(0);
                let attempts: i64 = row.get(1);
                attempts == job.attempts && status != "running"
            });
            if ended_by_holder {
                Ok(Renewal::Ended)
            } else {
                Err(StoreError::LeaseLost)
            }
        })
        .await
    }

    /// Ends a held job (`done` or `failed`).
    pub async fn finish_job(&self, job: &Job, status: &str, error: Option<&str>) -> StoreResult<()> {
        self.traced("UPDATE", "jobs", async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            self.end_lease(&mut tx, job, status, None, error).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Puts a held job back in the queue to run at `run_at_ms` (retry, or release on shutdown).
    pub async fn requeue_job(&self, job: &Job, run_at_ms: i64, error: Option<&str>) -> StoreResult<()> {
        self.traced("UPDATE", "jobs", async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            self.end_lease(&mut tx, job, "queued", Some(run_at_ms), error).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Reserves the order's stock exactly once: the order's `stock_reserved` flag and the
    /// product's stock change in one transaction, and stock never goes below zero.
    pub async fn reserve_stock(&self, job: &Job, order: &Order) -> StoreResult<Reservation> {
        self.traced("UPDATE", "products", async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            let flagged = sqlx::query(
                "UPDATE orders SET stock_reserved = 1, status = $1, updated_at = $2 \
                 WHERE id = $3 AND stock_reserved = 0 AND status IN ('pending', 'processing')",
            )
            .bind(order_status::PROCESSING)
            .bind(self.now_ms())
            .bind(order.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if flagged == 0 {
                tx.rollback().await?;
                return Ok(Reservation::AlreadyReserved);
            }
            let taken = sqlx::query("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1")
                .bind(order.quantity)
                .bind(order.product_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if taken == 0 {
                tx.rollback().await?;
                return Ok(Reservation::OutOfStock);
            }
            tx.commit().await?;
            Ok(Reservation::Reserved)
        })
        .await
    }

    /// Records the gateway's payment reference on the order, once.
    pub async fn record_payment(&self, job: &Job, order_id: i64, payment_ref: &str) -> StoreResult<()> {
        self.traced("UPDATE", "orders", async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            sqlx::query("UPDATE orders SET payment_ref = $1, updated_at = $2 WHERE id = $3 AND payment_ref IS NULL")
                .bind(payment_ref)
                .bind(self.now_ms())
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Ends the order `completed` and its job `done` together, recording `payment_ref` first
    /// when given (one commit for both). The order completes only if it holds its stock and a
    /// payment; `false` (and nothing written) when it does not.
    pub async fn complete_order(&self, job: &Job, order_id: i64, payment_ref: Option<&str>) -> StoreResult<bool> {
        self.traced(
            "UPDATE",
            "orders",
            self.complete_order_untraced(job, order_id, payment_ref),
        )
        .await
    }

    /// [`Store::complete_order`] without its span: for a caller whose own span covers it.
    pub async fn complete_order_untraced(
        &self,
        job: &Job,
        order_id: i64,
        payment_ref: Option<&str>,
    ) -> StoreResult<bool> {
        untraced(async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            // The payment (when given and none is recorded yet) and the completion in one
            // statement: an order without stock or without any payment does not complete.
            let changed = sqlx::query(
                "UPDATE orders SET payment_ref = COALESCE(payment_ref, $1), status = $2, updated_at = $3 \
                 WHERE id = $4 AND status IN ('pending', 'processing') AND stock_reserved = 1 \
                 AND COALESCE(payment_ref, $1) IS NOT NULL",
            )
            .bind(payment_ref)
            .bind(order_status::COMPLETED)
            .bind(self.now_ms())
            .bind(order_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            self.end_lease(&mut tx, job, "done", None, None).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// [`Store::complete_order`] for many jobs at once, in one transaction of four statements
    /// whatever their number: the jobs still held are fenced (locked) together, their orders
    /// that hold stock and a payment complete together, and those orders' jobs end `done`.
    /// Each answer says what happened to its job: completed, not completable (nothing written
    /// for it: the order holds no stock or no payment), or its lease was lost.
    /// Runs under no span: each job's own span covers its wait for the write.
    pub async fn complete_orders(&self, completions: &[Completion]) -> StoreResult<Vec<Completed>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        untraced(async move {
            let mut tx = self.begin_write().await?;
            let now = self.now_ms();
            let held = self.fence_many(&mut tx, completions, now).await?;
            let holding: Vec<&Completion> = completions.iter().filter(|c| held.contains(&c.job.id)).collect();
            let mut completed: Vec<i64> = Vec::new();
            if !holding.is_empty() {
                let n = holding.len();
                // $1 status, $2 now, then (order id, payment ref) pairs, then the order ids.
                let case: String = (0..n)
                    .map(|i| format!(" WHEN ${} THEN ${}", 3 + 2 * i, 4 + 2 * i))
                    .collect();
                let sql = format!(
                    "UPDATE orders SET payment_ref = COALESCE(payment_ref, CASE id{case} END), status = $1, \
                     updated_at = $2 WHERE id IN ({}) AND status IN ('pending', 'processing') \
                     AND stock_reserved = 1 AND COALESCE(payment_ref, CASE id{case} END) IS NOT NULL RETURNING id",
                    placeholders(3 + 2 * n, n)
                );
                let mut query = sqlx::query(&sql).bind(order_status::COMPLETED).bind(now);
                for c in &holding {
                    query = query.bind(c.order_id).bind(c.payment_ref.as_deref());
                }
                for c in &holding {
                    query = query.bind(c.order_id);
                }
                completed = query.fetch_all(&mut *tx).await?.iter().map(|row| row.get(0)).collect();
            }
            let done: Vec<&Completion> = holding
                .into_iter()
                .filter(|c| completed.contains(&c.order_id))
                .collect();
            if !done.is_empty() {
                let sql = format!(
                    "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                     WHERE id IN ({})",
                    placeholders(2, done.len())
                );
                let mut query = sqlx::query(&sql).bind(now);
                for c in &done {
                    query = query.bind(c.job.id);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(completions
                .iter()
                .map(|c| match (held.contains(&c.job.id), completed.contains(&c.order_id)) {
                    (false, _) => Completed::LeaseLost,
                    (true, true) => Completed::Completed,
                    (true, false) => Completed::NotCompletable,
                })
                .collect())
        })
        .await
    }

    /// [`Store::fence`] for many jobs in one statement: the ids of those still held, locked.
    async fn fence_many(
        &self,
        tx: &mut Transaction<'static, Any>,
        completions: &[Completion],
        now: i64,
    ) -> StoreResult<Vec<i64>> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE",
            super::Backend::Sqlite => "",
        };
        let tokens: Vec<String> = (0..completions.len())
            .map(|i| format!("(id = ${} AND attempts = ${})", 2 + 2 * i, 3 + 2 * i))
            .collect();
        let sql = format!(
            "SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at >= $1 AND ({}) ORDER BY id{lock}",
            tokens.join(" OR ")
        );
        let mut query = sqlx::query(&sql).bind(now);
        for c in completions {
            query = query.bind(c.job.id).bind(c.job.attempts);
        }
        Ok(query.fetch_all(&mut **tx).await?.iter().map(|row| row.get(0)).collect())
    }

    /// Ends the order `failed` and gives its reserved stock back, in one transaction. The job
    /// stays held: any charge is refunded next, then [`Store::settle_failed_order`] ends it. A
    /// worker that dies in between leaves a failed order whose job the next worker settles.
    pub async fn fail_order(&self, job: &Job, order: &Order, reason: &str) -> StoreResult<FailedOrder> {
        self.traced("UPDATE", "orders", async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            let now = self.now_ms();
            let unflagged = sqlx::query(
                "UPDATE orders SET stock_reserved = 0, updated_at = $1 \
                 WHERE id = $2 AND stock_reserved = 1 AND status IN ('pending', 'processing')",
            )
            .bind(now)
            .bind(order.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if unflagged == 1 {
                sqlx::query("UPDATE products SET stock = stock + $1 WHERE id = $2")
                    .bind(order.quantity)
                    .bind(order.product_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let changed = sqlx::query(
                "UPDATE orders SET status = $1, failure_reason = $2, updated_at = $3 \
                 WHERE id = $4 AND status IN ('pending', 'processing')",
            )
            .bind(order_status::FAILED)
            .bind(reason)
            .bind(now)
            .bind(order.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(FailedOrder {
                failed_now: changed == 1,
                stock_released: unflagged == 1,
            })
        })
        .await
    }

    /// Records the refund of a failed order's charge (if there was one) and ends its job.
    pub async fn settle_failed_order(&self, job: &Job, refund_ref: Option<&str>, error: &str) -> StoreResult<()> {
        self.traced("UPDATE", "orders", async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, job).await?;
            if let Some(refund_ref) = refund_ref {
                sqlx::query(
                    "UPDATE orders SET refund_ref = $1, updated_at = $2 \
                     WHERE id = $3 AND status = 'failed' AND refund_ref IS NULL",
                )
                .bind(refund_ref)
                .bind(self.now_ms())
                .bind(job.order_id)
                .execute(&mut *tx)
                .await?;
            }
            self.end_lease(&mut tx, job, "failed", None, Some(error)).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The fence: reads the job row only while `job` still holds it with a live lease. On
    /// PostgreSQL the read locks the row (`FOR UPDATE`: no new row version, no index entry),
    /// so a concurrent claim passes it by and a re-claim waits for this write to commit;
    /// SQLite's `BEGIN IMMEDIATE` already serialises writers.
    async fn fence(&self, tx: &mut Transaction<'static, Any>, job: &Job) -> StoreResult<()> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE",
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT id FROM jobs \
             WHERE id = $2 AND attempts = $3 AND status = 'running' AND lease_expires_at >= $1{lock}"
        );
        let held = sqlx::query(&sql)
            .bind(self.now_ms())
            .bind(job.id)
            .bind(job.attempts)
            .fetch_optional(&mut **tx)
            .await?;
        if held.is_some() {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }

    async fn end_lease(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: &Job,
        status: &str,
        run_at_ms: Option<i64>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET status = $1, run_at = COALESCE($2, run_at), \
             last_error = COALESCE($3, last_error), lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = $4 WHERE id = $5 AND attempts = $6",
        )
        .bind(status)
        .bind(run_at_ms)
        .bind(error)
        .bind(self.now_ms())
        .bind(job.id)
        .bind(job.attempts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// A claimed order that still needs its stock.
struct Wanting {
    index: usize,
    order_id: i64,
    product_id: i64,
    quantity: i64,
}

/// Takes `quantity` of a product's stock if it has that much; `false` (nothing taken) if not.
async fn take_stock(tx: &mut Transaction<'static, Any>, product_id: i64, quantity: i64) -> StoreResult<bool> {
    let taken = sqlx::query("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1")
        .bind(quantity)
        .bind(product_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(taken == 1)
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}
