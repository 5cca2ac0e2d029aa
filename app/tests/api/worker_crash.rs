//! A worker that dies mid-job (its lease runs out) loses no order and reserves stock once.

use std::time::Duration;

use recordstore::Role;
use recordstore::clock::{Clock, now_ms};
use recordstore::store::StoreError;
use recordstore::worker::JobOutcome;

use crate::helpers::{Db, spawn_app, test_config, worker_on};
use crate::on_both_databases;

async fn a_worker_dying_mid_job_loses_nothing_and_reserves_once(db: Db) {
    // The API alone: no background worker, so the test decides who holds the job.
    let t = spawn_app(db, Role::Api).await;
    let product = t.create_product("Test Pressing", 5).await;
    let response = t.checkout(product, 2).await;
    assert_eq!(response.status(), 202);
    let order_id = response.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_i64()
        .unwrap();
    // A clock the test moves: the dead worker's lease runs out when the test says so.
    let clock = Clock::manual(now_ms());
    let store = t.app.store().clone().with_clock(clock.clone());

    // Worker A claims the job, reserves the stock, and dies before charging or finishing;
    // then its lease runs out.
    let dead = store
        .claim_job("dead-worker", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a job to claim");
    assert_eq!(dead.order_id, order_id);
    let order = store.get_order(order_id).await.unwrap().unwrap();
    store.reserve_stock(&dead, &order).await.unwrap();
    clock.advance(30_001);
    assert_eq!(t.stock(product).await, 3);
    assert_eq!(t.order(order_id).await.status, "processing");

    // Worker B finds the job whose lease ran out and finishes it.
    let worker = worker_on(&t, store.clone(), test_config(&t.database_url).worker);
    let (job, outcome) = worker
        .run_once()
        .await
        .unwrap()
        .expect("the abandoned job is claimable again");
    assert_eq!(job.id, dead.id);
    assert_eq!(job.attempts, 2, "the second attempt");
    assert_eq!(outcome, JobOutcome::Completed);

    let order = t.order(order_id).await;
    assert_eq!(order.status, "completed");
    assert_eq!(t.stock(product).await, 3, "stock reserved exactly once");
    // Worker A, were it to come back, no longer holds the job: none of its writes land.
    assert!(matches!(
        store.finish_job(&dead, "failed", Some("late")).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.fail_order(&dead, &order, "late").await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(
        t.order(order_id).await.status,
        "completed",
        "the late writes changed nothing"
    );
    assert!(store.audit().await.unwrap().clean);
    assert!(worker.run_once().await.unwrap().is_none(), "nothing left to do");
    t.app.shutdown().await.unwrap();
}
on_both_databases!(a_worker_dying_mid_job_loses_nothing_and_reserves_once);

async fn a_failing_gateway_retries_then_fails_the_order_and_returns_its_stock(db: Db) {
    let t = spawn_app(db, Role::ApiAndWorker).await;
    let product = t.create_product("Scratched Pressing", 3).await;
    let faults = t
        .client
        .post(t.url("/admin/faults"))
        .bearer_auth("test-token")
        .json(&serde_json::json!({ "payment_failure_rate": 1.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 200);
    let response = t.checkout(product, 1).await;
    let order_id = response.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_i64()
        .unwrap();
    let order = t.wait_for_terminal(order_id).await;
    assert_eq!(order.status, "failed");
    let reason = order.failure_reason.unwrap();
    assert!(reason.contains("payment") && reason.contains("5 attempts"), "{reason}");
    assert_eq!(t.stock(product).await, 3, "reserved stock given back");
    t.app.shutdown().await.unwrap();
}
on_both_databases!(a_failing_gateway_retries_then_fails_the_order_and_returns_its_stock);
