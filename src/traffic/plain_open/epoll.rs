//! The Linux engine: each load thread is its own arrival clock and event loop. It sleeps in
//! epoll until its next arrival is due or one of its connections has something to say
//! (`epoll_pwait2` takes a timeout in nanoseconds, where tokio's timers round up to whole
//! milliseconds), so an arrival is written on the very wake that finds it due — no clock
//! thread, no hand-off, no second wake-up — and an answer and an arrival that come together
//! are handled in one wake. Thread `t` of `T` takes every `T`-th arrival of the schedule.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Ctx, Exchange, PlainSchedule};
use crate::traffic::open::DueOffsets;
use crate::traffic::plain::write_request;
use crate::traffic::raw_http::{Failure, ResponseReader};
use crate::traffic::stats::{ErrorKind, Stats};

/// The longest a loop sleeps: a cancel is noticed within this.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// One epoll instance per load thread, made before any thread starts so that a machine that
/// cannot make them runs the portable engine instead.
pub(super) struct EventLoops {
    ctx: Arc<Ctx>,
    epolls: Vec<Epoll>,
}

impl EventLoops {
    pub(super) fn new(ctx: &Arc<Ctx>, threads: usize) -> io::Result<EventLoops> {
        let epolls = (0..threads).map(|_| Epoll::new()).collect::<io::Result<_>>()?;
        Ok(EventLoops {
            ctx: ctx.clone(),
            epolls,
        })
    }

    pub(super) async fn run(self, plan: &PlainSchedule) -> Stats {
        let threads = self.epolls.len();
        let mut results = Vec::new();
        for (thread, epoll) in self.epolls.into_iter().enumerate() {
            let workers: Vec<usize> = (0..plan.connections).filter(|c| c % threads == thread).collect();
            let due = DueOffsets::new(plan.schedule.clone(), plan.shard)
                .skip(thread)
                .step_by(threads);
            let (tx, rx) = tokio::sync::oneshot::channel();
            results.push(rx);
            let ctx = self.ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("recordctl-plain-{thread}"))
                .spawn(move || {
                    let _ = tx.send(EventLoop::new(&ctx, epoll, workers).run(due));
                });
            if let Err(err) = spawned {
                eprintln!("recordctl: cannot start a load thread: {err}");
            }
        }
        let mut stats = Stats::default();
        for rx in results {
            if let Ok(s) = rx.await {
                stats.merge(s);
            }
        }
        stats
    }
}

/// One connection of a load thread and the exchange it carries.
struct Slot {
    worker: usize,
    seq: u64,
    stream: Option<TcpStream>,
    /// Counts the connections this slot has opened: an event of an earlier one (closed while
    /// its event waited in the same batch) is told apart by it.
    generation: u32,
    state: State,
    /// Whether the connection is registered for writability too (connecting, or a request
    /// that did not fit the socket buffer).
    wants_write: bool,
    read: BytesMut,
    write: Vec<u8>,
    written: usize,
    reader: ResponseReader,
    correlation_id: String,
    due: Instant,
    sent: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Free: no exchange (a kept-alive connection, or none yet).
    Idle,
    Connecting,
    Writing,
    Reading,
}

struct EventLoop<'a> {
    ctx: &'a Ctx,
    epoll: Epoll,
    /// Where to connect, found at the start; or why no address could be had.
    addr: Result<SocketAddr, Failure>,
    slots: Vec<Slot>,
    /// Idle slots, the most recently used last.
    free: Vec<usize>,
    /// Arrivals due and not yet taken by a connection.
    waiting: VecDeque<Instant>,
    in_flight: usize,
    stats: Stats,
    scratch: Box<[u8]>,
}

