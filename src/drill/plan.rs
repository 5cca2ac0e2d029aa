//! The drill's plan, from its flags alone: the drill file loaded and validated, the fault cap
//! applied, the backend URLs resolved, and what the run will need (Docker, Prometheus). No
//! network: a bad file or flag stops here with exit 2.

use super::args::DrillArgs;
use super::file::{self, Drill};
use crate::config::BackendUrls;
use crate::exit::UsageError;

#[derive(Debug)]
pub struct DrillPlan {
    pub drill: Drill,
    /// Where the drill came from (a path, or a built-in name), for the report.
    pub file: String,
    pub target: String,
    pub urls: BackendUrls,
    /// A fault acts on a container (anything but a payment fault).
    pub needs_docker: bool,
    /// A steady-state query, an expected alert or an `until` reads Prometheus.
    pub needs_prometheus: bool,
}

impl DrillPlan {
    /// `Err` is the message for a usage error (exit 2).
    pub fn from_args(args: &DrillArgs) -> Result<DrillPlan, UsageError> {
        let spec = args
            .drill
            .as_deref()
            .ok_or("name a drill (recordctl drill --list), or use --restore")?;
        let (mut drill, file) = file::load(spec).map_err(|e| e.to_string())?;
        if let Some(cap) = args.max_fault.as_deref() {
            let cap = crate::units::parse_duration(cap).map_err(|e| format!("--max-fault {cap:?}: {e}"))?;
            drill.safety.max_fault_duration.0 = drill.safety.max_fault_duration.0.min(cap);
        }
        let urls = crate::config::resolve(&args.stack).map_err(|e| e.to_string())?;
        let needs_docker = drill.faults.iter().any(|f| f.action.uses_docker());
        let needs_prometheus = !drill.steady_state.queries.is_empty()
            || !drill.expected_alerts.is_empty()
            || drill.faults.iter().any(|f| f.until.is_some());
        Ok(DrillPlan {
            target: args.target.trim_end_matches('/').to_string(),
            drill,
            file,
            urls,
            needs_docker,
            needs_prometheus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> DrillArgs {
        let words: Vec<&str> = std::iter::once("drill").chain(extra.iter().copied()).collect();
        match crate::cli::parse_for_test(&words) {
            crate::cli::Command::Drill(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_built_in_drill_becomes_a_plan_without_touching_anything() {
        let plan = DrillPlan::from_args(&args(&[
            "db-outage",
            "--target",
            "http://store:8000/",
            "--max-fault",
            "90s",
        ]))
        .unwrap();
        assert_eq!(plan.drill.name, "db-outage");
        assert_eq!(plan.target, "http://store:8000");
        assert!(plan.needs_docker && plan.needs_prometheus);
        assert_eq!(
            plan.drill.safety.max_fault_duration.0,
            std::time::Duration::from_secs(90)
        );
        let payment = DrillPlan::from_args(&args(&["payment-latency"])).unwrap();
        assert!(!payment.needs_docker, "a payment fault needs no Docker");
        let network = DrillPlan::from_args(&args(&["db-latency"])).unwrap();
        assert!(network.needs_docker && network.needs_prometheus);
    }

    #[test]
    fn bad_flags_and_files_are_usage_errors_that_say_why() {
        let no_drill = DrillPlan::from_args(&args(&[])).unwrap_err().to_string();
        assert!(no_drill.contains("--list"), "{no_drill}");
        let cap = DrillPlan::from_args(&args(&["db-outage", "--max-fault", "soon"]))
            .unwrap_err()
            .to_string();
        assert!(cap.starts_with("--max-fault \"soon\""), "{cap}");
        let missing = DrillPlan::from_args(&args(&["no-such-drill"])).unwrap_err().to_string();
        assert!(missing.contains("built-in drills"), "{missing}");
        let config = DrillPlan::from_args(&args(&["db-outage", "--config", "/nonexistent/recordctl.toml"]))
            .unwrap_err()
            .to_string();
        assert!(config.contains("/nonexistent/recordctl.toml"), "{config}");
    }
}
