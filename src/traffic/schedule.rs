//! When arrivals are due (a piecewise-linear rate and its integral) and which of them, users
//! or connections are this process's when a load is split into shards.

use std::time::Duration;

use crate::exit::UsageError;

/// Piecewise-linear arrival rate: each stage moves from `from` to `to` per second.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule {
    pub stages: Vec<Stage>,
    /// Arrivals in groups, one per tick: each is due at the start of the tick it falls in
    /// (`--tick`). None: each at its own instant.
    pub tick: Option<Duration>,
    /// The tick was chosen by the rate (`--tick auto`, the default), not by the user.
    pub tick_auto: bool,
}

/// `--tick auto`: from this many arrivals a second at a shard's peak (a mean gap under the
/// auto tick), arrivals are sent in groups of [`AUTO_TICK`]; below it, each at its own
/// instant.
pub const AUTO_TICK_FROM_RATE: f64 = 2_000.0;

/// `--tick auto`'s tick at high rates: groups of 10 at 20,000/s, 2–3 at 5,000/s. Each
/// arrival costs a wake-up of the generator (and, on loopback, of the target in the
/// generator's own `send`) when sent alone; half a millisecond of grouping brings that under
/// oha's CPU per request while its bursts stay a half of oha's millisecond ones.
pub const AUTO_TICK: Duration = Duration::from_micros(500);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
}

impl Stage {
    /// Arrivals the stage expects: its mean rate times its length.
    fn count(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.duration.as_secs_f64()
    }
}

impl RateSchedule {
    /// The tick arrivals are grouped by, in microseconds, for the report.
    pub fn tick_us(&self) -> Option<u64> {
        self.tick.map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Arrivals per second at `t` from the start; 0 after the last stage.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for stage in &self.stages {
            if t < start + stage.duration {
                let progress = (t - start).as_secs_f64() / stage.duration.as_secs_f64().max(1e-9);
                return stage.from + (stage.to - stage.from) * progress;
            }
            start += stage.duration;
        }
        0.0
    }

    /// Arrivals expected over the whole schedule: the integral of the rate.
    pub fn expected_count(&self) -> f64 {
        self.stages.iter().map(Stage::count).sum()
    }

    /// When the expected count of arrivals (the integral of the rate from the start) reaches
    /// `k`: arrival `k` (from 0) is due then. `None` when the schedule ends first. Exact for
    /// every stage shape, a ramp from or to zero included.
    pub fn time_of_count(&self, k: f64) -> Option<Duration> {
        let mut start = 0.0;
        let mut before = 0.0;
        for stage in &self.stages {
            let d = stage.duration.as_secs_f64();
            let count = stage.count();
            if k < before + count {
                // Within the stage: from·t + (to − from)·t²/(2d) = k − before, solved in the
                // form that is stable for rising, falling and flat rates alike.
                let left = k - before;
                let a = if d > 0.0 {
                    (stage.to - stage.from) / (2.0 * d)
                } else {
                    0.0
                };
                let b = stage.from;
                let root = (b * b + 4.0 * a * left).max(0.0).sqrt();
                let t = if b + root > 0.0 { 2.0 * left / (b + root) } else { 0.0 };
                return Duration::try_from_secs_f64(start + t.clamp(0.0, d)).ok();
            }
            before += count;
            start += d;
        }
        None
    }

    /// The nominal (peak) rate, for the report.
    pub fn peak(&self) -> f64 {
        self.stages.iter().map(|s| s.from.max(s.to)).fold(0.0, f64::max)
    }
}

/// This process's part of a load split between `count` processes (`index` from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(raw: &str) -> Result<Shard, UsageError> {
        let bad = || {
            UsageError(format!(
                "--shard {raw:?}: expected K/N with 1 <= K <= N <= 1000, e.g. 2/3"
            ))
        };
        let (k, n) = raw.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || k > n || n > 1000 {
            return Err(bad());
        }
        Ok(Shard { index: k - 1, count: n })
    }

    /// Whether item `k` (an arrival, a user, a connection) of the whole load is this shard's.
    pub fn owns(&self, k: u64) -> bool {
        k % self.count as u64 == self.index as u64
    }

    /// How many of `total` items are this shard's.
    pub fn share(&self, total: usize) -> usize {
        total / self.count + usize::from(self.index < total % self.count)
    }
}
