//! The checkout ledger: every acknowledged order found final and alone, every refused one
//! without an order, the unanswered ones accounted for; then money and stock (see `audit`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::LedgerReport;
use super::{ADMIN_TOKEN_ENV, Ctx, audit, traffic};

/// Every acknowledged order must exist, reach a final status, and be the only order of its
/// checkout's correlation id; a checkout answered with an error must have made no order; what
/// became of the checkouts that got no answer is counted.
pub(super) async fn verify_ledger(ctx: &Ctx, ledger: &traffic::Ledger, limit: Duration) -> LedgerReport {
    let acks = ledger.acks();
    let deadline = Instant::now() + limit;
    let mut report = LedgerReport {
        acknowledged: acks.len(),
        ..LedgerReport::default()
    };
    let mut waiting: Vec<&traffic::Ack> = acks.iter().collect();
    let mut public_violations = Vec::new();
    let mut missing: BTreeMap<i64, u32> = BTreeMap::new();
    loop {
        let mut still = Vec::new();
        for ack in waiting {
            let url = format!("{}/orders/{}", ctx.target, ack.order_id);
            match ctx.http.get(&url).send().await {
                Ok(r) if r.status() == 404 => {
                    *missing.entry(ack.order_id).or_default() += 1;
                    still.push(ack);
                }
                Ok(r) if r.status().is_success() => {
                    let order: serde_json::Value = r.json().await.unwrap_or_default();
                    match order["status"].as_str() {
                        Some("completed") => report.completed += 1,
                        Some("failed") => report.failed += 1,
                        _ => {
                            still.push(ack);
                            continue;
                        }
                    }
                    public_violations.extend(audit::check_public_order(&order));
                }
                _ => still.push(ack),
            }
        }
        waiting = still;
        if waiting.is_empty() || Instant::now() >= deadline || ctx.interrupt.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for ack in waiting {
        if missing.get(&ack.order_id).copied().unwrap_or(0) > 0 {
            report.lost.push(ack.order_id);
        } else {
            report.unfinished.push(ack.order_id);
        }
    }
    let ack_ids = acks.iter().map(|a| a.correlation_id.clone()).collect();
    for (id, orders) in orders_of_all(ctx, ack_ids).await {
        match orders {
            Some(n) if n > 1 => report.duplicated.push(id),
            Some(_) => {}
            None => report.unverifiable.push(id),
        }
    }
    let refused = ledger.refused();
    report.refused = refused.len();
    report.rate_limited = ledger.rate_limited();
    let refused_ids = refused.into_iter().map(|c| c.correlation_id).collect();
    for (id, orders) in orders_of_all(ctx, refused_ids).await {
        match orders {
            Some(0) => {}
            Some(_) => report.refused_but_ordered.push(id),
            None => report.unverifiable.push(id),
        }
    }
    let unanswered = ledger.unanswered();
    report.unanswered = unanswered.len();
    let unanswered_ids = unanswered.into_iter().map(|c| c.correlation_id).collect();
    for (id, orders) in orders_of_all(ctx, unanswered_ids).await {
        match orders {
            Some(0) => report.unanswered_not_ordered += 1,
            Some(_) => report.unanswered_ordered += 1,
            None => report.unverifiable.push(id),
        }
    }
    report.audit = Some(match &ctx.admin_token {
        Some(token) => match audit::admin_audit(&ctx.http, &ctx.target, token).await {
            Ok(store_audit) => audit::LedgerAudit::from_report(store_audit),
            Err(why) => audit::LedgerAudit::from_public(public_violations, why.to_string()),
        },
        None => audit::LedgerAudit::from_public(
            public_violations,
            format!(
                "no admin token: give --admin-token or {ADMIN_TOKEN_ENV} for the store's full audit of money and stock"
            ),
        ),
    });
    report
}

/// [`orders_of`] for each correlation id, 16 lookups at a time; answers in the ids' order.
pub(super) async fn orders_of_all(ctx: &Ctx, ids: Vec<String>) -> Vec<(String, Option<u64>)> {
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut lookups = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (http, target, id, limit) = (ctx.http.clone(), ctx.target.clone(), id.clone(), limit.clone());
        lookups.spawn(async move {
            let _turn = limit.acquire_owned().await;
            (i, orders_of(&http, &target, &id).await)
        });
    }
    let mut answers = vec![None; ids.len()];
    while let Some(joined) = lookups.join_next().await {
        if let Ok((i, orders)) = joined {
            answers[i] = orders;
        }
    }
    ids.into_iter().zip(answers).collect()
}

