//! The background worker: claims order jobs, reserves stock, charges the payment gateway,
//! sends the confirmation, and ends the order `completed` or `failed`. Every step is
//! idempotent, so a job that runs twice (its worker died mid-job) has one effect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};

use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use crate::payment::{PaymentError, PaymentGateway};
use crate::store::{Claimed, Completed, Completion, Job, Order, Renewal, Reservation, Store, StoreError, order_status};
use crate::telemetry::{TraceParent, link_span};

/// What one run of a job ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    Failed(String),
    /// Put back in the queue to run again after a backoff.
    Retried(String),
    /// Another worker took the job over (this one's lease had run out).
    LeaseLost,
}

impl JobOutcome {
    fn label(&self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Failed(_) => "failed",
            JobOutcome::Retried(_) => "retried",
            JobOutcome::LeaseLost => "lease_lost",
        }
    }
}

pub struct Worker {
    store: Store,
    metrics: Metrics,
    payments: Arc<PaymentGateway>,
    config: WorkerConfig,
    dispatch: Dispatch,
    notify: Arc<Notify>,
    name: String,
    /// While [`Worker::run`] runs: where jobs hand their completions to be written together.
    completions: std::sync::Mutex<Option<UnboundedSender<CompletionRequest>>>,
}

/// One job's completion waiting to be written with others, and where its answer goes.
struct CompletionRequest {
    completion: Completion,
    answer: oneshot::Sender<Result<Completed, StoreError>>,
}

/// Completions written in one transaction at most.
const COMPLETIONS_PER_WRITE: usize = 64;

impl Worker {
    pub fn new(
        store: Store,
        metrics: Metrics,
        payments: Arc<PaymentGateway>,
        config: WorkerConfig,
        dispatch: Dispatch,
        notify: Arc<Notify>,
    ) -> Worker {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let name = format!("{host}:{}:{:08x}", std::process::id(), rand::random::<u32>());
        Worker {
            store,
            metrics,
            payments,
            config,
            dispatch,
            notify,
            name,
            completions: std::sync::Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs job loops until `cancel`, `concurrency` jobs in hand at most: each loop claims a
    /// batch of up to `claim_batch` jobs in one transaction and runs them side by side. The
    /// jobs in hand are finished first.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let batch = self.config.claim_batch.clamp(1, self.config.concurrency.max(1));
        let loops = self.config.concurrency.max(1).div_ceil(batch);
        let (sender, requests) = unbounded_channel();
        *self.completions.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
        let writer = tokio::spawn(
            self.clone()
                .write_completions(requests)
                .with_subscriber(self.dispatch.clone()),
        );
        let handles: Vec<_> = (0..loops)
            .map(|slot| {
                let worker = self.clone();
                let cancel = cancel.clone();
                tokio::spawn(
                    worker
                        .job_loop(slot, batch, cancel)
                        .with_subscriber(self.dispatch.clone()),
                )
            })
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
        // Every job has its answer: the writer ends once its channel closes.
        self.completions.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = writer.await;
    }

    /// Writes the completions jobs hand in, together: whatever arrived while the last write
    /// ran goes in the next one (a group commit), so a busy worker writes one transaction for
    /// many orders and an idle one writes each at once.
    async fn write_completions(self: Arc<Self>, mut requests: UnboundedReceiver<CompletionRequest>) {
        while let Some(first) = requests.recv().await {
            let mut batch = vec![first];
            while batch.len() < COMPLETIONS_PER_WRITE
                && let Ok(request) = requests.try_recv()
            {
                batch.push(request);
            }
            let completions: Vec<Completion> = batch.iter().map(|r| r.completion.clone()).collect();
            match self.store.complete_orders(&completions).await {
                Ok(answers) => {
                    for (request, answer) in batch.into_iter().zip(answers) {
                        let _ = request.answer.send(Ok(answer));
                    }
                }
                // The write failed as a whole: each job writes its own, for its own answer.
                Err(err) => {
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        jobs = batch.len(),
                        "cannot write the completions together; writing each alone"
                    );
                    for request in batch {
                        let c = &request.completion;
                        let answer = (self.store)
                            .complete_order_untraced(&c.job, c.order_id, c.payment_ref.as_deref())
                            .await;
                        let _ = request.answer.send(answer.map(|done| match done {
                            true => Completed::Completed,
                            false => Completed::NotCompletable,
                        }));
                    }
                }
            }
        }
    }

