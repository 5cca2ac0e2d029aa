//! Orders, money and stock stay right when workers lose their leases: fencing, exactly-once
//! money, and the audit that proves both (and that fails when they are broken).

use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recordstore::Role;
use recordstore::clock::{Clock, now_ms};
use recordstore::store::{
    AuditReport, Completed, Completion, GatewayCharge, GatewayRefund, Job, NewOrder, Order, Renewal, Reservation,
    Store, StoreError,
};
use recordstore::worker::JobOutcome;
use serde_json::{Value, json};

use crate::helpers::{Db, TempDir, TestApp, eventually, fresh_database, spawn_app, spawn_with, test_config, worker_on};
use crate::on_both_databases;

async fn set_faults(t: &TestApp, faults: Value) {
    let response = t
        .client
        .post(t.url("/admin/faults"))
        .bearer_auth("test-token")
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "POST /admin/faults");
}

async fn checkout_id(t: &TestApp, product: i64) -> i64 {
    let response = t.checkout(product, 1).await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["order_id"].as_i64().unwrap()
}

/// Every invariant, spelled out on the orders the API shows, beside the audit's verdict.
async fn assert_invariants(t: &TestApp, product: i64, initial_stock: i64, orders: &[Order]) -> AuditReport {
    let mut completed_units = 0;
    for o in orders {
        match o.status.as_str() {
            "completed" => {
                assert!(o.stock_reserved, "completed order holds its stock: {o:?}");
                assert!(o.payment_ref.is_some(), "completed order is charged: {o:?}");
                assert!(o.refund_ref.is_none(), "completed order is not refunded: {o:?}");
                completed_units += o.quantity;
            }
            "failed" => {
                assert!(!o.stock_reserved, "failed order holds no stock: {o:?}");
                assert!(
                    o.payment_ref.is_none() || o.refund_ref.is_some(),
                    "failed order holds no net charge: {o:?}"
                );
            }
            other => panic!("order {} not final: {other}", o.id),
        }
    }
    assert_eq!(
        t.stock(product).await,
        initial_stock - completed_units,
        "stock conserved"
    );
    let audit = t.app.store().audit().await.unwrap();
    assert!(audit.clean, "audit: {:#?}", audit.violations);
    assert_eq!(
        audit.money.net_cents, audit.money.completed_cents,
        "money: {:?}",
        audit.money
    );
    audit
}

/// The review's reproduction, scaled down: payment latency over the job lease, half the
/// charges failing, two attempts, eight job loops racing over twelve orders.
async fn slow_failing_payments_leave_orders_money_and_stock_right(db: Db) {
    let (url, dir) = fresh_database(db).await;
    let mut config = test_config(&url);
    config.worker.lease = Duration::from_millis(300);
    config.worker.max_attempts = 2;
    config.worker.concurrency = 8;
    let t = spawn_with(config, Role::ApiAndWorker, dir).await;
    set_faults(&t, json!({ "payment_latency_ms": 700, "payment_failure_rate": 0.5 })).await;
    let product = t.create_product("Slow Pressing", 50).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(checkout_id(&t, product).await);
    }
    let mut orders = Vec::new();
    for id in ids {
        orders.push(t.wait_for_terminal(id).await);
    }
    let audit = assert_invariants(&t, product, 50, &orders).await;
    let completed = orders.iter().filter(|o| o.status == "completed").count() as i64;
    assert_eq!(
        audit.money.charges - audit.money.refunds,
        completed,
        "one net charge per completed order"
    );
    assert_eq!(
        t.app.metrics().payment_charges.with(&[]).counter_value() as i64,
        audit.money.charges,
        "the charges metric counts what the gateway charged"
    );
    t.app.shutdown().await.unwrap();
}
on_both_databases!(slow_failing_payments_leave_orders_money_and_stock_right);

/// What became of a job whose worker A lost its lease while charging (the test's clock jumped
/// past it) and that worker B then claimed and ran.
struct TakenOver {
    t: TestApp,
    product: i64,
    order: Order,
    /// B's claim and its outcome; A's outcome.
    b_attempt: i64,
    b_outcome: JobOutcome,
    a_outcome: JobOutcome,
    b: recordstore::worker::Worker,
}

