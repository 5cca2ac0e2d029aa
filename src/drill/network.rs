//! Network faults on a compose service: latency (with jitter), packet loss and a bandwidth
//! limit on everything the service's container sends, applied from a short-lived helper
//! container that joins the target's network namespace with `NET_ADMIN` (the helper's image
//! needs `sh`, `ip`, `tc` and `iptables`).
//!
//! - latency: `tc qdisc replace … root netem delay D J`; where the kernel has no `sch_netem`,
//!   `recordctl network-delay-queue` in a helper that stays up for the fault (see `netqueue`);
//! - loss: an `iptables` rule on OUTPUT that drops a random share of packets (the `statistic`
//!   match; it needs no netem, so it works on kernels built without it);
//! - bandwidth: `tc qdisc replace … root tbf rate R` (token bucket, in every kernel).
//!
//! The helper's image needs `sh`, `ip`, `tc` and `iptables` (and `recordctl` for a delay on a
//! kernel without netem). Every script acts on each interface but `lo`, so a container on several networks is slowed
//! on all of them. The undo removes what any of them adds and is safe to repeat.

use std::time::Duration;

use super::file::{Action, Fault};

/// The helper image used unless `--network-helper-image` names another: a well-known
/// network-debugging image with `tc` and `iptables`.
pub const DEFAULT_HELPER_IMAGE: &str = "nicolaka/netshoot:v0.13";

/// The comment that marks the iptables rules a drill adds, so the undo finds only those.
pub const RULE_COMMENT: &str = "recordctl-drill";

/// The label on every helper container, so a restore can remove any left behind.
pub const HELPER_LABEL: &str = "org.recordctl.network-helper";

#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFault {
    Delay { delay: Duration, jitter: Duration },
    Loss { percent: f64 },
    Bandwidth { kbit: u64 },
}

impl NetworkFault {
    /// The network fault a drill's fault describes, if it is one (validated by the file).
    pub fn of(fault: &Fault) -> Option<NetworkFault> {
        match fault.action {
            Action::NetworkDelay => Some(NetworkFault::Delay {
                delay: fault.delay.map(|d| d.0).unwrap_or_default(),
                jitter: fault.jitter.map(|d| d.0).unwrap_or_default(),
            }),
            Action::NetworkLoss => Some(NetworkFault::Loss {
                percent: fault.loss_percent.unwrap_or(0.0),
            }),
            Action::NetworkBandwidth => Some(NetworkFault::Bandwidth {
                kbit: fault.bandwidth_kbit.unwrap_or(0),
            }),
            _ => None,
        }
    }

    pub fn describe(&self, service: &str) -> String {
        match self {
            NetworkFault::Delay { delay, jitter } if jitter.is_zero() => {
                format!("delay everything {service} sends by {} ms", delay.as_millis())
            }
            NetworkFault::Delay { delay, jitter } => format!(
                "delay everything {service} sends by {} ms ± {} ms",
                delay.as_millis(),
                jitter.as_millis()
            ),
            NetworkFault::Loss { percent } => format!("drop {percent}% of the packets {service} sends"),
            NetworkFault::Bandwidth { kbit } => format!("limit what {service} sends to {kbit} kbit/s"),
        }
    }

    /// The shell script the helper runs to apply the fault. It prints each interface it
    /// changed and fails when it changed none.
    pub fn apply_script(&self) -> String {
        let per_interface = match self {
            NetworkFault::Delay { delay, jitter } => {
                let mut netem = format!("delay {}ms", delay.as_millis());
                if !jitter.is_zero() {
                    netem.push_str(&format!(" {}ms", jitter.as_millis()));
                }
                format!("tc qdisc replace dev \"$dev\" root netem {netem}")
            }
            NetworkFault::Bandwidth { kbit } => {
                // A bucket of at least one full-size frame and about 20 ms of traffic; a queue
                // of at most half a second before packets are dropped.
                let burst_bytes = (kbit * 1000 / 8 / 50).max(3200);
                format!("tc qdisc replace dev \"$dev\" root tbf rate {kbit}kbit burst {burst_bytes} latency 500ms")
            }
            NetworkFault::Loss { percent } => {
                let probability = percent / 100.0;
                let rule = format!(
                    "OUTPUT -o \"$dev\" -m statistic --mode random --probability {probability:.6} \
                     -m comment --comment {RULE_COMMENT} -j DROP"
                );
                format!(
                    "iptables -w 5 -A {rule} && {{ ! command -v ip6tables >/dev/null || ip6tables -w 5 -A {rule} || true; }}"
                )
            }
        };
        format!(
            "set -e\n\
             changed=0\n\
             for dev in $(ip -o link show | sed -n 's/^[0-9]*: \\([^:@]*\\).*/\\1/p'); do\n\
             \x20 [ \"$dev\" = lo ] && continue\n\
             \x20 {per_interface}\n\
             \x20 echo \"$dev\"\n\
             \x20 changed=$((changed + 1))\n\
             done\n\
             [ \"$changed\" -gt 0 ] || {{ echo 'no network interface but lo' >&2; exit 3; }}\n"
        )
    }

