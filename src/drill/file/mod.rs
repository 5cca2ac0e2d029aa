//! Drill files (`drills/*.toml`): targets by compose service, the steady-state hypothesis,
//! background traffic, faults, expected alerts, the recovery deadline and safety limits.
//! Parsed with `file:line:col` errors and validated before anything is touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tomlfile::{FileError, from_toml};
use crate::units::HumanDuration;

mod validate;

use validate::validate;

pub type DrillError = FileError;

pub const BUILTIN: &[(&str, &str)] = &[
    ("db-outage", include_str!("../../../drills/db-outage.toml")),
    ("db-freeze", include_str!("../../../drills/db-freeze.toml")),
    ("db-freeze-long", include_str!("../../../drills/db-freeze-long.toml")),
    ("worker-crash", include_str!("../../../drills/worker-crash.toml")),
    ("api-restart", include_str!("../../../drills/api-restart.toml")),
    (
        "network-partition",
        include_str!("../../../drills/network-partition.toml"),
    ),
    ("payment-latency", include_str!("../../../drills/payment-latency.toml")),
    ("slow-payment", include_str!("../../../drills/slow-payment.toml")),
    ("db-latency", include_str!("../../../drills/db-latency.toml")),
    ("api-packet-loss", include_str!("../../../drills/api-packet-loss.toml")),
];

/// No fault is held longer than this, whatever a file says.
pub const HARD_MAX_FAULT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The compose services this drill may change; anything else is refused.
    pub services: Vec<String>,
    #[serde(default)]
    pub steady_state: SteadyState,
    #[serde(default)]
    pub traffic: Option<Traffic>,
    #[serde(rename = "fault")]
    pub faults: Vec<Fault>,
    #[serde(default, rename = "expect_alert")]
    pub expected_alerts: Vec<ExpectedAlert>,
    #[serde(default)]
    pub recovery: Recovery,
    #[serde(default)]
    pub safety: Safety,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteadyState {
    #[serde(default, rename = "probe")]
    pub probes: Vec<Probe>,
    #[serde(default, rename = "query")]
    pub queries: Vec<Query>,
}

/// An HTTP GET of the target that must answer `status` within `max_latency`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    pub path: String,
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default = "default_probe_latency")]
    pub max_latency: HumanDuration,
}

/// A PromQL expression whose first sample must lie within [min, max]. No sample fails,
/// unless `absent_ok`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub name: String,
    pub promql: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(default)]
    pub absent_ok: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// A built-in scenario (browse, purchase, smoke) or a scenario file.
    #[serde(default = "default_scenario")]
    pub scenario: String,
    /// Transactions started per second (open model).
    pub rate: f64,
    #[serde(default = "default_traffic_timeout")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Stop the container (SIGTERM, then SIGKILL after the grace period); undo: start it.
    Stop,
    /// Freeze every process of the container (cgroup freezer); undo: unpause.
    Pause,
    /// Send a signal (SIGKILL by default); undo: start it again if it is not running.
    Kill,
    /// Restart the container; nothing to undo, but the drill waits for it to be running.
    Restart,
    /// Disconnect the container from a network; undo: connect it again with its aliases.
    Disconnect,
    /// Set the app's payment-gateway fault through `/admin/faults`; undo: DELETE it.
    PaymentFault,
    /// Delay everything the container sends by `delay` (± `jitter`), with `tc netem` from a
    /// helper container in its network namespace; undo: remove the queueing discipline.
    NetworkDelay,
    /// Drop `loss_percent` of the packets the container sends (an iptables rule, from the
    /// helper); undo: remove the rule.
    NetworkLoss,
    /// Limit what the container sends to `bandwidth_kbit` (`tc tbf`, from the helper).
    NetworkBandwidth,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Pause => "pause",
            Action::Kill => "kill",
            Action::Restart => "restart",
            Action::Disconnect => "disconnect",
            Action::PaymentFault => "payment-fault",
            Action::NetworkDelay => "network-delay",
            Action::NetworkLoss => "network-loss",
            Action::NetworkBandwidth => "network-bandwidth",
        }
    }

    pub fn uses_docker(self) -> bool {
        self != Action::PaymentFault
    }

    /// Applied from a helper container in the target's network namespace.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Action::NetworkDelay | Action::NetworkLoss | Action::NetworkBandwidth
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub action: Action,
    /// The compose service acted on (for payment-fault: the service whose API is called,
    /// usually `api`).
    pub service: String,
    /// How long the fault is held before it is undone.
    pub duration: HumanDuration,
    /// Undo earlier, as soon as this alert reaches this state.
    pub until: Option<Until>,
    /// kill: the signal (default SIGKILL).
    pub signal: Option<String>,
    /// disconnect: the network (default every network of the container).
    pub network: Option<String>,
    /// payment-fault: added latency and failure share.
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    /// kill: wait this long before starting the container again (default: the duration).
    #[serde(default)]
    pub restart_after: Option<HumanDuration>,
    /// network-delay: the added delay (1ms..=60s) and its jitter (at most the delay).
    pub delay: Option<HumanDuration>,
    pub jitter: Option<HumanDuration>,
    /// network-loss: the share of packets dropped, in percent (0, 100].
    pub loss_percent: Option<f64>,
    /// network-bandwidth: the limit, in kbit/s (8..=10,000,000).
    pub bandwidth_kbit: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Until {
    pub alert: String,
    #[serde(default = "firing")]
    pub state: AlertState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    pub name: String,
    #[serde(default = "firing")]
    pub state: AlertState,
    /// Counted from the moment the fault is injected.
    pub within: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// After the undo, the steady state must hold again within this.
    #[serde(default = "default_recovery")]
    pub deadline: HumanDuration,
    /// And every acknowledged order must reach a final status within this.
    #[serde(default = "default_recovery")]
    pub orders_deadline: HumanDuration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            deadline: default_recovery(),
            orders_deadline: default_recovery(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// Cap on every fault's hold (and on the time the drill waits for `until`).
    #[serde(default = "default_max_fault")]
    pub max_fault_duration: HumanDuration,
    /// Stop grace period given to `stop` and `restart`, in seconds.
    #[serde(default = "default_grace")]
    pub stop_grace_seconds: i32,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_fault_duration: default_max_fault(),
            stop_grace_seconds: default_grace(),
        }
    }
}