impl<'a> EventLoop<'a> {
    fn new(ctx: &'a Ctx, epoll: Epoll, workers: Vec<usize>) -> EventLoop<'a> {
        let slots: Vec<Slot> = workers
            .into_iter()
            .map(|worker| Slot {
                worker,
                seq: 0,
                stream: None,
                generation: 0,
                state: State::Idle,
                wants_write: false,
                read: BytesMut::with_capacity(16 * 1024),
                write: Vec::with_capacity(512),
                written: 0,
                reader: ResponseReader::default(),
                correlation_id: String::with_capacity(48),
                due: ctx.start,
                sent: ctx.start,
            })
            .collect();
        let free = (0..slots.len()).rev().collect();
        EventLoop {
            ctx,
            epoll,
            addr: resolve(&ctx.target.authority, ctx.timeout),
            slots,
            free,
            waiting: VecDeque::new(),
            in_flight: 0,
            stats: Stats::default(),
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    fn run(mut self, due: impl Iterator<Item = Duration>) -> Stats {
        let start = self.ctx.start;
        let mut due = due.map_while(|offset| start.checked_add(offset));
        let mut next_due = due.next();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut cancelled = false;
        loop {
            let now = Instant::now();
            if !cancelled && self.ctx.cancel.is_cancelled() {
                // Arrivals stop; those waiting are never sent (the report counts them);
                // exchanges in flight end within their timeout.
                cancelled = true;
                next_due = None;
                self.ctx.abandoned(self.waiting.len());
                self.waiting.clear();
            }
            while let Some(at) = next_due.filter(|at| *at <= now) {
                // A free connection takes the arrival at once: it never waited, nor counts
                // against the queue; otherwise it waits its turn (or is dropped).
                if self.waiting.is_empty()
                    && let Some(slot) = self.free.pop()
                {
                    self.ctx.came_due(at, now);
                    self.start(slot, at, false);
                } else if self.ctx.arrived(at, now) {
                    self.waiting.push_back(at);
                }
                next_due = due.next();
            }
            while !self.waiting.is_empty()
                && let Some(slot) = self.free.pop()
            {
                let at = self.waiting.pop_front().unwrap_or(now);
                self.start(slot, at, true);
            }
            let earliest_deadline = self.expire_timed_out();
            if next_due.is_none() && self.waiting.is_empty() && self.in_flight == 0 {
                break;
            }
            let now = Instant::now();
            let mut wake = now + MAX_SLEEP;
            for at in [next_due, earliest_deadline].into_iter().flatten() {
                wake = wake.min(at);
            }
            let ready = match self.epoll.wait(&mut events, wake.saturating_duration_since(now)) {
                Ok(ready) => ready,
                Err(err) => {
                    eprintln!("recordctl: epoll_wait failed ({err}); the run stops");
                    self.ctx.abandoned(self.waiting.len());
                    break;
                }
            };
            for event in &events[..ready] {
                let (flags, token) = (event.events, event.u64);
                let (slot, generation) = ((token & 0xffff_ffff) as usize, (token >> 32) as u32);
                if self.slots.get(slot).is_some_and(|s| s.generation == generation) {
                    self.on_ready(slot, flags);
                }
            }
        }
        // Whatever is still open (a loop stopped by an epoll failure) ends as a timeout.
        for slot in 0..self.slots.len() {
            if self.slots[slot].state != State::Idle {
                self.fail(slot, timed_out(self.ctx.timeout));
            }
        }
        self.stats
    }

    /// The slot takes the arrival due at `due` (`waited`: it had waited in the queue):
    /// connects if it has no connection, then writes.
    fn start(&mut self, slot: usize, due: Instant, waited: bool) {
        let sent = Instant::now();
        self.ctx.started(due, sent, waited);
        self.in_flight += 1;
        let s = &mut self.slots[slot];
        s.seq += 1;
        self.ctx.correlation_id(&mut s.correlation_id, s.worker, s.seq);
        (s.due, s.sent) = (due, sent);
        s.reader = ResponseReader::default();
        s.written = 0;
        s.state = State::Writing;
        write_request(&mut s.write, &self.ctx.target, &s.correlation_id);
        if s.stream.is_some() {
            self.write_some(slot);
            return;
        }
        let addr = match &self.addr {
            Ok(addr) => *addr,
            Err(failure) => {
                let failure = failure.clone();
                return self.fail(slot, failure);
            }
        };
        let connected = match connect(addr) {
            Ok(connected) => connected,
            Err(err) => return self.fail(slot, connect_failure(&self.ctx.target.authority, &err)),
        };
        let (stream, in_progress) = connected;
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        if let Err(err) = self
            .epoll
            .add(stream.as_raw_fd(), token(slot, s.generation), in_progress)
        {
            return self.fail(slot, (ErrorKind::Other, format!("epoll: {err}")));
        }
        s.stream = Some(stream);
        s.wants_write = in_progress;
        if in_progress {
            s.state = State::Connecting;
        } else {
            s.state = State::Writing;
            self.write_some(slot);
        }
    }

    fn on_ready(&mut self, slot: usize, flags: u32) {
        let Some(s) = self.slots.get(slot) else { return };
        match s.state {
            State::Connecting => {
                let error = match s.stream.as_ref().map(TcpStream::take_error) {
                    Some(Ok(None)) if flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 => None,
                    Some(Ok(None)) => Some(io::Error::from(io::ErrorKind::ConnectionReset)),
                    Some(Ok(Some(err)) | Err(err)) => Some(err),
                    None => Some(io::Error::from(io::ErrorKind::NotConnected)),
                };
                if let Some(err) = error {
                    return self.fail(slot, connect_failure(&self.ctx.target.authority, &err));
                }
                self.slots[slot].state = State::Writing;
                self.write_some(slot);
            }
            State::Writing => self.write_some(slot),
            State::Reading => self.read_some(slot),
            State::Idle => {
                // A kept-alive connection spoke unasked: the server closed it (or sent
                // something no request asked for). It is dropped; the next arrival reconnects.
                let s = &mut self.slots[slot];
                s.stream = None;
                s.read.clear();
            }
        }
    }

    fn write_some(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let Some(stream) = s.stream.as_mut() else {
            return self.fail(slot, (ErrorKind::Reset, "write: no connection".into()));
        };
        while s.written < s.write.len() {
            match stream.write(&s.write[s.written..]) {
                Ok(n) => s.written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if !s.wants_write {
                        s.wants_write = true;
                        let fd = stream.as_raw_fd();
                        if let Err(err) = self.epoll.modify(fd, token(slot, s.generation), true) {
                            return self.fail(slot, (ErrorKind::Other, format!("epoll: {err}")));
                        }
                    }
                    return;
                }
                Err(err) => return self.fail(slot, (ErrorKind::for_io(&err), format!("write: {err}"))),
            }
        }
        s.state = State::Reading;
        if s.wants_write {
            s.wants_write = false;
            let fd = stream.as_raw_fd();
            if let Err(err) = self.epoll.modify(fd, token(slot, s.generation), false) {
                self.fail(slot, (ErrorKind::Other, format!("epoll: {err}")));
            }
        }
    }

    fn read_some(&mut self, slot: usize) {
        loop {
            let s = &mut self.slots[slot];
            let Some(stream) = s.stream.as_mut() else {
                return self.fail(slot, (ErrorKind::Reset, "read: no connection".into()));
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    let outcome = s.reader.at_end();
                    return match outcome {
                        Ok((status, _)) => self.finish(slot, Ok(status), false),
                        Err(failure) => self.fail(slot, failure),
                    };
                }
                Ok(n) => {
                    s.read.extend_from_slice(&self.scratch[..n]);
                    match s.reader.advance(&mut s.read) {
                        Ok(Some((status, reusable))) => return self.finish(slot, Ok(status), reusable),
                        Ok(None) => {}
                        Err(failure) => return self.fail(slot, failure),
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => return self.fail(slot, (ErrorKind::for_io(&err), format!("read: {err}"))),
            }
        }
    }

    /// Ends every exchange past its timeout; the earliest deadline of those still running.
    fn expire_timed_out(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let timeout = self.ctx.timeout;
        let mut earliest: Option<Instant> = None;
        for slot in 0..self.slots.len() {
            if self.slots[slot].state == State::Idle {
                continue;
            }
            let deadline = self.slots[slot].sent + timeout;
            if deadline <= now {
                self.fail(slot, timed_out(timeout));
            } else {
                earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            }
        }
        earliest
    }

    /// The exchange failed: its connection is closed (which takes it out of epoll).
    fn fail(&mut self, slot: usize, failure: Failure) {
        self.finish(slot, Err(failure), false);
    }

    fn finish(&mut self, slot: usize, outcome: Result<u16, Failure>, reusable: bool) {
        let done = Instant::now();
        let s = &mut self.slots[slot];
        if !reusable {
            s.stream = None;
            s.read.clear();
            s.wants_write = false;
        }
        if s.state == State::Idle {
            return;
        }
        s.state = State::Idle;
        self.in_flight -= 1;
        self.free.push(slot);
        let exchange = Exchange {
            due: s.due,
            sent: s.sent,
            seq: s.seq,
            correlation_id: &s.correlation_id,
        };
        self.ctx.finished(&mut self.stats, &exchange, outcome, done);
    }
}

/// An event's token: the slot, and which of its connections.
fn token(slot: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | slot as u64
}

fn timed_out(timeout: Duration) -> Failure {
    (ErrorKind::Timeout, format!("no answer within {timeout:?}"))
}

fn connect_failure(authority: &str, err: &io::Error) -> Failure {
    (ErrorKind::for_io(err), format!("connect {authority}: {err}"))
}

/// The address to connect to: of the names `authority` resolves to, the first that accepts a
/// connection (tried once, at the start, as a blocking connect would), else the first.
fn resolve(authority: &str, timeout: Duration) -> Result<SocketAddr, Failure> {
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|err| (ErrorKind::Other, format!("resolve {authority}: {err}")))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| (ErrorKind::Other, format!("resolve {authority}: no address")))?;
    if addrs.len() == 1 {
        return Ok(first);
    }
    Ok(addrs
        .into_iter()
        .find(|addr| TcpStream::connect_timeout(addr, timeout).is_ok())
        .unwrap_or(first))
}

/// A non-blocking connection to `addr`, with Nagle off; true while the connect is still in
/// progress (the socket turns writable once it is done).
fn connect(addr: SocketAddr) -> io::Result<(TcpStream, bool)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    let in_progress = match socket.connect(&addr.into()) {
        Ok(()) => false,
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(err) => return Err(err),
    };
    Ok((TcpStream::from(socket), in_progress))
}