    /// What a helper's failure means, in words a user can act on.
    pub fn explain_failure(&self, output: &str) -> String {
        let output = output.trim();
        if matches!(self, NetworkFault::Delay { .. }) && output.contains("recordctl") && output.contains("not found") {
            return format!(
                "the Docker host's kernel has no sch_netem, and the helper image has no `recordctl` to delay packets \
                 in user space instead ({output}); load sch_netem on the host (modprobe sch_netem), or use a helper \
                 image with recordctl, sh, ip, tc and iptables (--network-helper-image)"
            );
        }
        if lacks_netem(output) {
            let qdisc = match self {
                NetworkFault::Delay { .. } => "sch_netem",
                _ => "sch_tbf",
            };
            return format!(
                "the Docker host's kernel has no {qdisc} queueing discipline ({output}); load it on the host \
                 (modprobe {qdisc}) or use a kernel built with it"
            );
        }
        if output.contains("not found") {
            return format!(
                "the network helper image lacks a tool it needs ({output}); it must have sh, ip, tc and iptables \
                 (--network-helper-image)"
            );
        }
        if output.contains("Operation not permitted") || output.contains("Permission denied") {
            return format!("the helper was refused NET_ADMIN ({output}); is the Docker engine rootless?");
        }
        format!("the network helper failed: {output}")
    }
}

/// Whether a helper's failure says the kernel has no such queueing discipline.
pub fn lacks_netem(output: &str) -> bool {
    output.contains("qdisc kind is unknown") || output.contains("Unknown qdisc")
}

/// What the user-space delayer prints once its queue is bound and its rules are in place.
pub const DELAY_QUEUE_READY: &str = "delaying every packet sent by";

/// The helper's command for a user-space delay (`recordctl` must be on the image's PATH).
pub fn delay_queue_command(delay: Duration, jitter: Duration) -> Vec<String> {
    vec![
        "recordctl".into(),
        "network-delay-queue".into(),
        "--delay-ms".into(),
        delay.as_millis().to_string(),
        "--jitter-ms".into(),
        jitter.as_millis().to_string(),
    ]
}

/// Removes every network fault a drill can add: a netem or tbf root queueing discipline on
/// each interface but `lo`, and every iptables rule marked with [`RULE_COMMENT`]. Finding
/// nothing to remove is success.
pub fn clear_script() -> String {
    format!(
        "set -e\n\
         for dev in $(ip -o link show | sed -n 's/^[0-9]*: \\([^:@]*\\).*/\\1/p'); do\n\
         \x20 [ \"$dev\" = lo ] && continue\n\
         \x20 if tc qdisc show dev \"$dev\" | grep -Eq '^qdisc (netem|tbf) [0-9a-f]+: root'; then\n\
         \x20   tc qdisc del dev \"$dev\" root\n\
         \x20   echo \"cleared $dev\"\n\
         \x20 fi\n\
         done\n\
         for tables in iptables ip6tables; do\n\
         \x20 command -v \"$tables\" >/dev/null || continue\n\
         \x20 \"$tables\" -w 5 -S OUTPUT 2>/dev/null | grep -- '--comment {RULE_COMMENT}' | sed 's/^-A /-D /' | while read -r rule; do\n\
         \x20   \"$tables\" -w 5 $rule\n\
         \x20   echo \"removed $tables $rule\"\n\
         \x20 done\n\
         done\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_becomes_the_command_that_applies_it_on_every_interface_but_lo() {
        let delay = NetworkFault::Delay {
            delay: Duration::from_millis(300),
            jitter: Duration::from_millis(30),
        };
        let script = delay.apply_script();
        assert!(
            script.contains("tc qdisc replace dev \"$dev\" root netem delay 300ms 30ms"),
            "{script}"
        );
        assert!(script.contains("[ \"$dev\" = lo ] && continue"), "{script}");
        assert!(
            script.contains("exit 3"),
            "a helper that changed nothing fails: {script}"
        );
        let no_jitter = NetworkFault::Delay {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
        };
        assert!(no_jitter.apply_script().contains("netem delay 50ms\n"));

        let loss = NetworkFault::Loss { percent: 20.0 }.apply_script();
        assert!(
            loss.contains("--probability 0.200000 -m comment --comment recordctl-drill -j DROP"),
            "{loss}"
        );
        assert!(loss.contains("iptables -w 5 -A OUTPUT -o \"$dev\""), "{loss}");

        let rate = NetworkFault::Bandwidth { kbit: 1000 }.apply_script();
        assert!(
            rate.contains("root tbf rate 1000kbit burst 3200 latency 500ms"),
            "{rate}"
        );
        let fast = NetworkFault::Bandwidth { kbit: 100_000 }.apply_script();
        assert!(fast.contains("burst 250000 "), "{fast}");
    }

    #[test]
    fn the_undo_removes_only_what_a_drill_adds_and_finds_nothing_to_do_without_failing() {
        let script = clear_script();
        assert!(script.contains("(netem|tbf)"), "{script}");
        assert!(script.contains("grep -- '--comment recordctl-drill'"), "{script}");
        assert!(script.contains("sed 's/^-A /-D /'"), "{script}");
        assert!(!script.contains("exit 3"), "{script}");
    }

    #[test]
    fn a_kernel_without_netem_is_named_with_what_to_do() {
        let delay = NetworkFault::Delay {
            delay: Duration::from_millis(300),
            jitter: Duration::ZERO,
        };
        let said = delay.explain_failure("Error: Specified qdisc kind is unknown.\n");
        assert!(said.contains("sch_netem") && said.contains("modprobe"), "{said}");
        let said = delay.explain_failure("sh: 1: tc: not found");
        assert!(said.contains("--network-helper-image"), "{said}");
    }

    #[test]
    fn descriptions_say_what_is_done_to_whom() {
        assert_eq!(
            NetworkFault::Delay {
                delay: Duration::from_millis(300),
                jitter: Duration::from_millis(30)
            }
            .describe("db"),
            "delay everything db sends by 300 ms ± 30 ms"
        );
        assert_eq!(
            NetworkFault::Loss { percent: 20.0 }.describe("api"),
            "drop 20% of the packets api sends"
        );
        assert_eq!(
            NetworkFault::Bandwidth { kbit: 512 }.describe("api"),
            "limit what api sends to 512 kbit/s"
        );
    }
}
