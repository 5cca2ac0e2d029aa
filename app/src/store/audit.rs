//! The simulated payment gateway's own ledger (one row per idempotency key, the order id),
//! and the audit of what the store promises about orders, money and stock.
//!
//! The gateway's ledger is the outside world's record of money: the worker's writes are
//! fenced by its lease, the gateway's are not, so the audit compares the two.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Backend, Store, StoreResult, order_status, untraced};

/// What the gateway did with a charge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCharge {
    /// Money moved now (`replayed: false`) or earlier under the same key (`replayed: true`).
    Charged { reference: String, replayed: bool },
    /// The key was refunded or voided before this charge arrived: declined, no money moved.
    Voided,
}

/// What the gateway did with a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayRefund {
    /// The charge is refunded, now (`replayed: false`) or earlier.
    Refunded { reference: String, replayed: bool },
    /// Nothing was charged under the key; it is voided, so a charge still in flight is declined.
    NothingCharged,
}

/// One broken promise, with the order or product it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `stock_not_conserved`, `completed_without_stock`, `completed_not_charged`,
    /// `completed_but_refunded`, `payment_ref_mismatch`, `failed_holds_stock`,
    /// `failed_with_net_charge`, `refund_not_recorded`, `processing_without_live_lease`,
    /// `order_without_job`.
    pub kind: String,
    #[serde(default)]
    pub order_id: Option<i64>,
    #[serde(default)]
    pub product_id: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneySummary {
    /// Charges the gateway made (a replayed key counts once).
    pub charges: i64,
    pub charged_cents: i64,
    pub refunds: i64,
    pub refunded_cents: i64,
    /// Charged minus refunded.
    pub net_cents: i64,
    /// What completed orders cost their buyers: must equal `net_cents` once every order is final.
    pub completed_cents: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSummary {
    pub products: i64,
    /// Units the products started with.
    pub initial: i64,
    /// Units on the shelf now.
    pub on_hand: i64,
    /// Units held by completed and in-flight orders.
    pub held: i64,
}

/// `recordstore audit` and `GET /admin/audit`: the invariants, checked in one read-only
/// snapshot. `clean` is true when `violations` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub schema_version: u32,
    pub clean: bool,
    pub checked_at_ms: i64,
    /// Orders by status.
    pub orders: BTreeMap<String, i64>,
    pub money: MoneySummary,
    pub stock: StockSummary,
    pub violations: Vec<Violation>,
}

/// One order as the audit sees it: the order, the gateway's row for it, its job.
struct OrderView {
    id: i64,
    status: String,
    stock_reserved: bool,
    amount_cents: i64,
    payment_ref: Option<String>,
    refund_ref: Option<String>,
    gateway_status: Option<String>,
    gateway_charge_ref: Option<String>,
    /// The job is queued, or running under a lease that has not run out.
    job_live: Option<bool>,
}

