//! A packet delayer for kernels without `sch_netem`: `recordctl network-delay-queue` (hidden)
//! runs in the helper container, in the target's network namespace. It binds an nfnetlink
//! queue, sends every packet the container sends (iptables `NFQUEUE --queue-bypass` on
//! OUTPUT, marked `recordctl-drill`) to it, and lets each one go `delay` (± `jitter`) after
//! it arrived, in order. On SIGTERM it removes its rules and lets every held packet go at
//! once. With `--queue-bypass` and the kernel's fail-open flag, packets pass undelayed
//! whenever the delayer is not there or its queue is full: the fault can only ever slow the
//! container, never cut it off.
//!
//! The netlink messages are built and read here (nfnetlink_queue, as `linux/netfilter/
//! nfnetlink_queue.h` defines them); what the kernel sends is parsed without trusting a
//! length.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NF_ACCEPT: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

/// The queue the drill's rules send packets to.
pub const QUEUE_NUM: u16 = 7301;

/// One netlink message: header, nfgenmsg, attributes.
fn message(msg_type: u16, flags: u16, seq: u32, family: u8, queue: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![family, 0];
    body.extend_from_slice(&queue.to_be_bytes());
    for (kind, payload) in attrs {
        let len = 4 + payload.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(payload);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg_type).to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&body);
    out
}

/// The verdict that lets packet `id` of `queue` go.
pub fn accept(queue: u16, id: u32) -> Vec<u8> {
    let mut hdr = NF_ACCEPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&id.to_be_bytes());
    message(NFQNL_MSG_VERDICT, 0, 0, 0, queue, &[(NFQA_VERDICT_HDR, hdr)])
}

/// What the kernel said: packet ids queued, and errors answering our requests.
#[derive(Debug, Default, PartialEq)]
pub struct Received {
    pub packets: Vec<u32>,
    pub errors: Vec<i32>,
}

/// Reads a buffer of netlink messages. Anything short or inconsistent ends the read.
pub fn parse(buf: &[u8]) -> Received {
    let mut out = Received::default();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + 16) {
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let Some(msg) = (len >= 16).then(|| buf.get(at..at + len)).flatten() else {
            break;
        };
        if kind == NLMSG_ERROR {
            if let Some(code) = msg.get(16..20) {
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                if code != 0 {
                    out.errors.push(code);
                }
            }
        } else if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            // nfgenmsg (4 bytes), then attributes.
            let mut a = 20;
            while let Some(attr) = msg.get(a..a + 4) {
                let alen = u16::from_ne_bytes([attr[0], attr[1]]) as usize;
                let atype = u16::from_ne_bytes([attr[2], attr[3]]) & 0x3fff;
                if alen < 4 {
                    break;
                }
                if atype == NFQA_PACKET_HDR
                    && let Some(id) = msg.get(a + 4..a + 8)
                {
                    out.packets.push(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
                }
                a += alen.next_multiple_of(4);
            }
        }
        at += len.next_multiple_of(4);
    }
    out
}

/// When each held packet may go: `delay` ± `jitter` after it arrived, never before the packet
/// ahead of it (no reordering).
#[derive(Debug)]
pub struct Schedule {
    delay: Duration,
    jitter: Duration,
    held: VecDeque<(Instant, u32)>,
}

impl Schedule {
    pub fn new(delay: Duration, jitter: Duration) -> Schedule {
        Schedule {
            delay,
            jitter,
            held: VecDeque::new(),
        }
    }

    pub fn hold(&mut self, id: u32, arrived: Instant) {
        let spread = if self.jitter.is_zero() {
            0.0
        } else {
            rand::random::<f64>() * 2.0 - 1.0
        };
        let wait = self.delay.as_secs_f64() + spread * self.jitter.as_secs_f64();
        let due = arrived + Duration::from_secs_f64(wait.max(0.0));
        let due = self.held.back().map_or(due, |(last, _)| due.max(*last));
        self.held.push_back((due, id));
    }

    /// The packets due by `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, id)) = self.held.pop_front() {
                out.push(id);
            }
        }
        out
    }

    /// Every packet still held (to let go at once on the way out).
    pub fn drain(&mut self) -> Vec<u32> {
        self.held.drain(..).map(|(_, id)| id).collect()
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|(due, _)| *due)
    }
}

/// The iptables rules (IPv4 and IPv6) that send everything but loopback to the queue.
fn rules(add: bool) -> Vec<(&'static str, Vec<String>)> {
    let op = if add { "-A" } else { "-D" };
    ["iptables", "ip6tables"]
        .into_iter()
        .map(|tool| {
            let args = format!(
                "-w 5 {op} OUTPUT ! -o lo -j NFQUEUE --queue-num {QUEUE_NUM} --queue-bypass -m comment --comment {}",
                super::network::RULE_COMMENT
            );
            (tool, args.split(' ').map(str::to_string).collect())
        })
        .collect()
}

#[cfg(target_os = "linux")]
mod socket {
    use std::io;