/// An epoll instance, level-triggered: a connection is always registered for readability
/// (an answer, or a close), for writability only while it waits to connect or to write.
struct Epoll {
    fd: OwnedFd,
}

/// Whether the kernel has `epoll_pwait2` (5.11 and later); without it, waits round up to
/// whole milliseconds.
static PWAIT2: AtomicBool = AtomicBool::new(true);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative answer is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: see above.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn add(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, write)
    }

    fn modify(&self, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, write)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, write: bool) -> io::Result<()> {
        let mut flags = libc::EPOLLIN | libc::EPOLLRDHUP;
        if write {
            flags |= libc::EPOLLOUT;
        }
        let mut event = libc::epoll_event {
            events: flags as u32,
            u64: token,
        };
        // SAFETY: `event` outlives the call; the kernel copies it.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for events; how many were written into `events`.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        let r = if PWAIT2.load(Ordering::Relaxed) {
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: timeout.subsec_nanos().into(),
            };
            // SAFETY: `events` holds `max` entries; `ts` outlives the call; no signal mask.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.fd.as_raw_fd(),
                    events.as_mut_ptr(),
                    max,
                    &ts as *const libc::timespec,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                PWAIT2.store(false, Ordering::Relaxed);
                return self.wait(events, timeout);
            }
            r as i64
        } else {
            let ms = timeout.as_nanos().div_ceil(1_000_000);
            let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
            // SAFETY: `events` holds `max` entries.
            i64::from(unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, ms) })
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            };
        }
        Ok(usize::try_from(r).unwrap_or(0))
    }
}