/// One checkout on a product of 3, worker A claims it and is charging (400 ms of gateway
/// latency) when its 60 s lease runs out; worker B claims the job and runs it. Both workers
/// give up after `max_attempts`.
async fn taken_over_mid_payment(db: Db, title: &str, max_attempts: i64) -> TakenOver {
    let t = spawn_app(db, Role::Api).await;
    set_faults(&t, json!({ "payment_latency_ms": 400 })).await;
    let product = t.create_product(title, 3).await;
    let order_id = checkout_id(&t, product).await;
    // The API wrote its own max_attempts; this test's workers use theirs.
    sqlx::query("UPDATE jobs SET max_attempts = $1")
        .bind(max_attempts)
        .execute(t.app.store().pool())
        .await
        .unwrap();
    // From now on the test moves the clock the workers' leases are measured by.
    let clock = Clock::manual(now_ms());
    let store = t.app.store().clone().with_clock(clock.clone());
    let mut config = test_config(&t.database_url).worker;
    config.lease = Duration::from_secs(60);
    config.max_attempts = max_attempts;
    let a = worker_on(&t, store.clone(), config.clone());
    let b = worker_on(&t, store, config);
    let job = a.claim("worker-a").await.unwrap().expect("a job");
    let a_run = tokio::spawn(async move { a.process(job).await });
    eventually(
        "worker A to reserve and start charging",
        Duration::from_secs(10),
        || async { (t.order(order_id).await.status == "processing").then_some(()) },
    )
    .await;
    clock.advance(60_001);
    let (taken, b_outcome) = b.run_once().await.unwrap().expect("the expired job");
    let a_outcome = a_run.await.unwrap();
    let order = t.order(order_id).await;
    TakenOver {
        t,
        product,
        order,
        b_attempt: taken.attempts,
        b_outcome,
        a_outcome,
        b,
    }
}

/// Worker A is charging when its lease runs out; worker B takes the job over and completes
/// it. A's late writes change nothing and the buyer is charged once.
async fn a_worker_losing_its_lease_mid_payment_changes_nothing_and_charges_once(db: Db) {
    let x = taken_over_mid_payment(db, "Contested Pressing", 5).await;
    assert_eq!((x.b_attempt, &x.b_outcome), (2, &JobOutcome::Completed));
    assert_eq!(x.a_outcome, JobOutcome::LeaseLost);
    let audit = assert_invariants(&x.t, x.product, 3, std::slice::from_ref(&x.order)).await;
    assert_eq!(x.order.status, "completed");
    assert_eq!(
        (audit.money.charges, audit.money.refunds),
        (1, 0),
        "charged exactly once"
    );
    assert_eq!(x.t.app.metrics().leases_lost.with(&[]).counter_value(), 1);
    x.t.app.shutdown().await.unwrap();
}
on_both_databases!(a_worker_losing_its_lease_mid_payment_changes_nothing_and_charges_once);

/// Worker A is charging on the job's last attempt when its lease runs out; worker B finds
/// the job past its attempts and fails the order. Whichever of A's charge and B's refund
/// comes first, the failed order ends with its stock back and no net charge.
async fn a_job_past_its_attempts_fails_once_and_holds_no_net_charge(db: Db) {
    let x = taken_over_mid_payment(db, "Last Pressing", 1).await;
    assert_eq!(x.b_attempt, 2);
    assert!(
        matches!(x.b_outcome, JobOutcome::Failed(ref r) if r.contains("gave up")),
        "{:?}",
        x.b_outcome
    );
    assert_eq!(x.a_outcome, JobOutcome::LeaseLost);
    let audit = assert_invariants(&x.t, x.product, 3, std::slice::from_ref(&x.order)).await;
    assert_eq!(x.order.status, "failed");
    assert_eq!(audit.money.net_cents, 0);
    assert_eq!(
        audit.money.charges, audit.money.refunds,
        "a charge that landed was refunded"
    );
    assert_eq!(x.order.refund_ref.is_some(), audit.money.refunds == 1, "{:?}", x.order);
    assert!(
        x.b.run_once().await.unwrap().is_none(),
        "failed exactly once, nothing left"
    );
    x.t.app.shutdown().await.unwrap();
}
on_both_databases!(a_job_past_its_attempts_fails_once_and_holds_no_net_charge);

/// A migrated store on a fresh database, on a clock the test moves (and the temp dir that
/// holds a SQLite database).
async fn store_on_manual_clock(db: Db) -> (Store, Clock, Option<TempDir>) {
    let (url, dir) = fresh_database(db).await;
    let clock = Clock::manual(now_ms());
    let store = Store::connect_lazy(&url, 4).unwrap().with_clock(clock.clone());
    store.migrate().await.unwrap();
    (store, clock, dir)
}