fn ok_status() -> u16 {
    200
}
fn default_probe_latency() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn default_scenario() -> String {
    "purchase".into()
}
fn default_traffic_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn firing() -> AlertState {
    AlertState::Firing
}
fn default_recovery() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}
fn default_max_fault() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
/// The longest stop grace period a drill may ask for.
pub const MAX_STOP_GRACE_SECONDS: i32 = 60;

/// Signals whose default action ends a process: after one of them, starting the container
/// again puts it back. SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT, SIGCHLD, SIGURG and
/// SIGWINCH stop, continue or do nothing, which that undo would not reverse.
pub const ENDING_SIGNALS: &[&str] = &[
    "SIGKILL",
    "SIGTERM",
    "SIGINT",
    "SIGQUIT",
    "SIGHUP",
    "SIGABRT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGALRM",
    "SIGPIPE",
    "SIGSEGV",
    "SIGBUS",
    "SIGILL",
    "SIGFPE",
    "SIGSYS",
    "SIGTRAP",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGIO",
    "SIGPOLL",
    "SIGPWR",
    "SIGSTKFLT",
];

fn default_grace() -> i32 {
    5
}

/// A built-in drill name, a name in `drills/`, or a path.
pub fn load(spec: &str) -> Result<(Drill, String), DrillError> {
    if let Some((name, text)) = BUILTIN.iter().find(|(name, _)| *name == spec) {
        let path = format!("drills/{name}.toml");
        // A checkout's own copy wins, so edits take effect; else the built-in one.
        if let Ok(text) = std::fs::read_to_string(&path) {
            return parse(&text, &path).map(|d| (d, path));
        }
        let file = format!("{path} (built in)");
        return parse(text, &file).map(|d| (d, file));
    }
    let path = PathBuf::from(spec);
    let path = if path.exists() || path.extension().is_some() {
        path
    } else {
        Path::new("drills").join(format!("{spec}.toml"))
    };
    let text = std::fs::read_to_string(&path).map_err(|e| DrillError {
        file: path.display().to_string(),
        line: None,
        column: None,
        message: format!(
            "cannot read the drill: {e} (built-in drills: {})",
            BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    })?;
    let file = path.display().to_string();
    parse(&text, &file).map(|d| (d, file))
}

pub fn parse(text: &str, file: &str) -> Result<Drill, DrillError> {
    let drill: Drill = from_toml(text, file)?;
    validate(&drill).map_err(|invalid| invalid.located(text, file))?;
    Ok(drill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_drill_parses() {
        for (name, text) in BUILTIN {
            let drill = parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&drill.name, name);
        }
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let base =
            "name = \"x\"\nservices = [\"db\"]\n[[fault]]\naction = \"stop\"\nservice = \"db\"\nduration = \"10s\"\n";
        parse(base, "x.toml").unwrap();
        let err = parse(&base.replace("action = \"stop\"", "action = \"explode\""), "x.toml").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.to_string().starts_with("x.toml:4:"), "{err}");
        let err = parse(&base.replace("service = \"db\"", "service = \"api\""), "x.toml").unwrap_err();
        assert!(err.message.contains("not in this drill's `services`"), "{err}");
        assert_eq!(err.line, Some(5), "{err}");
        let err = parse(&base.replace("\"10s\"", "\"2h\""), "x.toml").unwrap_err();
        assert!(err.message.contains("safety cap"), "{err}");
        let err = parse(&base.replace("duration", "durtion"), "x.toml").unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
        let err = parse(&format!("{base}[safety]\nmax_fault_duration = \"5s\"\n"), "x.toml").unwrap_err();
        assert!(err.message.contains("exceeds the safety cap 5s"), "{err}");
    }

    #[test]
    fn network_faults_need_their_own_fields_within_bounds_and_no_other() {
        let fault = |body: &str| {
            format!("name = \"x\"\nservices = [\"db\"]\n[[fault]]\nservice = \"db\"\nduration = \"10s\"\n{body}\n")
        };
        let ok = parse(
            &fault("action = \"network-delay\"\ndelay = \"300ms\"\njitter = \"30ms\""),
            "x.toml",
        )
        .unwrap();
        assert_eq!(ok.faults[0].delay.unwrap().0, Duration::from_millis(300));
        assert!(ok.faults[0].action.is_network() && ok.faults[0].action.uses_docker());
        parse(&fault("action = \"network-loss\"\nloss_percent = 20"), "x.toml").unwrap();
        parse(
            &fault("action = \"network-bandwidth\"\nbandwidth_kbit = 1000"),
            "x.toml",
        )
        .unwrap();
        for (body, said, line) in [
            ("action = \"network-delay\"", "needs delay", 6),
            ("action = \"network-delay\"\ndelay = \"2m\"", "within 1ms..=60s", 7),
            (
                "action = \"network-delay\"\ndelay = \"10ms\"\njitter = \"20ms\"",
                "must not exceed",
                8,
            ),
            ("action = \"network-loss\"\nloss_percent = 0", "within (0, 100]", 7),
            ("action = \"network-loss\"\nloss_percent = 101", "within (0, 100]", 7),
            ("action = \"network-loss\"", "needs loss_percent", 6),
            ("action = \"network-bandwidth\"\nbandwidth_kbit = 1", "within 8..=", 7),
            (
                "action = \"stop\"\ndelay = \"1s\"",
                "belongs to action = \"network-delay\"",
                7,
            ),
            (
                "action = \"network-loss\"\nloss_percent = 5\nbandwidth_kbit = 100",
                "belongs to",
                8,
            ),
        ] {
            let err = parse(&fault(body), "x.toml").unwrap_err();
            assert!(err.message.contains(said), "{body}: {err}");
            assert_eq!(err.line, Some(line), "{body}: {err}");
        }
    }

    /// Regression: `kill` with SIGSTOP left the container frozen while the undo marked it done.
    #[test]
    fn signals_that_do_not_end_a_process_are_refused_with_their_line() {
        let kill = |signal: &str| {
            format!(
                "name = \"x\"\nservices = [\"db\"]\n[[fault]]\naction = \"kill\"\nservice = \"db\"\n\
                 signal = \"{signal}\"\nduration = \"10s\"\n"
            )
        };
        for frozen in [
            "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGCONT", "SIGCHLD", "SIGWINCH", "SIGURG",
        ] {
            let err = parse(&kill(frozen), "k.toml").unwrap_err();
            assert_eq!(err.line, Some(6), "{frozen}: {err}");
            assert!(err.message.contains("does not end a process"), "{err}");
            assert!(err.message.contains("pause"), "{err}");
        }
        assert!(
            parse(&kill("9"), "k.toml")
                .unwrap_err()
                .message
                .contains("a name like SIGKILL")
        );
        for ending in ["SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP"] {
            parse(&kill(ending), "k.toml").unwrap_or_else(|e| panic!("{ending}: {e}"));
        }
    }

    #[test]
    fn a_stop_grace_period_outside_0_to_60_seconds_is_refused() {
        let base =
            "name = \"x\"\nservices = [\"db\"]\n[[fault]]\naction = \"stop\"\nservice = \"db\"\nduration = \"10s\"\n";
        for bad in ["-1", "61", "100000"] {
            let err = parse(&format!("{base}[safety]\nstop_grace_seconds = {bad}\n"), "g.toml").unwrap_err();
            assert!(err.message.contains("within 0..=60"), "{bad}: {err}");
            assert_eq!(err.line, Some(8), "{err}");
        }
        parse(&format!("{base}[safety]\nstop_grace_seconds = 60\n"), "g.toml").unwrap();
    }
}
