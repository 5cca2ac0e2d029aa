//! `recordctl correlate ID`: the three-pillar timeline of a correlation id, trace id or
//! order id seen earlier, from the stack's Jaeger, Loki and Prometheus.
//!
//! This module owns the three-pillar lookup every command uses: [`source`] (the embedded store
//! or the stack), [`pillars`] (the lookup by [`pillars::Subject`], the join and each pillar's
//! verdict), [`timeline`] (one time-ordered view). `journey` and `smoke` call it.

pub mod args;
pub mod pillars;
pub mod source;
pub mod timeline;

pub use args::CorrelateArgs;

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::exit::{CommandError, CommandResult, Outcome, UsageError};
use crate::output::Delivery;
use crate::units::parse_duration;
use pillars::{Stack, Subject, Telemetry};

/// What kind of id the user gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Trace(String),
    Order(i64),
    Correlation(String),
}

impl Id {
    pub fn classify(raw: &str) -> Result<Id, UsageError> {
        let raw = raw.trim();
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if (raw.len() == 32 || raw.len() == 16) && hex(raw) && !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Id::Trace(crate::backends::jaeger::normalize_id(raw, 32)));
        }
        if let Ok(order) = raw.parse::<i64>()
            && order > 0
        {
            return Ok(Id::Order(order));
        }
        recordstore::telemetry::CorrelationId::parse(raw)
            .map(|c| Id::Correlation(c.as_str().to_string()))
            .ok_or_else(|| {
                UsageError(format!(
                    "{raw:?} is not a trace id, an order id or a correlation id ([A-Za-z0-9._:-], 1 to 128)"
                ))
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CorrelateReport {
    pub schema_version: u32,
    pub id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub order_id: Option<i64>,
    pub telemetry: Option<Telemetry>,
    pub verdict: String,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Finds the correlation id and trace id belonging to `id`. An order the store does not know
/// is `Refused` (exit 1): the id was well formed, the check found nothing.
async fn resolve(
    id: &Id,
    args: &CorrelateArgs,
    stack: &Stack,
    since_ns: u128,
) -> Result<(Option<String>, Option<String>, Option<i64>), CommandError> {
    match id {
        Id::Trace(trace) => {
            let found = stack
                .jaeger
                .trace(trace)
                .await
                .map_err(|e| CommandError::Unreachable(e.to_string()))?;
            let correlation = found.and_then(|spans| {
                spans.into_iter().find_map(|s| {
                    s.tags
                        .get("correlation_id")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
            });
            Ok((correlation, Some(trace.clone()), None))
        }
        Id::Order(order) => {
            let url = format!("{}/orders/{order}", args.target.trim_end_matches('/'));
            let response = reqwest::get(&url).await.map_err(|e| {
                CommandError::Unreachable(format!("cannot reach the store at {url}: {e} (set --target)"))
            })?;
            if response.status() == 404 {
                return Err(CommandError::Refused(format!("order {order} not found at {url}")));
            }
            let order_doc: serde_json::Value = response
                .json()
                .await
                .map_err(|e| CommandError::Unreachable(format!("{url}: {e}")))?;
            let correlation = order_doc["correlation_id"].as_str().map(str::to_string);
            let trace = order_doc["trace_id"].as_str().map(str::to_string);
            Ok((correlation, trace, Some(*order)))
        }
        Id::Correlation(c) => {
            let lines = stack
                .loki
                .lines_with_correlation_id(c, since_ns, now_ns(), 100, crate::backends::loki::Direction::Forward)
                .await
                .map_err(|e| CommandError::Unreachable(e.to_string()))?;
            let from_logs = lines
                .iter()
                .find_map(|l| l.fields.as_ref()?.get("trace_id")?.as_str().map(str::to_string));
            let trace = match from_logs {
                Some(trace) => Some(trace),
                None => stack
                    .jaeger
                    .find_by_tag("recordstore-api", "correlation_id", c, 1)
                    .await
                    .ok()
                    .and_then(|ids| ids.into_iter().next()),
            };
            Ok((Some(c.clone()), trace, None))
        }
    }
}

/// The correlate run's plan, from its flags alone: the id classified, how far back to look,
/// the backends' clients (no request made yet).
pub struct CorrelatePlan {
    pub id: Id,
    pub since: Duration,
    pub stack: Stack,
}

impl CorrelatePlan {
    pub fn from_args(args: &CorrelateArgs) -> Result<CorrelatePlan, UsageError> {
        Ok(CorrelatePlan {
            id: Id::classify(&args.id)?,
            since: parse_duration(&args.since).map_err(|e| format!("--since: {e}"))?,
            stack: Stack::from_args(&args.stack)?,
        })
    }
}

pub async fn run(args: CorrelateArgs) -> CommandResult {
    let CorrelatePlan { id, since, stack } = CorrelatePlan::from_args(&args)?;
    let since_ns = now_ns().saturating_sub(since.as_nanos());
    let (correlation_id, trace_id, order_id) = resolve(&id, &args, &stack, since_ns).await?;
    let subject = Subject {
        correlation_id: correlation_id.clone().unwrap_or_default(),
        trace_id: trace_id.clone().unwrap_or_default(),
    };
    let telemetry = pillars::collect_from_stack(&stack, &subject, Duration::ZERO, since_ns).await;
    let verdict = if telemetry.complete() {
        "PASSED: all three pillars found".to_string()
    } else {
        telemetry.incomplete_verdict()
    };
    let outcome = Outcome::checks(telemetry.complete());
    let report = CorrelateReport {
        schema_version: 1,
        id: args.id.clone(),
        correlation_id,
        trace_id,
        order_id,
        telemetry: Some(telemetry),
        verdict,
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} · correlation id {} · trace {}{}",
        report.id,
        report.correlation_id.as_deref().unwrap_or("?"),
        report.trace_id.as_deref().unwrap_or("?"),
        report.order_id.map(|o| format!(" · order {o}")).unwrap_or_default()
    );
    if let Some(t) = &report.telemetry {
        text.push_str(&timeline::timeline(&[], t));
        for p in &t.pillars {
            let _ = writeln!(
                text,
                "{} {:<8} {}",
                if p.complete { "✓" } else { "✗" },
                p.pillar,
                p.detail
            );
        }
    }
    let _ = writeln!(text, "{}", report.verdict);
    let mut delivery = Delivery::default();
    delivery.show(&text, &report, args.json.as_deref());
    delivery.conclude(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> CorrelateArgs {
        let words: Vec<&str> = std::iter::once("correlate").chain(extra.iter().copied()).collect();
        match crate::cli::parse_for_test(&words) {
            crate::cli::Command::Correlate(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_plan_classifies_the_id_and_refuses_a_bad_one_or_a_bad_since() {
        let plan = CorrelatePlan::from_args(&args(&["42", "--since", "2h"])).unwrap();
        assert_eq!(plan.id, Id::Order(42));
        assert_eq!(plan.since, Duration::from_secs(7200));
        let e = CorrelatePlan::from_args(&args(&["not an id!"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not a trace id, an order id or a correlation id"), "{e}");
        let e = CorrelatePlan::from_args(&args(&["42", "--since", "yesterday"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("--since: "), "{e}");
    }

    #[test]
    fn ids_are_classified() {
        assert_eq!(
            Id::classify("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            Id::Trace("4bf92f3577b34da6a3ce929d0e0e4736".into())
        );
        assert_eq!(
            Id::classify("aaaabbbbccccdddd").unwrap(),
            Id::Trace("0000000000000000aaaabbbbccccdddd".into())
        );
        assert_eq!(Id::classify("42").unwrap(), Id::Order(42));
        assert_eq!(
            Id::classify("journey-1a2b").unwrap(),
            Id::Correlation("journey-1a2b".into())
        );
        assert!(Id::classify("has space").is_err());
    }
}