/// A product at 10.00 with `stock` on the shelf; its id.
async fn new_product(store: &Store, title: &str, stock: i64) -> i64 {
    let product = recordstore::store::NewProduct {
        title: title.into(),
        artist: "Test".into(),
        genre: "test".into(),
        price_cents: 1000,
        stock,
    };
    store.create_product(&product).await.unwrap().unwrap().id
}

fn new_order(product_id: i64, quantity: i64, amount_cents: i64, correlation_id: String, max_attempts: i64) -> NewOrder {
    NewOrder {
        product_id,
        quantity,
        amount_cents,
        correlation_id,
        trace_id: None,
        traceparent: None,
        max_attempts,
    }
}

/// One claim takes a batch: expired leases first, then the due jobs in order; the stock of
/// each product goes to its earlier orders first when there is not enough for all, and an
/// order that cannot have it changes nothing.
async fn a_batch_claim_takes_expired_jobs_first_and_gives_stock_in_order(db: Db) {
    let (store, clock, _dir) = store_on_manual_clock(db).await;
    let products = [
        new_product(&store, "Scarce Pressing", 3).await,
        new_product(&store, "Plenty Pressing", 100).await,
    ];
    // Scarce: 2, 2, 1 units (3 in stock); plenty: 1 unit; then one more scarce order.
    let mut orders = Vec::new();
    for (i, (product, quantity)) in [(0, 2), (1, 1), (0, 2), (0, 1), (0, 1)].into_iter().enumerate() {
        let order = new_order(products[product], quantity, 1000 * quantity, format!("batch-{i}"), 3);
        orders.push(store.create_order_with_job(&order).await.unwrap().id);
    }
    let first = store.claim_job("stalled", LEASE).await.unwrap().expect("a job");
    assert_eq!(first.order_id, orders[0]);
    clock.advance(LEASE.as_millis() as i64 + 1);

    let batch = store.claim_batch("batch", LEASE, 4).await.unwrap();
    let got: Vec<(i64, i64, Option<Reservation>)> = batch
        .iter()
        .map(|c| (c.job.order_id, c.job.attempts, c.reservation))
        .collect();
    assert_eq!(
        got,
        vec![
            (orders[0], 2, Some(Reservation::Reserved)),
            (orders[1], 1, Some(Reservation::Reserved)),
            (orders[2], 1, Some(Reservation::OutOfStock)),
            (orders[3], 1, Some(Reservation::Reserved)),
        ],
        "the expired job first, then the due ones in order; 2 + 1 of the 3 scarce units"
    );
    for claimed in &batch {
        let order = claimed.order.as_ref().expect("the order read with the claim");
        let stored = store.get_order(order.id).await.unwrap().unwrap();
        assert_eq!(order.stock_reserved, stored.stock_reserved, "{stored:?}");
        assert_eq!(order.status, stored.status, "{stored:?}");
        assert_eq!(
            stored.stock_reserved,
            claimed.reservation == Some(Reservation::Reserved)
        );
    }
    let stock = |id: i64| {
        let store = store.clone();
        async move { store.get_product(id).await.unwrap().unwrap().stock }
    };
    assert_eq!((stock(products[0]).await, stock(products[1]).await), (0, 99));
    let rest = store.claim_batch("batch", LEASE, 4).await.unwrap();
    assert_eq!(rest.len(), 1, "the one due job left");
    assert_eq!(rest[0].job.order_id, orders[4]);
    assert_eq!(rest[0].reservation, Some(Reservation::OutOfStock));
    assert!(store.claim_batch("batch", LEASE, 4).await.unwrap().is_empty());
}
on_both_databases!(a_batch_claim_takes_expired_jobs_first_and_gives_stock_in_order);

