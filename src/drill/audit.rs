//! The money and stock half of the drill ledger: the store's own audit through its admin API
//! when the drill has the token, else the promises each of the drill's own orders shows on
//! the public API. The store's answers are untrusted data: a bad one is a note, not a panic.

use std::fmt::Write;

use recordstore::store::{AuditReport, MoneySummary, StockSummary, Violation};
use serde::Serialize;
use serde_json::Value;

/// What the ledger learnt about money and stock.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LedgerAudit {
    /// `admin audit` (every order and product of the store) or `public API` (the drill's
    /// acknowledged orders only: stock conservation and refunds cannot be seen from there).
    pub source: String,
    pub money: Option<MoneySummary>,
    pub stock: Option<StockSummary>,
    pub violations: Vec<Violation>,
    /// Why the admin audit was not used, when it was not.
    pub note: Option<String>,
}

/// The promises the JUnit report lists one case each, with the violation kinds that break them.
pub const INVARIANTS: &[(&str, &[&str])] = &[
    ("every completed order holds its stock", &["completed_without_stock"]),
    (
        "every completed order is charged exactly once",
        &[
            "completed_not_charged",
            "completed_but_refunded",
            "payment_ref_mismatch",
        ],
    ),
    ("no failed order holds stock", &["failed_holds_stock"]),
    (
        "no failed order holds a net charge",
        &["failed_with_net_charge", "refund_not_recorded"],
    ),
    ("stock is conserved", &["stock_not_conserved"]),
    (
        "no order is left without a live job",
        &["processing_without_live_lease", "order_without_job"],
    ),
];

impl LedgerAudit {
    pub fn from_report(report: AuditReport) -> LedgerAudit {
        LedgerAudit {
            source: "admin audit".into(),
            money: Some(report.money),
            stock: Some(report.stock),
            violations: report.violations,
            note: None,
        }
    }

    pub fn from_public(violations: Vec<Violation>, note: String) -> LedgerAudit {
        LedgerAudit {
            source: "public API".into(),
            money: None,
            stock: None,
            violations,
            note: Some(note),
        }
    }

    /// The violations that break one of [`INVARIANTS`].
    pub fn broken(&self, kinds: &[&str]) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| kinds.contains(&v.kind.as_str()))
            .collect()
    }

    /// `money: … charged, … refunded, net … = completed …`, for the table.
    pub fn money_line(&self) -> String {
        match &self.money {
            Some(m) => format!(
                "{} charges ({}), {} refunds ({}), net {} for completed orders worth {}{}",
                m.charges,
                cents(m.charged_cents),
                m.refunds,
                cents(m.refunded_cents),
                cents(m.net_cents),
                cents(m.completed_cents),
                if m.net_cents == m.completed_cents {
                    ""
                } else {
                    " — MISMATCH"
                }
            ),
            None => format!("per order only ({})", self.source),
        }
    }

    pub fn stock_line(&self) -> String {
        match &self.stock {
            Some(s) => format!(
                "{} products: {} units at start = {} on the shelf + {} held by orders{}",
                s.products,
                s.initial,
                s.on_hand,
                s.held,
                if s.initial == s.on_hand + s.held {
                    ""
                } else {
                    " — MISMATCH"
                }
            ),
            None => format!("per order only ({})", self.source),
        }
    }

    pub fn violations_line(&self) -> String {
        if self.violations.is_empty() {
            return format!("none ({})", self.source);
        }
        let mut out = format!("{} ({}): ", self.violations.len(), self.source);
        for (i, v) in self.violations.iter().take(5).enumerate() {
            let _ = write!(
                out,
                "{}{}{}",
                if i > 0 { "; " } else { "" },
                v.kind,
                v.order_id.map(|id| format!(" order {id}")).unwrap_or_default()
            );
        }
        if self.violations.len() > 5 {
            let _ = write!(out, "; … {} more", self.violations.len() - 5);
        }
        out
    }
}

fn cents(c: i64) -> String {
    format!(
        "{}{}.{:02}",
        if c < 0 { "-" } else { "" },
        c.unsigned_abs() / 100,
        c.unsigned_abs() % 100
    )
}