/// How many orders the store holds for one checkout's correlation id; None when it does not
/// say.
pub(super) async fn orders_of(http: &reqwest::Client, target: &str, correlation_id: &str) -> Option<u64> {
    let url = format!("{target}/orders");
    let answer = http
        .get(&url)
        .query(&[("correlation_id", correlation_id), ("limit", "10")])
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.json::<serde_json::Value>().await.ok()?["count"].as_u64()
}

impl LedgerReport {
    /// Every broken promise the ledger shows, one failure line each.
    pub fn failures(&self, orders_deadline: Duration) -> Vec<String> {
        let mut failures = Vec::new();
        if !self.lost.is_empty() {
            failures.push(format!("acknowledged orders lost: {:?}", self.lost));
        }
        if !self.duplicated.is_empty() {
            failures.push(format!(
                "checkouts that made more than one order: {:?}",
                self.duplicated
            ));
        }
        if !self.unfinished.is_empty() {
            failures.push(format!(
                "acknowledged orders not finished within {orders_deadline:?}: {:?}",
                self.unfinished
            ));
        }
        if !self.refused_but_ordered.is_empty() {
            failures.push(format!(
                "checkouts answered with an error that made an order all the same: {:?}",
                self.refused_but_ordered
            ));
        }
        let Some(audit) = &self.audit else { return failures };
        for (invariant, kinds) in audit::INVARIANTS {
            let broken = audit.broken(kinds);
            let Some(first) = broken.first() else { continue };
            let orders: Vec<i64> = broken.iter().filter_map(|v| v.order_id).collect();
            let products: Vec<i64> = broken.iter().filter_map(|v| v.product_id).collect();
            failures.push(format!(
                "broken promise: {invariant} ({} violations; orders {orders:?}, products {products:?}; first: {})",
                broken.len(),
                first.detail
            ));
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_ledger_has_no_failures_and_each_broken_promise_is_one_line() {
        let clean = LedgerReport {
            acknowledged: 3,
            completed: 3,
            ..LedgerReport::default()
        };
        assert!(clean.failures(Duration::from_secs(30)).is_empty());
        let broken = LedgerReport {
            acknowledged: 3,
            lost: vec![7],
            duplicated: vec!["c-1".into()],
            unfinished: vec![9],
            refused_but_ordered: vec!["c-2".into()],
            audit: Some(audit::LedgerAudit {
                source: "admin audit".into(),
                money: None,
                stock: None,
                violations: vec![recordstore::store::Violation {
                    kind: audit::INVARIANTS[0].1[0].to_string(),
                    order_id: Some(9),
                    product_id: Some(2),
                    detail: "charged twice".into(),
                }],
                note: None,
            }),
            ..LedgerReport::default()
        };
        let failures = broken.failures(Duration::from_secs(30));
        assert_eq!(failures.len(), 5, "{failures:#?}");
        assert_eq!(failures[0], "acknowledged orders lost: [7]");
        assert!(failures[2].contains("within 30s: [9]"), "{}", failures[2]);
        assert!(
            failures[4].starts_with(&format!(
                "broken promise: {} (1 violations; orders [9], products [2]",
                audit::INVARIANTS[0].0
            )),
            "{}",
            failures[4]
        );
        assert!(failures[4].ends_with("first: charged twice)"), "{}", failures[4]);
    }
}