/// Completions written together answer per job: the held job whose order holds stock and a
/// payment completes, a held one whose order does not is left as it was, and one whose lease
/// ran out writes nothing — all in one transaction.
async fn completions_written_together_answer_for_each_job(db: Db) {
    let (store, clock, _dir) = store_on_manual_clock(db).await;
    let product = new_product(&store, "Together Pressing", 10).await;
    for i in 0..3 {
        let order = new_order(product, 1, 1000, format!("together-{i}"), 3);
        store.create_order_with_job(&order).await.unwrap();
    }
    // The first claim (short lease) takes job 0; then job 1 and 2 under a long one.
    let stale = store.claim_batch("stale", Duration::from_millis(10), 1).await.unwrap();
    let held = store.claim_batch("held", LEASE, 2).await.unwrap();
    clock.advance(11);
    let (stale, paid, unpaid) = (&stale[0], &held[0], &held[1]);
    assert_eq!(paid.reservation, Some(Reservation::Reserved));
    let charge = |id: i64| store.gateway_charge(id, 1000);
    let GatewayCharge::Charged { reference, .. } = charge(paid.job.order_id).await.unwrap() else {
        panic!("charged")
    };
    let completion = |c: &recordstore::store::Claimed, payment_ref: Option<String>| Completion {
        job: c.job.clone(),
        order_id: c.job.order_id,
        payment_ref,
    };
    let answers = store
        .complete_orders(&[
            completion(stale, Some("pay_stale".into())),
            completion(paid, Some(reference.clone())),
            completion(unpaid, None),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![Completed::LeaseLost, Completed::Completed, Completed::NotCompletable]
    );
    let order = |id: i64| {
        let store = store.clone();
        async move { store.get_order(id).await.unwrap().unwrap() }
    };
    let (o_stale, o_paid, o_unpaid) = (
        order(stale.job.order_id).await,
        order(paid.job.order_id).await,
        order(unpaid.job.order_id).await,
    );
    assert_eq!((o_stale.status.as_str(), o_stale.payment_ref), ("processing", None));
    assert_eq!(
        (o_paid.status.as_str(), o_paid.payment_ref),
        ("completed", Some(reference))
    );
    assert_eq!((o_unpaid.status.as_str(), o_unpaid.payment_ref), ("processing", None));
    // The completed order's job is done; the others are still running, held as they were.
    let queue = store.queue_stats().await.unwrap();
    assert_eq!(queue.depth, 2, "two jobs still running");
    assert!(
        !store
            .complete_order(&unpaid.job, unpaid.job.order_id, None)
            .await
            .unwrap(),
        "the unpaid order still cannot complete"
    );
    assert!(matches!(
        store.complete_order(&stale.job, stale.job.order_id, None).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(store.complete_orders(&[]).await.unwrap().is_empty());
}
on_both_databases!(completions_written_together_answer_for_each_job);

/// A renewal tells a lease the holder's own attempt ended (completed, failed or queued
/// again) from one that was lost (run out, or taken by another claim): only the second is
/// counted as a lost lease.
async fn a_renewal_tells_a_job_its_holder_ended_from_a_lost_lease(db: Db) {
    let (store, clock, _dir) = store_on_manual_clock(db).await;
    let product = new_product(&store, "Renewal Pressing", 10).await;
    for i in 0..3 {
        let order = new_order(product, 1, 1000, format!("renewal-{i}"), 3);
        store.create_order_with_job(&order).await.unwrap();
    }
    let held = store.claim_batch("holder", LEASE, 3).await.unwrap();
    let (done, requeued, expiring) = (&held[0].job, &held[1].job, &held[2].job);
    assert_eq!(store.renew_lease(done, LEASE).await.unwrap(), Renewal::Renewed);

    let GatewayCharge::Charged { reference, .. } = store.gateway_charge(done.order_id, 1000).await.unwrap() else {
        panic!("charged")
    };
    assert!(
        store
            .complete_order(done, done.order_id, Some(&reference))
            .await
            .unwrap()
    );
    assert_eq!(
        store.renew_lease(done, LEASE).await.unwrap(),
        Renewal::Ended,
        "completed by its holder"
    );
    store.requeue_job(requeued, now_ms(), Some("retry")).await.unwrap();
    assert_eq!(
        store.renew_lease(requeued, LEASE).await.unwrap(),
        Renewal::Ended,
        "queued again by its holder"
    );

    // The third lease runs out and another claim takes the job (and the queued one): both
    // earlier holders' renewals are lost leases now.
    clock.advance(LEASE.as_millis() as i64 + 1);
    assert!(
        matches!(store.renew_lease(expiring, LEASE).await, Err(StoreError::LeaseLost)),
        "ran out"
    );
    let again = store.claim_batch("another", LEASE, 3).await.unwrap();
    assert_eq!(again.len(), 2, "the expired job and the queued one");
    for stale in [requeued, expiring] {
        assert!(
            matches!(store.renew_lease(stale, LEASE).await, Err(StoreError::LeaseLost)),
            "taken by another claim: job {}",
            stale.id
        );
    }
    for new in &again {
        assert_eq!(store.renew_lease(&new.job, LEASE).await.unwrap(), Renewal::Renewed);
    }
}
on_both_databases!(a_renewal_tells_a_job_its_holder_ended_from_a_lost_lease);

/// The race the batched completion writer opens on PostgreSQL: the writer's transaction holds
/// the job's row while a renewal waits for it; after the commit the renewal finds the job
/// done, which is its holder's own ending, not a lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_waiting_on_its_own_completion_is_not_a_lost_lease() {
    if crate::postgres::shared().is_none() {
        return;
    }
    let (store, _clock, _dir) = store_on_manual_clock(Db::Postgres).await;
    let product = new_product(&store, "Row Lock Pressing", 10).await;
    store
        .create_order_with_job(&new_order(product, 1, 1000, "row-lock".into(), 3))
        .await
        .unwrap();
    let job = store.claim_batch("holder", LEASE, 1).await.unwrap().remove(0).job;

    // The writer's transaction, spelled out: the fence's row lock, then the job's end.
    let mut writer = store.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(job.id)
        .execute(&mut *writer)
        .await
        .unwrap();
    let renewal = tokio::spawn({
        let (store, job) = (store.clone(), job.clone());
        async move { store.renew_lease(&job, LEASE).await }
    });
    // The renewal is waiting on the row lock once PostgreSQL shows it so.
    eventually("the renewal to wait on the row lock", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'UPDATE jobs SET lease_expires_at%'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            (waiting == 1).then_some(())
        }
    })
    .await;
    sqlx::query("UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL WHERE id = $1")
        .bind(job.id)
        .execute(&mut *writer)
        .await
        .unwrap();
    writer.commit().await.unwrap();
    assert_eq!(renewal.await.unwrap().unwrap(), Renewal::Ended);
}