/// Why the store's audit could not be had; says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("GET {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "GET {url} answered {status} (is the admin token the store's RECORDSTORE_ADMIN_TOKEN, and the store current?)"
    )]
    Refused { url: String, status: u16 },
    #[error("GET {url}: not an audit report: {source}")]
    NotAnAudit { url: String, source: serde_json::Error },
}

/// The store's audit through `GET /admin/audit`.
pub async fn admin_audit(http: &reqwest::Client, target: &str, token: &str) -> Result<AuditReport, AuditError> {
    let url = format!("{target}/admin/audit");
    let unreachable = |e: reqwest::Error, url: &str| AuditError::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let response = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| unreachable(e, &url))?;
    let status = response.status();
    if !status.is_success() {
        return Err(AuditError::Refused {
            url,
            status: status.as_u16(),
        });
    }
    let body = response.bytes().await.map_err(|e| unreachable(e, &url))?;
    serde_json::from_slice(&body).map_err(|source| AuditError::NotAnAudit { url, source })
}

/// The promises one final order shows on the public API (`GET /orders/{id}`).
pub fn check_public_order(order: &Value) -> Vec<Violation> {
    let Some(id) = order["id"].as_i64() else {
        return Vec::new();
    };
    let reserved = order["stock_reserved"].as_bool();
    let paid = order["payment_ref"].as_str().is_some();
    let refunded = order["refund_ref"].as_str().is_some();
    let mut found = Vec::new();
    let mut say = |kind: &str, detail: &str| {
        found.push(Violation {
            kind: kind.into(),
            order_id: Some(id),
            product_id: None,
            detail: detail.into(),
        })
    };
    match order["status"].as_str() {
        Some("completed") => {
            if reserved == Some(false) {
                say("completed_without_stock", "completed, but its stock was given back");
            }
            if !paid {
                say("completed_not_charged", "completed without a payment reference");
            }
            if refunded {
                say("completed_but_refunded", "completed, but refunded");
            }
        }
        Some("failed") => {
            if reserved == Some(true) {
                say("failed_holds_stock", "failed, but still holds its stock");
            }
            if paid && !refunded {
                say("failed_with_net_charge", "failed, charged, and not refunded");
            }
        }
        _ => {}
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn public_orders_are_held_to_the_same_promises() {
        let ok = json!({"id": 1, "status": "completed", "stock_reserved": true, "payment_ref": "pay_1"});
        assert!(check_public_order(&ok).is_empty());
        let given_back = json!({"id": 2, "status": "completed", "stock_reserved": false, "payment_ref": "pay_2"});
        assert_eq!(check_public_order(&given_back)[0].kind, "completed_without_stock");
        let charged = json!({"id": 3, "status": "failed", "stock_reserved": false, "payment_ref": "pay_3"});
        assert_eq!(check_public_order(&charged)[0].kind, "failed_with_net_charge");
        let refunded = json!({"id": 4, "status": "failed", "stock_reserved": false, "payment_ref": "pay_4", "refund_ref": "ref_4"});
        assert!(check_public_order(&refunded).is_empty());
        assert!(check_public_order(&json!({"status": "failed", "stock_reserved": true})).is_empty());
        assert!(check_public_order(&json!("not an order")).is_empty());
    }

    #[test]
    fn each_violation_breaks_exactly_one_named_invariant() {
        let audit = LedgerAudit::from_public(
            vec![Violation {
                kind: "failed_with_net_charge".into(),
                order_id: Some(9),
                product_id: None,
                detail: String::new(),
            }],
            String::new(),
        );
        let broken: Vec<&str> = INVARIANTS
            .iter()
            .filter(|(_, kinds)| !audit.broken(kinds).is_empty())
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(broken, ["no failed order holds a net charge"]);
        assert_eq!(
            audit.violations_line(),
            "1 (public API): failed_with_net_charge order 9"
        );
    }

    #[test]
    fn money_is_shown_in_currency_units() {
        assert_eq!(cents(123_456), "1234.56");
        assert_eq!(cents(-5), "-0.05");
    }
}