    pub struct Netlink(i32);

    impl Netlink {
        pub fn open() -> io::Result<Netlink> {
            // SAFETY: plain socket(2)/bind(2)/setsockopt(2) calls on a descriptor we own;
            // every pointer passed is to a live local of the size given.
            unsafe {
                let fd = libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    super::NETLINK_NETFILTER,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let socket = Netlink(fd);
                let mut addr: libc::sockaddr_nl = std::mem::zeroed();
                addr.nl_family = libc::AF_NETLINK as u16;
                let r = libc::bind(
                    fd,
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                );
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                let size: i32 = 8 << 20;
                libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const i32).cast(), 4);
                let one: i32 = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_NETLINK,
                    libc::NETLINK_NO_ENOBUFS,
                    (&one as *const i32).cast(),
                    4,
                );
                Ok(socket)
            }
        }

        pub fn send(&self, msg: &[u8]) -> io::Result<()> {
            // SAFETY: `msg` is a live buffer of `msg.len()` bytes.
            let n = unsafe { libc::send(self.0, msg.as_ptr().cast(), msg.len(), 0) };
            if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
        }

        /// Waits up to `timeout_ms` (-1: forever) for messages; 0 bytes when none came.
        pub fn recv(&self, buf: &mut [u8], timeout_ms: i32) -> io::Result<usize> {
            let mut pfd = libc::pollfd {
                fd: self.0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, then a read into `buf` of at most its length.
            unsafe {
                let ready = libc::poll(&mut pfd, 1, timeout_ms);
                if ready < 0 {
                    let e = io::Error::last_os_error();
                    return if e.kind() == io::ErrorKind::Interrupted {
                        Ok(0)
                    } else {
                        Err(e)
                    };
                }
                if ready == 0 {
                    return Ok(0);
                }
                let n = libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT);
                if n < 0 {
                    let e = io::Error::last_os_error();
                    return if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                        Ok(0)
                    } else {
                        Err(e)
                    };
                }
                Ok(n as usize)
            }
        }
    }

    impl Drop for Netlink {
        fn drop(&mut self) {
            // SAFETY: the descriptor is ours and closed once.
            unsafe {
                libc::close(self.0);
            }
        }
    }
}

/// `recordctl network-delay-queue`: binds the queue, adds the rules, delays until SIGTERM or
/// SIGINT, then removes the rules and lets every held packet go. Returns the exit code.
#[cfg(target_os = "linux")]
pub fn run(delay: Duration, jitter: Duration) -> u8 {
    use std::sync::atomic::{AtomicBool, Ordering};

    static STOP: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: i32) {
        STOP.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let stop = &STOP;
    let socket = match socket::Netlink::open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("recordctl network-delay-queue: netlink: {e} (does the helper have NET_ADMIN?)");
            return 1;
        }
    };
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    let fail_open = NFQA_CFG_F_FAIL_OPEN.to_be_bytes().to_vec();
    let mut buf = vec![0u8; 1 << 16];
    for (seq, attrs) in [
        (
            1,
            vec![
                (NFQA_CFG_CMD, vec![NFQNL_CFG_CMD_BIND, 0, 0, 0]),
                (NFQA_CFG_PARAMS, params),
                (NFQA_CFG_QUEUE_MAXLEN, 65_536u32.to_be_bytes().to_vec()),
            ],
        ),
        // A full queue lets packets through undelayed instead of dropping them.
        (2, vec![(NFQA_CFG_FLAGS, fail_open.clone()), (NFQA_CFG_MASK, fail_open)]),
    ] {
        if let Err(e) = socket.send(&message(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, 0, QUEUE_NUM, &attrs)) {
            eprintln!("recordctl network-delay-queue: configuring queue {QUEUE_NUM}: {e}");
            return 1;
        }
        let n = socket.recv(&mut buf, 2000).unwrap_or(0);
        if let Some(code) = parse(&buf[..n]).errors.first() {
            eprintln!(
                "recordctl network-delay-queue: the kernel refused queue {QUEUE_NUM}: {}",
                std::io::Error::from_raw_os_error(-code)
            );
            return 1;
        }
    }
    if let Err(e) = apply_rules(true) {
        eprintln!("recordctl network-delay-queue: {e}");
        let _ = apply_rules(false);
        return 1;
    }
    println!(
        "delaying every packet sent by {} ms ± {} ms (queue {QUEUE_NUM})",
        delay.as_millis(),
        jitter.as_millis()
    );
    let mut schedule = Schedule::new(delay, jitter);
    let mut code = 0;
    while !stop.load(Ordering::SeqCst) {
        let timeout = schedule
            .next_due()
            .map(|due| due.saturating_duration_since(Instant::now()).as_millis().min(200) as i32)
            .unwrap_or(200);
        match socket.recv(&mut buf, timeout) {
            Ok(n) => {
                let now = Instant::now();
                for id in parse(&buf[..n]).packets {
                    schedule.hold(id, now);
                }
            }
            Err(e) => {
                eprintln!("recordctl network-delay-queue: reading the queue: {e}");
                code = 1;
                break;
            }
        }
        for id in schedule.due(Instant::now()) {
            let _ = socket.send(&accept(QUEUE_NUM, id));
        }
    }
    // Rules first, so nothing new is queued; then every held packet goes.
    let removed = apply_rules(false);
    for id in schedule.drain() {
        let _ = socket.send(&accept(QUEUE_NUM, id));
    }
    if let Err(e) = removed {
        eprintln!("recordctl network-delay-queue: {e}");
        code = 1;
    }
    println!("delay removed");
    code
}