impl Store {
    /// Charges `amount_cents` under the idempotency key `order_id`: the same key charges once.
    pub async fn gateway_charge(&self, order_id: i64, amount_cents: i64) -> StoreResult<GatewayCharge> {
        untraced(async move {
            let now = self.now_ms();
            let reference = format!("pay_{order_id:010}");
            let inserted = sqlx::query(
                "INSERT INTO payments (order_id, amount_cents, status, charge_ref, created_at, updated_at) \
                 VALUES ($1, $2, 'charged', $3, $4, $4) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id)
            .bind(amount_cents)
            .bind(&reference)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(GatewayCharge::Charged {
                    reference,
                    replayed: false,
                });
            }
            let row = sqlx::query("SELECT status, charge_ref FROM payments WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&self.pool)
                .await?;
            let status: String = row.get(0);
            let charge_ref: Option<String> = row.get(1);
            Ok(match (status.as_str(), charge_ref) {
                ("charged", Some(reference)) => GatewayCharge::Charged {
                    reference,
                    replayed: true,
                },
                _ => GatewayCharge::Voided,
            })
        })
        .await
    }

    /// Refunds the charge made under `order_id`, once; voids the key when nothing was charged.
    pub async fn gateway_refund(&self, order_id: i64) -> StoreResult<GatewayRefund> {
        untraced(async move {
            let now = self.now_ms();
            let reference = format!("ref_{order_id:010}");
            let voided = sqlx::query(
                "INSERT INTO payments (order_id, amount_cents, status, created_at, updated_at) \
                 VALUES ($1, 0, 'voided', $2, $2) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if voided == 1 {
                return Ok(GatewayRefund::NothingCharged);
            }
            let refunded = sqlx::query(
                "UPDATE payments SET status = 'refunded', refund_ref = $1, updated_at = $2 \
                 WHERE order_id = $3 AND status = 'charged'",
            )
            .bind(&reference)
            .bind(now)
            .bind(order_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if refunded == 1 {
                return Ok(GatewayRefund::Refunded {
                    reference,
                    replayed: false,
                });
            }
            let row = sqlx::query("SELECT status, refund_ref FROM payments WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&self.pool)
                .await?;
            let status: String = row.get(0);
            let refund_ref: Option<String> = row.get(1);
            Ok(match (status.as_str(), refund_ref) {
                ("refunded", Some(reference)) => GatewayRefund::Refunded {
                    reference,
                    replayed: true,
                },
                _ => GatewayRefund::NothingCharged,
            })
        })
        .await
    }

    /// Checks every invariant in one read-only snapshot; changes nothing.
    pub async fn audit(&self) -> StoreResult<AuditReport> {
        untraced(async move {
            let mut tx = self.pool.begin().await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            let now = self.now_ms();
            let products = sqlx::query(
                "SELECT p.id, p.stock, COALESCE(p.initial_stock, -1), \
                 CAST(COALESCE((SELECT SUM(o.quantity) FROM orders o \
                     WHERE o.product_id = p.id AND o.stock_reserved = 1), 0) AS BIGINT) \
                 FROM products p ORDER BY p.id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let orders = sqlx::query(
                "SELECT o.id, o.status, o.stock_reserved, o.amount_cents, o.payment_ref, o.refund_ref, \
                     g.status, g.charge_ref, j.status, j.lease_expires_at \
                 FROM orders o LEFT JOIN payments g ON g.order_id = o.id \
                     LEFT JOIN jobs j ON j.order_id = o.id ORDER BY o.id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let money = sqlx::query(
                "SELECT status, COUNT(*), CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) \
                 FROM payments GROUP BY status",
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.rollback().await?;

            let mut report = AuditReport {
                schema_version: 1,
                checked_at_ms: now,
                ..AuditReport::default()
            };
            for status in order_status::ALL {
                report.orders.insert(status.to_string(), 0);
            }
            for row in &products {
                let (id, stock, initial, held): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
                let initial = if initial < 0 { stock + held } else { initial };
                report.stock.products += 1;
                report.stock.initial += initial;
                report.stock.on_hand += stock;
                report.stock.held += held;
                if initial != stock + held {
                    report.violations.push(Violation {
                        kind: "stock_not_conserved".into(),
                        order_id: None,
                        product_id: Some(id),
                        detail: format!(
                            "started with {initial} units; {stock} on the shelf + {held} held by orders = {}",
                            stock + held
                        ),
                    });
                }
            }
            for row in &money {
                let (status, count, cents): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
                if status == "charged" || status == "refunded" {
                    report.money.charges += count;
                    report.money.charged_cents += cents;
                }
                if status == "refunded" {
                    report.money.refunds += count;
                    report.money.refunded_cents += cents;
                }
            }
            report.money.net_cents = report.money.charged_cents - report.money.refunded_cents;
            for row in &orders {
                let lease: Option<i64> = row.get(9);
                let job_status: Option<String> = row.get(8);
                let view = OrderView {
                    id: row.get(0),
                    status: row.get(1),
                    stock_reserved: row.get::<i64, _>(2) != 0,
                    amount_cents: row.get(3),
                    payment_ref: row.get(4),
                    refund_ref: row.get(5),
                    gateway_status: row.get(6),
                    gateway_charge_ref: row.get(7),
                    job_live: job_status.map(|s| s == "queued" || (s == "running" && lease.is_some_and(|l| l >= now))),
                };
                *report.orders.entry(view.status.clone()).or_default() += 1;
                if view.status == order_status::COMPLETED {
                    report.money.completed_cents += view.amount_cents;
                }
                report.violations.extend(check_order(&view));
            }
            report.clean = report.violations.is_empty();
            Ok(report)
        })
        .await
    }
}

/// The promises about one order.
fn check_order(o: &OrderView) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut say = |kind: &str, detail: String| {
        found.push(Violation {
            kind: kind.into(),
            order_id: Some(o.id),
            product_id: None,
            detail,
        })
    };
    let gateway = o.gateway_status.as_deref().unwrap_or("none");
    let live = o.job_live.unwrap_or(false);
    match o.status.as_str() {
        order_status::COMPLETED => {
            if !o.stock_reserved {
                say(
                    "completed_without_stock",
                    "completed, but its stock was given back".into(),
                );
            }
            match (gateway, &o.payment_ref) {
                ("charged", Some(p)) if o.gateway_charge_ref.as_deref() != Some(p.as_str()) => say(
                    "payment_ref_mismatch",
                    format!("order says {p}, gateway says {:?}", o.gateway_charge_ref),
                ),
                ("charged", Some(_)) => {}
                ("refunded", _) => say(
                    "completed_but_refunded",
                    "completed, but the gateway refunded its charge".into(),
                ),
                (_, None) => say(
                    "completed_not_charged",
                    format!("completed without a payment reference (gateway: {gateway})"),
                ),
                (_, Some(p)) => say(
                    "completed_not_charged",
                    format!("order says {p}, gateway holds no charge ({gateway})"),
                ),
            }
        }
        order_status::FAILED => {
            if o.stock_reserved {
                say("failed_holds_stock", "failed, but still holds its stock".into());
            }
            // A failed order whose worker is still settling its refund is not yet a violation.
            if gateway == "charged" && !live {
                say(
                    "failed_with_net_charge",
                    format!("failed, but the gateway holds its charge {:?}", o.gateway_charge_ref),
                );
            }
            if gateway == "refunded" && o.refund_ref.is_none() && !live {
                say(
                    "refund_not_recorded",
                    "refunded at the gateway, but the order has no refund_ref".into(),
                );
            }
        }
        _ => match o.job_live {
            None => say("order_without_job", format!("{} with no job to finish it", o.status)),
            Some(false) => say(
                "processing_without_live_lease",
                format!("{}, but no worker holds its job (lease ran out)", o.status),
            ),
            Some(true) => {}
        },
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed() -> OrderView {
        OrderView {
            id: 7,
            status: "completed".into(),
            stock_reserved: true,
            amount_cents: 1000,
            payment_ref: Some("pay_7".into()),
            refund_ref: None,
            gateway_status: Some("charged".into()),
            gateway_charge_ref: Some("pay_7".into()),
            job_live: Some(false),
        }
    }

    fn kinds(o: &OrderView) -> Vec<String> {
        check_order(o).into_iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_completed_order_with_stock_and_one_charge_is_clean() {
        assert!(kinds(&completed()).is_empty());
    }

    #[test]
    fn a_completed_order_must_hold_stock_and_an_unrefunded_charge() {
        let o = OrderView {
            stock_reserved: false,
            ..completed()
        };
        assert_eq!(kinds(&o), ["completed_without_stock"]);
        let o = OrderView {
            gateway_status: Some("refunded".into()),
            ..completed()
        };
        assert_eq!(kinds(&o), ["completed_but_refunded"]);
        let o = OrderView {
            payment_ref: None,
            gateway_status: None,
            ..completed()
        };
        assert_eq!(kinds(&o), ["completed_not_charged"]);
        let o = OrderView {
            gateway_charge_ref: Some("pay_8".into()),
            ..completed()
        };
        assert_eq!(kinds(&o), ["payment_ref_mismatch"]);
    }

    #[test]
    fn a_failed_order_holds_no_stock_and_no_net_charge_once_settled() {
        let failed = OrderView {
            status: "failed".into(),
            stock_reserved: false,
            payment_ref: None,
            gateway_status: Some("voided".into()),
            gateway_charge_ref: None,
            ..completed()
        };
        assert!(kinds(&failed).is_empty());
        let charged = OrderView {
            gateway_status: Some("charged".into()),
            ..failed
        };
        assert_eq!(kinds(&charged), ["failed_with_net_charge"]);
        let settling = OrderView {
            job_live: Some(true),
            ..charged
        };
        assert!(kinds(&settling).is_empty(), "its worker is refunding it now");
        let holding = OrderView {
            stock_reserved: true,
            job_live: Some(false),
            gateway_status: Some("refunded".into()),
            refund_ref: Some("ref_7".into()),
            ..settling
        };
        assert_eq!(kinds(&holding), ["failed_holds_stock"]);
    }

    #[test]
    fn an_order_in_flight_needs_a_live_job() {
        let o = OrderView {
            status: "processing".into(),
            job_live: Some(false),
            ..completed()
        };
        assert_eq!(kinds(&o), ["processing_without_live_lease"]);
        let o = OrderView { job_live: None, ..o };
        assert_eq!(kinds(&o), ["order_without_job"]);
        let o = OrderView {
            job_live: Some(true),
            ..o
        };
        assert!(kinds(&o).is_empty());
    }
}