    /// Ends the order `completed` and its job `done` with the payment just captured: through
    /// the completion writer while [`Worker::run`] runs, else on its own.
    async fn write_completion(&self, job: &Job, order_id: i64, payment_ref: Option<&str>) -> Result<bool, StoreError> {
        let (answer, answered) = oneshot::channel();
        let request = CompletionRequest {
            completion: Completion {
                job: job.clone(),
                order_id,
                payment_ref: payment_ref.map(str::to_string),
            },
            answer,
        };
        let handed = match self.completions.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(writer) => writer.send(request).is_ok(),
            None => false,
        };
        if !handed {
            return self.store.complete_order(job, order_id, payment_ref).await;
        }
        // The job's database span covers its wait for the shared write.
        let written = self.store.traced("UPDATE", "orders", async move {
            match answered.await {
                Ok(Ok(Completed::Completed)) => Ok(true),
                Ok(Ok(Completed::NotCompletable)) => Ok(false),
                Ok(Ok(Completed::LeaseLost)) => Err(StoreError::LeaseLost),
                Ok(Err(err)) => Err(err),
                // The writer went away without an answer (it does not, while run() waits for
                // every job): whether the write landed is unknown, so the job stops without
                // effect and the next holder of its lease finds out.
                Err(_) => Err(StoreError::LeaseLost),
            }
        });
        written.await
    }

    async fn job_loop(self: Arc<Self>, slot: usize, batch: usize, cancel: CancellationToken) {
        let owner = format!("{}/{slot}", self.name);
        let mut idle_backoff = self.config.poll_interval;
        while !cancel.is_cancelled() {
            match self.store.claim_batch(&owner, self.config.lease, batch).await {
                Ok(claimed) if !claimed.is_empty() => {
                    idle_backoff = self.config.poll_interval;
                    let mut running = tokio::task::JoinSet::new();
                    for claimed in claimed {
                        let worker = self.clone();
                        running.spawn(
                            async move { worker.run_claimed(claimed).await }.with_subscriber(self.dispatch.clone()),
                        );
                    }
                    while running.join_next().await.is_some() {}
                    continue;
                }
                Ok(_) => idle_backoff = self.config.poll_interval,
                Err(err) => {
                    tracing::warn!(error = &err as &dyn std::error::Error, "cannot claim jobs; retrying");
                    idle_backoff = (idle_backoff * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(idle_backoff) => {}
            }
        }
    }

    /// Claims and processes one due job, if any: what tests and tools call instead of
    /// running the loop.
    pub async fn run_once(&self) -> Result<Option<(Job, JobOutcome)>, StoreError> {
        let owner = format!("{}/once", self.name);
        let Some(job) = self.claim(&owner).await? else {
            return Ok(None);
        };
        let outcome = self.process(job.clone()).await;
        Ok(Some((job, outcome)))
    }

    pub async fn claim(&self, owner: &str) -> Result<Option<Job>, StoreError> {
        self.store.claim_job(owner, self.config.lease).await
    }

    /// Processes a claimed job inside its own span, which continues the checkout's trace.
    /// The lease is renewed while the job runs; once it is lost the job stops at once.
    pub async fn process(&self, job: Job) -> JobOutcome {
        self.run_claimed(Claimed {
            job,
            order: None,
            reservation: None,
        })
        .await
    }

    /// [`Worker::process`] for a job claimed with its order read and its stock perhaps
    /// reserved in the same transaction (the loop's fast path).
    async fn run_claimed(&self, claimed: Claimed) -> JobOutcome {
        let Claimed {
            job,
            order: pre_read,
            reservation,
        } = claimed;
        let span = tracing::dispatcher::with_default(&self.dispatch, || {
            tracing::info_span!(
                "process order",
                otel.kind = "consumer",
                otel.status_code = Empty,
                messaging.system = "recordstore-jobs",
                messaging.operation.type = "process",
                correlation_id = %job.correlation_id,
                order.id = job.order_id,
                job.id = job.id,
                job.attempt = job.attempts,
                job.outcome = Empty,
                trace_id = Empty,
                span_id = Empty,
            )
        });
        link_span(&span, job.traceparent.as_deref().and_then(TraceParent::parse));
        let started = Instant::now();
        let outcome = async {
            tracing::info!(attempt = job.attempts, "job started");
            let result = tokio::select! {
                result = self.steps(&job, pre_read, reservation) => result,
                lost = self.keep_lease(&job) => Err(lost),
            };
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(StoreError::LeaseLost) => self.lease_lost(&job),
                Err(err) => self.retry_or_fail(&job, format!("database error: {err}")).await,
            };
            self.record(&job, &outcome, started.elapsed());
            outcome
        }
        .instrument(span.clone())
        .with_subscriber(self.dispatch.clone())
        .await;
        span.record("job.outcome", outcome.label());
        if matches!(outcome, JobOutcome::Failed(_)) {
            span.record("otel.status_code", "ERROR");
        }
        outcome
    }

    /// Renews the lease every third of its length; returns only when it is lost. Once the
    /// job's own steps have ended it (a renewal can wait on the row lock of the job's
    /// completion and find it done), there is nothing left to keep and nothing was lost:
    /// it waits for the steps, which are returning.
    async fn keep_lease(&self, job: &Job) -> StoreError {
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match self.store.renew_lease(job, self.config.lease).await {
                Ok(Renewal::Renewed) => {}
                Ok(Renewal::Ended) => std::future::pending::<()>().await,
                Err(StoreError::LeaseLost) => return StoreError::LeaseLost,
                Err(err) => {
                    tracing::warn!(error = &err as &dyn std::error::Error, "cannot renew the job's lease")
                }
            }
        }
    }

    fn lease_lost(&self, job: &Job) -> JobOutcome {
        self.metrics.leases_lost.with(&[]).inc();
        tracing::warn!(
            attempt = job.attempts,
            "job lease lost: another worker claimed the job or its lease ran out; stopping without effect"
        );
        JobOutcome::LeaseLost
    }

    async fn steps(
        &self,
        job: &Job,
        pre_read: Option<Order>,
        reservation: Option<Reservation>,
    ) -> Result<JobOutcome, StoreError> {
        let order = match pre_read {
            Some(order) => Some(order),
            None => self.store.get_order(job.order_id).await?,
        };
        let Some(order) = order else {
            self.store.finish_job(job, "failed", Some("order not found")).await?;
            return Ok(JobOutcome::Failed("order not found".into()));
        };
        if order.status == order_status::COMPLETED {
            tracing::info!("order already completed; nothing to do");
            self.store.finish_job(job, "done", None).await?;
            return Ok(JobOutcome::Completed);
        }
        if order.status == order_status::FAILED {
            // An earlier attempt failed the order and stopped before settling its refund.
            let reason = order.failure_reason.clone().unwrap_or_else(|| "failed".into());
            return self.settle_failed(job, &order, &reason).await;
        }
        if job.attempts > job.max_attempts {
            // Past its attempts (an earlier holder's lease ran out on the last one): end the
            // order with what is already done, and charge nothing new.
            if order.stock_reserved && order.payment_ref.is_some() {
                return self.complete(job, &order, None).await;
            }
            let reason = format!("gave up after {} attempts", job.max_attempts);
            return self.fail(job, &order, &reason).await;
        }
        let reservation = match reservation {
            Some(done) => done,
            None => self.store.reserve_stock(job, &order).await?,
        };
        match reservation {
            Reservation::Reserved => {
                self.metrics.order_transitions.with(&[order_status::PROCESSING]).inc();
                tracing::info!(
                    quantity = order.quantity,
                    product_id = order.product_id,
                    "stock reserved"
                );
            }
            Reservation::AlreadyReserved => tracing::info!("stock already reserved by an earlier attempt"),
            Reservation::OutOfStock => return self.fail(job, &order, "out of stock").await,
        }
        let mut captured = None;
        if order.payment_ref.is_none() {
            match self.payments.charge(order.id, order.amount_cents).await {
                Ok(reference) => {
                    tracing::info!(payment_ref = %reference, amount_cents = order.amount_cents, "payment captured");
                    captured = Some(reference);
                }
                Err(err) => return self.payment_failed(job, &order, err).await,
            }
        }
        self.complete(job, &order, captured.as_deref()).await
    }

    /// Records the payment just captured (if any) and ends the order `completed` and the job
    /// with it, in one fenced write.
    async fn complete(&self, job: &Job, order: &Order, payment_ref: Option<&str>) -> Result<JobOutcome, StoreError> {
        tracing::info!("order confirmation sent");
        let completed = self.write_completion(job, order.id, payment_ref).await?;
        if !completed {
            return self
                .fail(job, order, "could not complete: the order holds no stock or no payment")
                .await;
        }
        self.metrics.order_transitions.with(&[order_status::COMPLETED]).inc();
        self.observe_completion(job, order_status::COMPLETED);
        tracing::info!("order completed");
        Ok(JobOutcome::Completed)
    }

    async fn payment_failed(&self, job: &Job, order: &Order, err: PaymentError) -> Result<JobOutcome, StoreError> {
        tracing::warn!(error = %err, attempt = job.attempts, "payment failed");
        if err != PaymentError::Voided && job.attempts < job.max_attempts {
            return Ok(self.retry_or_fail(job, err.to_string()).await);
        }
        let reason = format!("payment failed after {} attempts: {err}", job.attempts);
        self.fail(job, order, &reason).await
    }

    /// Ends the order `failed`, giving back its reserved stock, then refunds any charge.
    async fn fail(&self, job: &Job, order: &Order, reason: &str) -> Result<JobOutcome, StoreError> {
        let failed = self.store.fail_order(job, order, reason).await?;
        if failed.stock_released {
            tracing::info!(quantity = order.quantity, "reserved stock released");
        }
        if failed.failed_now {
            self.metrics.order_transitions.with(&[order_status::FAILED]).inc();
            self.observe_completion(job, order_status::FAILED);
            tracing::warn!(reason, "order failed");
        }
        self.settle_failed(job, order, reason).await
    }

    /// A failed order holds no net charge: refund what the gateway took (idempotent, and it
    /// voids the key so a charge still in flight is declined), record it, end the job.
    async fn settle_failed(&self, job: &Job, order: &Order, reason: &str) -> Result<JobOutcome, StoreError> {
        let refund = self.payments.refund(order.id).await?;
        self.store.settle_failed_order(job, refund.as_deref(), reason).await?;
        Ok(JobOutcome::Failed(reason.to_string()))
    }

    /// The order and its job are written together, so the job's creation time is the checkout's.
    fn observe_completion(&self, job: &Job, status: &str) {
        let waited = (self.store.clock().now_ms() - job.created_at_ms).max(0) as f64 / 1000.0;
        self.metrics.order_completion.with(&[status]).observe(waited);
    }

    /// Requeues with exponential backoff while attempts remain; the last attempt fails the
    /// order. When even the requeue cannot be written, the lease runs out and the job is
    /// picked up again (past its attempts, it is then ended), so nothing is lost.
    async fn retry_or_fail(&self, job: &Job, error: String) -> JobOutcome {
        if job.attempts >= job.max_attempts
            && let Ok(Some(order)) = self.store.get_order(job.order_id).await
        {
            let reason = format!("gave up after {} attempts: {error}", job.attempts);
            match self.fail(job, &order, &reason).await {
                Ok(outcome) => return outcome,
                Err(StoreError::LeaseLost) => return self.lease_lost(job),
                Err(_) => {}
            }
        }
        let delay = backoff(&self.config, job.attempts);
        let run_at = self.store.clock().now_ms() + delay.as_millis() as i64;
        match self.store.requeue_job(job, run_at, Some(&error)).await {
            Ok(()) => {
                tracing::info!(retry_in_ms = delay.as_millis() as u64, error = %error, "job will be retried");
                JobOutcome::Retried(error)
            }
            Err(StoreError::LeaseLost) => self.lease_lost(job),
            Err(err) => {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "cannot requeue job; its lease will expire"
                );
                JobOutcome::Retried(error)
            }
        }
    }

    fn record(&self, job: &Job, outcome: &JobOutcome, took: Duration) {
        let label = outcome.label();
        self.metrics.jobs_processed.with(&[label]).inc();
        self.metrics.job_duration.with(&[label]).observe(took.as_secs_f64());
        if matches!(outcome, JobOutcome::Completed | JobOutcome::Failed(_)) {
            self.metrics.job_attempts.with(&[label]).observe(job.attempts as f64);
        }
        tracing::info!(
            outcome = label,
            duration_ms = took.as_secs_f64() * 1000.0,
            "job finished"
        );
    }
}

/// Delay before retry number `attempt` (1-based): base × 2^(attempt-1), capped, ±20% jitter.
pub fn backoff(config: &WorkerConfig, attempt: i64) -> Duration {
    let exp = (attempt.max(1) - 1).min(16) as u32;
    let raw = config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(config.backoff_max);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    raw.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WorkerConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..WorkerConfig::default()
        };
        let within = |d: Duration, ms: u64| {
            let ms = ms as f64;
            (ms * 0.8..=ms * 1.2).contains(&(d.as_millis() as f64))
        };
        assert!(within(backoff(&config, 1), 100));
        assert!(within(backoff(&config, 2), 200));
        assert!(within(backoff(&config, 3), 400));
        assert!(within(backoff(&config, 10), 1000));
    }
}