/// Where one simulated worker is in the worker's sequence of steps. Each variant carries what
/// the worker believes; a worker that lost its lease goes on acting on that belief.
#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Decide(Job, Order),
    Reserve(Job, Order),
    Charge(Job, Order),
    Record(Job, Order, String),
    Complete(Job, Order),
    Fail(Job, Order),
    Refund(Job),
    Settle(Job, Option<String>),
    Requeue(Job),
}

const LEASE: Duration = Duration::from_millis(1_000);
const MAX_ATTEMPTS: i64 = 2;

/// One step of the worker's sequence through the store's functions. A lost lease ends the
/// run (the worker stops without effect), as it does in the worker.
async fn step(store: &Store, name: &str, phase: Phase, rng: &mut StdRng) -> Phase {
    let next = async {
        Ok::<Phase, StoreError>(match phase.clone() {
            // The worker's loop claims a batch and reserves its stock in one transaction;
            // `process` claims alone. Both paths race here.
            // A batch claim of up to three: this worker goes on with the first job; the
            // others wait for their leases to run out, as a crashed batch's would.
            Phase::Idle if rng.random_bool(0.5) => match store
                .claim_batch(name, LEASE, rng.random_range(1..=3))
                .await?
                .into_iter()
                .next()
            {
                Some(claimed) => {
                    let order = claimed.order.expect("order");
                    match claimed.reservation {
                        Some(Reservation::Reserved) => Phase::Charge(claimed.job, order),
                        Some(Reservation::OutOfStock) => Phase::Fail(claimed.job, order),
                        _ => Phase::Decide(claimed.job, order),
                    }
                }
                None => Phase::Idle,
            },
            Phase::Idle => match store.claim_job(name, LEASE).await? {
                Some(job) => {
                    let order = store.get_order(job.order_id).await?.expect("order");
                    Phase::Decide(job, order)
                }
                None => Phase::Idle,
            },
            Phase::Decide(job, order) => match order.status.as_str() {
                "completed" => {
                    store.finish_job(&job, "done", None).await?;
                    Phase::Idle
                }
                "failed" => Phase::Refund(job),
                _ if job.attempts > job.max_attempts => {
                    if order.stock_reserved && order.payment_ref.is_some() {
                        Phase::Complete(job, order)
                    } else {
                        Phase::Fail(job, order)
                    }
                }
                _ => Phase::Reserve(job, order),
            },
            Phase::Reserve(job, order) => match store.reserve_stock(&job, &order).await? {
                Reservation::OutOfStock => Phase::Fail(job, order),
                _ if order.payment_ref.is_some() => Phase::Complete(job, order),
                _ => Phase::Charge(job, order),
            },
            Phase::Charge(job, order) => {
                if rng.random_bool(0.3) {
                    if job.attempts < job.max_attempts {
                        Phase::Requeue(job)
                    } else {
                        Phase::Fail(job, order)
                    }
                } else {
                    match store.gateway_charge(order.id, order.amount_cents).await? {
                        GatewayCharge::Charged { reference, .. } => Phase::Record(job, order, reference),
                        GatewayCharge::Voided => Phase::Fail(job, order),
                    }
                }
            }
            Phase::Record(job, order, reference) => {
                // Half the time the payment is recorded on its own, half with the completion.
                if rng.random_bool(0.5) {
                    store.record_payment(&job, order.id, &reference).await?;
                    Phase::Complete(job, order)
                } else {
                    // Written alone, or through the batched path (one job's batch).
                    let completed = if rng.random_bool(0.5) {
                        store.complete_order(&job, order.id, Some(&reference)).await?
                    } else {
                        let completion = Completion {
                            job: job.clone(),
                            order_id: order.id,
                            payment_ref: Some(reference),
                        };
                        match store.complete_orders(&[completion]).await?[..] {
                            [Completed::Completed] => true,
                            [Completed::LeaseLost] => return Err(StoreError::LeaseLost),
                            _ => false,
                        }
                    };
                    if completed {
                        Phase::Idle
                    } else {
                        Phase::Fail(job, order)
                    }
                }
            }
            Phase::Complete(job, order) => {
                if store.complete_order(&job, order.id, None).await? {
                    Phase::Idle
                } else {
                    Phase::Fail(job, order)
                }
            }
            Phase::Fail(job, order) => {
                store.fail_order(&job, &order, "simulated failure").await?;
                Phase::Refund(job)
            }
            Phase::Refund(job) => match store.gateway_refund(job.order_id).await? {
                GatewayRefund::Refunded { reference, .. } => Phase::Settle(job, Some(reference)),
                GatewayRefund::NothingCharged => Phase::Settle(job, None),
            },
            Phase::Settle(job, refund) => {
                store
                    .settle_failed_order(&job, refund.as_deref(), "simulated failure")
                    .await?;
                Phase::Idle
            }
            Phase::Requeue(job) => {
                store
                    .requeue_job(&job, store.clock().now_ms() + 5, Some("retry"))
                    .await?;
                Phase::Idle
            }
        })
    };
    match next.await {
        Ok(next) => next,
        Err(StoreError::LeaseLost) => Phase::Idle,
        Err(err) => panic!("{name} at {phase:?}: {err}"),
    }
}

