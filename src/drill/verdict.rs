//! The drill's verdict on its expected alerts, pure: when each alert was seen, and when the
//! fault began, in; what was met, how late, and why not, out. Only an alert that became active
//! after the fault detected it.

use super::file::{AlertState, ExpectedAlert};
use super::report::AlertOutcome;

/// When an alert was first seen, in Unix ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sighting {
    /// Prometheus's activeAt: when it went pending.
    pub active: Option<i64>,
    /// The first look that found it firing.
    pub firing: Option<i64>,
    /// The first look that found it at Alertmanager.
    pub alertmanager: Option<i64>,
}

/// The outcome of one expected alert, and the failure to report when it was not met.
pub fn judge_alert(expected: &ExpectedAlert, seen: Sighting, fault_ms: Option<i64>) -> (AlertOutcome, Option<String>) {
    // An alert already active before the fault says nothing about the fault.
    let before = Option::zip(seen.active, fault_ms).is_some_and(|(active, fault)| active < fault);
    let after = |ms: Option<i64>| {
        Option::zip(ms, fault_ms)
            .filter(|_| !before)
            .map(|(ms, fault)| (ms - fault) as f64 / 1000.0)
    };
    let (pending_s, firing_s) = (after(seen.active), after(seen.firing));
    let reached = match expected.state {
        AlertState::Pending => pending_s.or(firing_s),
        AlertState::Firing => firing_s,
    };
    let within = expected.within.0.as_secs_f64();
    let met = reached.is_some_and(|s| s <= within);
    let failure = match (met, reached) {
        (true, _) => None,
        (false, _) if before => Some(format!(
            "expected alert {} was already active before the fault: it cannot show the fault was detected",
            expected.name
        )),
        (false, Some(s)) => Some(format!(
            "{} reached {:?} {s:.1}s after the fault, later than the expected {:?}",
            expected.name, expected.state, expected.within.0
        )),
        (false, None) => Some(format!(
            "expected alert {} never reached {:?} (expected within {:?} of the fault)",
            expected.name, expected.state, expected.within.0
        )),
    };
    let outcome = AlertOutcome {
        name: expected.name.clone(),
        state: expected.state,
        within_s: within,
        pending_after_s: pending_s,
        firing_after_s: firing_s,
        alertmanager_after_s: after(seen.alertmanager),
        met,
    };
    (outcome, failure)
}

/// Time to detect: the earliest expected alert to reach its state after the fault.
pub fn time_to_detect(alerts: &[AlertOutcome]) -> Option<f64> {
    alerts
        .iter()
        .filter_map(|a| match a.state {
            AlertState::Pending => a.pending_after_s,
            AlertState::Firing => a.firing_after_s,
        })
        .reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::units::HumanDuration;

    fn expected(state: AlertState) -> ExpectedAlert {
        ExpectedAlert {
            name: "DatabaseDown".into(),
            state,
            within: HumanDuration(Duration::from_secs(90)),
        }
    }

    const FAULT: i64 = 1_000_000;

    #[test]
    fn an_alert_active_after_the_fault_detects_it() {
        let seen = Sighting {
            active: Some(FAULT + 1_000),
            firing: Some(FAULT + 31_500),
            alertmanager: Some(FAULT + 32_000),
        };
        let (outcome, failure) = judge_alert(&expected(AlertState::Firing), seen, Some(FAULT));
        assert!(outcome.met && failure.is_none());
        assert_eq!(
            (
                outcome.pending_after_s,
                outcome.firing_after_s,
                outcome.alertmanager_after_s
            ),
            (Some(1.0), Some(31.5), Some(32.0))
        );
        assert_eq!(time_to_detect(&[outcome]), Some(31.5));
    }

    /// Regression: an alert firing before the fault counted as detected, with a negative time.
    #[test]
    fn an_alert_already_active_before_the_fault_detects_nothing() {
        let seen = Sighting {
            active: Some(FAULT - 60_000),
            firing: Some(FAULT + 500),
            alertmanager: None,
        };
        let (outcome, failure) = judge_alert(&expected(AlertState::Pending), seen, Some(FAULT));
        assert!(!outcome.met);
        assert_eq!((outcome.pending_after_s, outcome.firing_after_s), (None, None));
        assert!(failure.unwrap().contains("already active before the fault"));
        assert_eq!(time_to_detect(&[outcome]), None);
    }

    #[test]
    fn a_late_or_missing_alert_is_not_met_and_says_which() {
        let late = Sighting {
            active: Some(FAULT + 10_000),
            firing: Some(FAULT + 120_000),
            alertmanager: None,
        };
        let (outcome, failure) = judge_alert(&expected(AlertState::Firing), late, Some(FAULT));
        assert!(!outcome.met);
        assert!(failure.unwrap().contains("120.0s after the fault, later than"));
        let (pending, _) = judge_alert(&expected(AlertState::Pending), late, Some(FAULT));
        assert!(pending.met, "pending within 90 s");
        let (never, failure) = judge_alert(&expected(AlertState::Firing), Sighting::default(), Some(FAULT));
        assert!(!never.met);
        assert!(failure.unwrap().contains("never reached"));
        let (no_fault, _) = judge_alert(&expected(AlertState::Firing), late, None);
        assert!(!no_fault.met, "no fault injected: nothing to detect");
    }
}
