//! Racing checkouts never oversell: 100 concurrent checkouts of a record with stock 10
//! end with exactly 10 completed orders and stock 0.

use futures_like::join_all;
use recordstore::Role;

use crate::helpers::{Db, spawn_app, spawn_with, test_config};
use crate::on_both_databases;

mod futures_like {
    /// Awaits every handle; panics if a task panicked.
    pub async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await.expect("task"));
        }
        out
    }
}

async fn hundred_concurrent_checkouts_against_stock_ten_complete_exactly_ten(db: Db) {
    let t = spawn_app(db, Role::ApiAndWorker).await;
    // A second worker process on the same database competes for the jobs.
    let second_worker = spawn_with(test_config(&t.database_url), Role::Worker, None).await;
    let product = t.create_product("Limited Pressing", 10).await;
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let client = t.client.clone();
            let url = t.url("/checkout");
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&serde_json::json!({ "product_id": product, "quantity": 1 }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let results = join_all(handles).await;
    let mut accepted = Vec::new();
    for (status, body) in &results {
        match status {
            202 => accepted.push(body["order_id"].as_i64().unwrap()),
            409 => assert_eq!(body["error"], "conflict"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        accepted.len() >= 10,
        "at least the first 10 checkouts are accepted, got {}",
        accepted.len()
    );
    let mut completed = 0;
    for id in &accepted {
        let order = t.wait_for_terminal(*id).await;
        match order.status.as_str() {
            "completed" => completed += 1,
            _ => assert_eq!(order.failure_reason.as_deref(), Some("out of stock"), "{order:?}"),
        }
    }
    assert_eq!(completed, 10, "exactly the stock is sold");
    assert_eq!(t.stock(product).await, 0);
    second_worker.app.shutdown().await.unwrap();
    t.app.shutdown().await.unwrap();
}
on_both_databases!(hundred_concurrent_checkouts_against_stock_ten_complete_exactly_ten);