/// Three workers race over the same jobs: the scheduler picks who moves, the clock jumps past
/// leases mid-job, workers crash (forget their job) and stale ones keep acting. After each
/// round, every order is final and the audit is clean.
async fn racing_workers_with_expiring_leases_keep_every_invariant(db: Db) {
    let (store, clock, _dir) = store_on_manual_clock(db).await;
    let rounds = if db == Db::Sqlite { 60 } else { 25 };
    for seed in 0..rounds {
        let mut rng = StdRng::seed_from_u64(seed);
        let product = new_product(&store, &format!("Race {seed}"), 3).await;
        for i in 0..3 {
            let order = new_order(product, 1 + i % 2, 1000, format!("race-{seed}-{i}"), MAX_ATTEMPTS);
            store.create_order_with_job(&order).await.unwrap();
        }
        let mut workers = vec![Phase::Idle, Phase::Idle, Phase::Idle];
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 5_000, "seed {seed}: no end after 5000 steps: {workers:?}");
            match rng.random_range(0..100) {
                0..10 => clock.advance(LEASE.as_millis() as i64 + 1),
                10..30 => clock.advance(rng.random_range(1..50)),
                30..33 => {
                    let w = rng.random_range(0..workers.len());
                    workers[w] = Phase::Idle; // crashed: its job waits for the lease to run out
                }
                _ => {
                    let w = rng.random_range(0..workers.len());
                    let phase = std::mem::replace(&mut workers[w], Phase::Idle);
                    workers[w] = step(&store, &format!("w{w}"), phase, &mut rng).await;
                }
            }
            let queue = store.queue_stats().await.unwrap();
            if queue.depth == 0 {
                break;
            }
        }
        // Stale workers finish whatever they still believe they should do; none of it lands.
        for (w, phase) in workers.into_iter().enumerate() {
            let mut phase = phase;
            while !matches!(phase, Phase::Idle) {
                phase = step(&store, &format!("w{w}"), phase, &mut rng).await;
            }
        }
        let audit = store.audit().await.unwrap();
        assert!(audit.clean, "seed {seed}: {:#?}", audit.violations);
        assert_eq!(audit.money.net_cents, audit.money.completed_cents, "seed {seed}");
        assert_eq!(audit.orders["pending"] + audit.orders["processing"], 0, "seed {seed}");
    }
    store.close().await;
}
on_both_databases!(racing_workers_with_expiring_leases_keep_every_invariant);

