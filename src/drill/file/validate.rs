//! What serde cannot check in a drill file: services named, faults that fit their action,
//! bounds on every duration and rate. Errors carry a snippet to find in the text.

use std::time::Duration;

use super::{Action, Drill, ENDING_SIGNALS, Fault, HARD_MAX_FAULT, MAX_STOP_GRACE_SECONDS};
use crate::tomlfile::Invalid;

/// What serde cannot check; errors carry a snippet to locate in the text.
pub(super) fn validate(d: &Drill) -> Result<(), Invalid> {
    if d.services.is_empty() {
        return Err(Invalid::new(
            Some("services".into()),
            "`services` must name at least one compose service".into(),
        ));
    }
    if d.faults.is_empty() {
        return Err(Invalid::new(None, "a drill needs at least one [[fault]]".into()));
    }
    let cap = d.safety.max_fault_duration.0.min(HARD_MAX_FAULT);
    for fault in &d.faults {
        if !d.services.contains(&fault.service) {
            return Err(Invalid::new(
                Some(format!("service = \"{}\"", fault.service)),
                format!(
                    "fault acts on service {:?}, which is not in this drill's `services` ({:?})",
                    fault.service, d.services
                ),
            ));
        }
        if fault.duration.0 > cap {
            return Err(Invalid::new(
                Some("duration".into()),
                format!(
                    "fault duration {:?} exceeds the safety cap {:?} (safety.max_fault_duration, at most 30m)",
                    fault.duration.0, cap
                ),
            ));
        }
        if let Some(signal) = &fault.signal
            && !ENDING_SIGNALS.contains(&signal.as_str())
        {
            let why = if signal.starts_with("SIG") {
                format!(
                    "signal {signal:?} does not end a process, so starting the container again would not undo it; \
                     use action = \"pause\" to freeze a container, or a signal that ends it (SIGKILL, SIGTERM, …)"
                )
            } else {
                format!("signal {signal:?} should be a name like SIGKILL or SIGTERM")
            };
            return Err(Invalid::new(Some(format!("signal = \"{signal}\"")), why));
        }
        if fault.action == Action::PaymentFault && fault.latency_ms.is_none() && fault.error_rate.is_none() {
            return Err(Invalid::new(
                Some("payment-fault".into()),
                "a payment-fault needs latency_ms and/or error_rate".into(),
            ));
        }
        validate_network(fault)?;
        if let Some(rate) = fault.error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(Invalid::new(
                Some("error_rate".into()),
                format!("error_rate {rate} must be within 0..=1"),
            ));
        }
    }
    if !(0..=MAX_STOP_GRACE_SECONDS).contains(&d.safety.stop_grace_seconds) {
        return Err(Invalid::new(
            Some("stop_grace_seconds".into()),
            format!(
                "stop_grace_seconds {} must be within 0..={MAX_STOP_GRACE_SECONDS}",
                d.safety.stop_grace_seconds
            ),
        ));
    }
    if let Some(traffic) = &d.traffic
        && !(traffic.rate > 0.0 && traffic.rate <= 1000.0)
    {
        return Err(Invalid::new(
            Some("rate".into()),
            format!("traffic rate {} must be within (0, 1000] per second", traffic.rate),
        ));
    }
    for query in &d.steady_state.queries {
        if query.min.is_none() && query.max.is_none() {
            return Err(Invalid::new(
                Some(format!("name = \"{}\"", query.name)),
                format!("query {:?} needs min and/or max", query.name),
            ));
        }
    }
    for probe in &d.steady_state.probes {
        if !probe.path.starts_with('/') {
            return Err(Invalid::new(
                Some(format!("path = \"{}\"", probe.path)),
                format!("probe path {:?} must start with /", probe.path),
            ));
        }
    }
    Ok(())
}

/// The network fields belong to their own actions, and each network action has its own.
fn validate_network(fault: &Fault) -> Result<(), Invalid> {
    let owned = [
        ("delay", fault.delay.is_some(), Action::NetworkDelay),
        ("jitter", fault.jitter.is_some(), Action::NetworkDelay),
        ("loss_percent", fault.loss_percent.is_some(), Action::NetworkLoss),
        (
            "bandwidth_kbit",
            fault.bandwidth_kbit.is_some(),
            Action::NetworkBandwidth,
        ),
    ];
    for (field, given, action) in owned {
        if given && fault.action != action {
            return Err(Invalid::new(
                Some(format!("{field} =")),
                format!(
                    "{field} belongs to action = \"{}\", not {:?}",
                    action.name(),
                    fault.action.name()
                ),
            ));
        }
    }
    match fault.action {
        Action::NetworkDelay => {
            let Some(delay) = fault.delay else {
                return Err(Invalid::new(
                    Some("network-delay".into()),
                    "a network-delay needs delay (for example delay = \"300ms\")".into(),
                ));
            };
            if delay.0 < Duration::from_millis(1) || delay.0 > Duration::from_secs(60) {
                return Err(Invalid::new(
                    Some("delay =".into()),
                    format!("delay {:?} must be within 1ms..=60s", delay.0),
                ));
            }
            if let Some(jitter) = fault.jitter
                && jitter.0 > delay.0
            {
                return Err(Invalid::new(
                    Some("jitter =".into()),
                    format!("jitter {:?} must not exceed the delay {:?}", jitter.0, delay.0),
                ));
            }
        }
        Action::NetworkLoss => match fault.loss_percent {
            None => {
                return Err(Invalid::new(
                    Some("network-loss".into()),
                    "a network-loss needs loss_percent (for example loss_percent = 20)".into(),
                ));
            }
            Some(p) if !(p > 0.0 && p <= 100.0) => {
                return Err(Invalid::new(
                    Some("loss_percent =".into()),
                    format!("loss_percent {p} must be within (0, 100]"),
                ));
            }
            Some(_) => {}
        },
        Action::NetworkBandwidth => match fault.bandwidth_kbit {
            None => {
                return Err(Invalid::new(
                    Some("network-bandwidth".into()),
                    "a network-bandwidth needs bandwidth_kbit (for example bandwidth_kbit = 1000)".into(),
                ));
            }
            Some(k) if !(8..=10_000_000).contains(&k) => {
                return Err(Invalid::new(
                    Some("bandwidth_kbit =".into()),
                    format!("bandwidth_kbit {k} must be within 8..=10000000"),
                ));
            }
            Some(_) => {}
        },
        _ => {}
    }
    Ok(())
}