#[cfg(not(target_os = "linux"))]
pub fn run(_delay: Duration, _jitter: Duration) -> u8 {
    eprintln!("recordctl network-delay-queue runs on Linux only (in the drill's helper container)");
    1
}

/// A queue rule that iptables refused, or could not be run to add.
#[derive(Debug, thiserror::Error)]
#[error("{tool}: {reason}")]
struct RuleError {
    tool: String,
    reason: String,
}

/// Adds (or removes, each as often as it is there) the queue rules; ip6tables is optional.
fn apply_rules(add: bool) -> Result<(), RuleError> {
    for (tool, args) in rules(add) {
        let run = |args: &[String]| std::process::Command::new(tool).args(args).output();
        if add {
            match run(&args) {
                Ok(out) if out.status.success() => {}
                Ok(out) if tool == "ip6tables" => {
                    eprintln!(
                        "recordctl network-delay-queue: IPv6 not delayed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(out) => {
                    return Err(RuleError {
                        tool: tool.to_string(),
                        reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                Err(e) if tool == "ip6tables" => eprintln!("recordctl network-delay-queue: IPv6 not delayed: {e}"),
                Err(e) => {
                    return Err(RuleError {
                        tool: tool.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        } else {
            // -D removes one copy; repeat until none is left (bounded).
            for _ in 0..16 {
                match run(&args) {
                    Ok(out) if out.status.success() => continue,
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_the_message_the_kernel_expects() {
        let msg = accept(7301, 42);
        assert_eq!(msg.len(), 16 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(msg[4..6].try_into().unwrap()), (3 << 8) | 1);
        assert_eq!(&msg[18..20], &7301u16.to_be_bytes(), "queue number, big-endian");
        assert_eq!(
            u16::from_ne_bytes(msg[20..22].try_into().unwrap()),
            12,
            "attribute length"
        );
        assert_eq!(u16::from_ne_bytes(msg[22..24].try_into().unwrap()), NFQA_VERDICT_HDR);
        assert_eq!(&msg[24..28], &1u32.to_be_bytes(), "NF_ACCEPT");
        assert_eq!(&msg[28..32], &42u32.to_be_bytes(), "the packet id");
    }

    /// A packet message as the kernel sends it, with a packet header attribute.
    fn packet(id: u32) -> Vec<u8> {
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0x08, 0x00, 3]);
        let mut msg = message(NFQNL_MSG_PACKET, 0, 0, 2, QUEUE_NUM, &[(NFQA_PACKET_HDR, hdr)]);
        msg[6] = 0;
        msg
    }

    #[test]
    fn packets_and_errors_are_read_and_garbage_ends_the_read_without_a_panic() {
        let mut buf = packet(7);
        buf.extend(packet(8));
        let mut error = vec![0u8; 20];
        error[0..4].copy_from_slice(&20u32.to_ne_bytes());
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        buf.extend(&error);
        assert_eq!(
            parse(&buf),
            Received {
                packets: vec![7, 8],
                errors: vec![-1]
            }
        );
        for cut in 0..buf.len() {
            let _ = parse(&buf[..cut]);
        }
        let mut lying = packet(9);
        lying[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(parse(&lying), Received::default());
        let mut zero_attr = packet(9);
        zero_attr[20..22].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(parse(&zero_attr), Received::default());
    }

    #[test]
    fn packets_go_after_the_delay_in_the_order_they_came() {
        let start = Instant::now();
        let mut s = Schedule::new(Duration::from_millis(300), Duration::from_millis(100));
        for id in 0..50 {
            s.hold(id, start + Duration::from_millis(u64::from(id)));
        }
        assert!(
            s.due(start + Duration::from_millis(199)).is_empty(),
            "nothing before delay − jitter"
        );
        let mut out = s.due(start + Duration::from_millis(460));
        assert_eq!(out.len(), 50, "all by the last arrival + delay + jitter");
        out.dedup();
        assert_eq!(out, (0..50).collect::<Vec<u32>>(), "in order");
        let mut fixed = Schedule::new(Duration::from_millis(300), Duration::ZERO);
        fixed.hold(1, start);
        assert!(fixed.due(start + Duration::from_millis(299)).is_empty());
        assert_eq!(fixed.due(start + Duration::from_millis(300)), [1]);
        fixed.hold(2, start);
        assert_eq!(fixed.drain(), [2]);
    }
}