/// A copy of every row, to show the audit wrote nothing.
async fn snapshot(store: &Store) -> Vec<String> {
    let mut rows = Vec::new();
    for sql in [
        "SELECT id, stock, initial_stock FROM products ORDER BY id",
        "SELECT id, status, stock_reserved, payment_ref, refund_ref, updated_at FROM orders ORDER BY id",
        "SELECT id, status, attempts, updated_at FROM jobs ORDER BY id",
        "SELECT order_id, status, updated_at FROM payments ORDER BY order_id",
    ] {
        for row in sqlx::query(sql).fetch_all(store.pool()).await.unwrap() {
            use sqlx::Row;
            let cols: Vec<String> = (0..row.len())
                .map(|i| {
                    row.try_get::<Option<i64>, _>(i)
                        .map(|v| format!("{v:?}"))
                        .or_else(|_| row.try_get::<Option<String>, _>(i).map(|v| format!("{v:?}")))
                        .unwrap()
                })
                .collect();
            rows.push(cols.join("|"));
        }
    }
    rows
}

fn audit_command(database_url: &str) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recordstore"))
        .arg("audit")
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The audit passes a healthy store, and names the order when one is broken on purpose —
/// from the command line and from the admin API — without changing a row.
async fn the_audit_finds_a_broken_invariant_and_changes_nothing(db: Db) {
    let t = spawn_app(db, Role::ApiAndWorker).await;
    let product = t.create_product("Audited Pressing", 4).await;
    let order_id = checkout_id(&t, product).await;
    assert_eq!(t.wait_for_terminal(order_id).await.status, "completed");

    let (code, report, stderr) = audit_command(&t.database_url);
    assert_eq!(code, 0, "clean store: {stderr}");
    assert_eq!(report["clean"], true);
    assert_eq!(report["orders"]["completed"], 1);

    // Break it: the completed order's unit goes back on the shelf.
    let store = t.app.store();
    sqlx::query("UPDATE orders SET stock_reserved = 0 WHERE id = $1")
        .bind(order_id)
        .execute(store.pool())
        .await
        .unwrap();
    let before = snapshot(store).await;
    let (code, report, stderr) = audit_command(&t.database_url);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("invariant violations"), "{stderr}");
    let kinds: Vec<(String, Option<i64>)> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["kind"].as_str().unwrap().to_string(), v["order_id"].as_i64()))
        .collect();
    assert!(
        kinds.contains(&("completed_without_stock".into(), Some(order_id))),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|(k, _)| k == "stock_not_conserved"), "{kinds:?}");

    let unauthorized = t.client.get(t.url("/admin/audit")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let over_http: AuditReport = t
        .client
        .get(t.url("/admin/audit"))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!over_http.clean);
    assert!(over_http.violations.iter().any(|v| v.order_id == Some(order_id)));
    assert_eq!(snapshot(store).await, before, "the audit changed nothing");
    t.app.shutdown().await.unwrap();
}
on_both_databases!(the_audit_finds_a_broken_invariant_and_changes_nothing);

#[test]
fn the_audit_of_an_unreachable_database_exits_3_naming_it() {
    let (code, _, stderr) = audit_command("postgres://app:s3cret@127.0.0.1:1/store");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("postgres://app:****@127.0.0.1:1/store"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let missing = std::env::temp_dir().join(format!("no-such-{:x}.db", rand::random::<u64>()));
    let (code, _, stderr) = audit_command(&format!("sqlite://{}", missing.display()));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("no such database file"), "{stderr}");
    assert!(!missing.exists(), "the audit created no database");
}
