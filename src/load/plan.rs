//! The load-test plan: every flag and scenario default resolved into one explicit,
//! validated plan before anything touches the network.

use std::time::Duration;

use crate::exit::UsageError;
use crate::load::args::LoadTestArgs;
use crate::traffic::open::shard_peak;
use crate::traffic::scenario::{self, Scenario, ThinkTime};
use crate::traffic::schedule::{AUTO_TICK, AUTO_TICK_FROM_RATE, RateSchedule, Shard, Stage};
use crate::traffic::threshold::Threshold;
use crate::units::parse_duration;
pub use crate::units::parse_rate;

#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// Users loop through the scenario (goose).
    Closed {
        users: usize,
        ramp_up: Duration,
        iterations: Option<usize>,
    },
    /// Arrivals on a schedule, whether or not earlier ones have answered.
    Open {
        schedule: RateSchedule,
        max_in_flight: usize,
        max_queue: usize,
    },
    /// Connections sending GETs of one URL: back to back, or on a schedule (`--rate` or
    /// `--stage` with `--connections`: the open model over plain connections).
    Plain {
        connections: usize,
        schedule: Option<RateSchedule>,
        max_queue: usize,
    },
}

impl Model {
    pub fn name(&self) -> &'static str {
        match self {
            Model::Closed { .. } => "closed",
            Model::Open { .. } => "open",
            Model::Plain { .. } => "plain",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A base URL (plain mode: the exact URL).
    Url(String),
    /// The in-process recordstore; plain mode loads this path on it.
    Embedded { path: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub json: Option<String>,
    pub html: Option<String>,
    pub push_gateway: Option<String>,
    pub hdr_out: Option<String>,
    /// `--out prometheus-rw=URL`: the remote-write URL.
    pub remote_write: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub run_id: String,
    /// This process's part of a sharded load.
    pub shard: Option<Shard>,
    pub target: Target,
    pub model: Model,
    /// The scenario (plain mode: none).
    pub scenario: Option<Scenario>,
    pub duration: Duration,
    /// Overrides the scenario's think times.
    pub think_time: Option<ThinkTime>,
    pub timeout: Duration,
    pub thresholds: Vec<Threshold>,
    pub outputs: Outputs,
    pub progress: bool,
}

fn duration_flag(flag: &str, raw: &str) -> Result<Duration, UsageError> {
    parse_duration(raw).map_err(|e| UsageError(format!("--{flag}: {e}")))
}

/// `--tick`: how a schedule's arrivals are grouped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TickFlag {
    /// The default: [`AUTO_TICK`] when a shard's peak rate is at least
    /// [`AUTO_TICK_FROM_RATE`], else each arrival at its own instant.
    Auto,
    /// `--tick 0`: each arrival at its own instant, whatever the rate.
    Off,
    /// `--tick D`: groups every D.
    Every(Duration),
}

/// `--tick`: `auto`, `0`, or a duration above zero and at most a second.
fn tick_flag(raw: &str) -> Result<TickFlag, UsageError> {
    match raw.trim() {
        "auto" => return Ok(TickFlag::Auto),
        "0" | "off" => return Ok(TickFlag::Off),
        _ => {}
    }
    let tick = duration_flag("tick", raw)?;
    if tick.is_zero() {
        return Ok(TickFlag::Off);
    }
    if tick > Duration::from_secs(1) {
        return Err(format!("--tick {raw}: auto, 0 (each arrival at its own instant) or 1us to 1s, e.g. 1ms").into());
    }
    Ok(TickFlag::Every(tick))
}

impl TickFlag {
    /// The tick for a schedule whose peak rate (this shard's) is `peak` a second, and
    /// whether the rate chose it.
    fn resolve(self, peak: f64) -> (Option<Duration>, bool) {
        match self {
            TickFlag::Auto => (Some(AUTO_TICK).filter(|_| peak >= AUTO_TICK_FROM_RATE), true),
            TickFlag::Off => (None, false),
            TickFlag::Every(tick) => (Some(tick), false),
        }
    }
}

impl LoadPlan {
    /// `Err` is the message for a usage error (exit 2).
    pub fn from_args(args: &LoadTestArgs) -> Result<LoadPlan, UsageError> {
        let plain = args.connections.is_some();
        exclusive_flags(args)?;
        let scenario = if plain {
            None
        } else {
            Some(scenario::load(args.scenario.as_deref().unwrap_or("browse")).map_err(|e| e.to_string())?)
        };
        let defaults = scenario.as_ref().map(|s| s.defaults.clone()).unwrap_or_default();
        let duration = match (&args.duration, &defaults.duration) {
            (Some(raw), _) => duration_flag("duration", raw)?,
            (None, Some(d)) => d.0,
            (None, None) => Duration::from_secs(if plain { 10 } else { 30 }),
        };
        if duration.is_zero() {
            return Err("--duration must be above zero".into());
        }
        let timeout = duration_flag("timeout", &args.timeout)?;
        let think_time = args
            .think_time
            .as_deref()
            .map(ThinkTime::parse)
            .transpose()
            .map_err(|e| format!("--think-time: {e}"))?;
        let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
        let model = model(args, &defaults, duration, shard)?;
        let duration = match &model {
            Model::Open { schedule, .. }
            | Model::Plain {
                schedule: Some(schedule),
                ..
            } => schedule.duration(),
            _ => duration,
        };
        let target = match &args.target {
            Some(url) => Target::Url(validate_url(url, plain)?),
            None => Target::Embedded {
                path: "/products".into(),
            },
        };
        let mut thresholds = Vec::new();
        let from_scenario = scenario.iter().flat_map(|s| s.thresholds.checks.iter());
        for text in args.thresholds.iter().chain(from_scenario) {
            thresholds.push(Threshold::parse(text)?);
        }
        Ok(LoadPlan {
            run_id: run_id(args.run_id.as_deref(), shard)?,
            shard,
            target,
            model,
            scenario,
            duration,
            think_time,
            timeout,
            thresholds,
            outputs: Outputs {
                json: args.json.clone(),
                html: args.html.clone(),
                push_gateway: args.push_gateway.clone(),
                hdr_out: args.hdr_out.clone(),
                remote_write: remote_write(&args.out)?,
            },
            progress: !args.no_progress,
        })
    }
}

/// The flags that pick a model exclude each other.
fn exclusive_flags(args: &LoadTestArgs) -> Result<(), UsageError> {
    let plain = args.connections.is_some();
    if plain && args.scenario.is_some() {
        return Err("--connections (plain mode) loads one URL and takes no --scenario; drop one of them".into());
    }
    if plain && args.users.is_some() {
        return Err("--connections (plain mode) and --users (closed model) exclude each other: pick one".into());
    }
    if args.rate.is_some() && args.users.is_some() {
        return Err("--rate (open model) and --users (closed model) exclude each other".into());
    }
    if !args.stages.is_empty() && args.users.is_some() {
        return Err("--stage belongs to the open model; it cannot be combined with --users".into());
    }
    Ok(())
}

/// The model the flags (or else the scenario's defaults) choose, this shard's part of it.
fn model(
    args: &LoadTestArgs,
    defaults: &scenario::Defaults,
    duration: Duration,
    shard: Option<Shard>,
) -> Result<Model, UsageError> {
    let tick = args.tick.as_deref().map(tick_flag).transpose()?;
    let tick_given = tick.is_some();
    let tick = tick.unwrap_or(TickFlag::Auto);
    if args.max_queue == 0 {
        // With no room to wait, every arrival would be dropped, free slot or not.
        return Err(
            "--max-queue must be at least 1: it is how many arrivals may wait for a busy slot before later ones are dropped"
                .into(),
        );
    }
    let rate = args.rate.clone().or(if args.users.is_some() {
        None
    } else {
        defaults.rate.clone()
    });
    if let Some(connections) = args.connections {
        if connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        let connections = match shard {
            Some(shard) => nonzero_share(shard, connections, "connections")?,
            None => connections,
        };
        // With --rate or --stage, the open model's arrivals over the plain connections.
        let schedule = match args.rate.is_some() || !args.stages.is_empty() {
            true => Some(schedule(args.rate.as_deref(), &args.stages, duration, tick, shard)?),
            false if tick_given => {
                return Err(
                    "--tick groups the arrivals of a schedule: plain mode takes it with --rate or --stage".into(),
                );
            }
            false => None,
        };
        return Ok(Model::Plain {
            connections,
            schedule,
            max_queue: args.max_queue,
        });
    }
    if rate.is_some() || !args.stages.is_empty() {
        let schedule = schedule(rate.as_deref(), &args.stages, duration, tick, shard)?;
        if args.max_in_flight == 0 {
            return Err("--max-in-flight must be at least 1".into());
        }
        return Ok(Model::Open {
            schedule,
            max_in_flight: args.max_in_flight,
            max_queue: args.max_queue,
        });
    }
    if tick_given {
        return Err("--tick groups the open model's arrivals: it needs --rate or --stage".into());
    }
    let users = args.users.or(defaults.users).unwrap_or(10);
    if users == 0 {
        return Err("--users must be at least 1".into());
    }
    let ramp_up = match (&args.ramp_up, &defaults.ramp_up) {
        (Some(raw), _) => duration_flag("ramp-up", raw)?,
        (None, Some(d)) => d.0,
        (None, None) => Duration::ZERO,
    };
    Ok(Model::Closed {
        users: match shard {
            Some(shard) => nonzero_share(shard, users, "users")?,
            None => users,
        },
        ramp_up,
        iterations: args.iterations.or(defaults.iterations),
    })
}

/// `--run-id`, or a random one; a shard's carries its number.
fn run_id(given: Option<&str>, shard: Option<Shard>) -> Result<String, UsageError> {
    let run_id = given
        .map(str::to_string)
        .unwrap_or_else(|| format!("lt-{:08x}", rand::random::<u32>()));
    if run_id.is_empty()
        || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        || run_id.len() > 64
    {
        return Err(format!("--run-id {run_id:?}: letters, digits and ._:- only, at most 64").into());
    }
    Ok(match shard {
        Some(s) => format!("{run_id}-s{}", s.index + 1),
        None => run_id,
    })
}

/// `--out prometheus-rw=URL` (at most one): the URL, an http(s) one.
fn remote_write(outs: &[String]) -> Result<Option<String>, UsageError> {
    let mut url = None;
    for out in outs {
        let Some(("prometheus-rw", value)) = out.split_once('=') else {
            return Err(format!(
                "--out {out:?}: expected prometheus-rw=URL, e.g. prometheus-rw=http://localhost:9090/api/v1/write"
            )
            .into());
        };
        let parsed = reqwest::Url::parse(value).map_err(|e| format!("--out {out:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(format!("--out {out:?}: the URL must be http:// or https:// with a host").into());
        }
        if url.replace(value.to_string()).is_some() {
            return Err("--out prometheus-rw=URL may be given once".into());
        }
    }
    Ok(url)
}

/// A shard's share of `total` users or connections; every shard needs at least one.
fn nonzero_share(shard: Shard, total: usize, what: &str) -> Result<usize, UsageError> {
    match shard.share(total) {
        0 => Err(format!(
            "--shard {}/{}: {total} {what} cannot be split between {} shards",
            shard.index + 1,
            shard.count,
            shard.count
        )
        .into()),
        n => Ok(n),
    }
}

fn schedule(
    rate: Option<&str>,
    stages: &[String],
    duration: Duration,
    tick: TickFlag,
    shard: Option<Shard>,
) -> Result<RateSchedule, UsageError> {
    let base = rate.map(parse_rate).transpose().map_err(|e| format!("--rate: {e}"))?;
    let mut out = Vec::new();
    let mut current = base.unwrap_or(0.0);
    for raw in stages {
        let (d, r) = raw
            .split_once(':')
            .ok_or_else(|| format!("--stage {raw:?}: expected DURATION:RATE, e.g. 30s:500/s"))?;
        let d = parse_duration(d).map_err(|e| format!("--stage {raw:?}: {e}"))?;
        // A stage may ramp down to zero; a rate of its own must be positive.
        let r = if r.trim().split('/').next().and_then(|n| n.trim().parse::<f64>().ok()) == Some(0.0) {
            0.0
        } else {
            parse_rate(r).map_err(|e| format!("--stage {raw:?}: {e}"))?
        };
        out.push(Stage {
            duration: d,
            from: current,
            to: r,
        });
        current = r;
    }
    if out.is_empty() {
        let rate = base.expect("a rate when there are no stages");
        out.push(Stage {
            duration,
            from: rate,
            to: rate,
        });
    }
    let mut schedule = RateSchedule {
        stages: out,
        tick: None,
        tick_auto: false,
    };
    (schedule.tick, schedule.tick_auto) = tick.resolve(shard_peak(&schedule, shard));
    Ok(schedule)
}

fn validate_url(raw: &str, plain: bool) -> Result<String, UsageError> {
    let uri: hyper::Uri = raw.parse().map_err(|e| format!("--target {raw:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if !plain => {}
        Some("https") => {
            return Err(
                format!("--target {raw:?}: plain mode speaks plain HTTP only; use a scenario for https").into(),
            );
        }
        _ => return Err(format!("--target {raw:?}: expected an http:// URL").into()),
    }
    if uri.host().is_none() {
        return Err(format!("--target {raw:?}: no host").into());
    }
    Ok(if plain {
        raw.to_string()
    } else {
        raw.trim_end_matches('/').to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<LoadPlan, String> {
        let mut argv = vec!["recordctl", "load-test"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            crate::cli::Command::LoadTest(a) => LoadPlan::from_args(&a).map_err(|e| e.to_string()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_the_browse_scenario_closed_on_the_embedded_store() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.scenario.as_ref().unwrap().name, "browse");
        assert_eq!(
            p.model,
            Model::Closed {
                users: 20,
                ramp_up: Duration::from_secs(5),
                iterations: None
            }
        );
        assert_eq!(p.duration, Duration::from_secs(30));
        assert!(matches!(p.target, Target::Embedded { .. }));
    }

    /// How many arrivals fall before the schedule's end.
    fn arrivals(schedule: &RateSchedule) -> u64 {
        let end = schedule.duration();
        let mut k = 0u64;
        while let Some(t) = schedule.time_of_count(k as f64) {
            assert!(t <= end, "arrival {k} at {t:?} past the end");
            if t >= end {
                break;
            }
            k += 1;
        }
        k
    }

    fn stages(list: &[(u64, f64, f64)]) -> RateSchedule {
        RateSchedule {
            stages: list
                .iter()
                .map(|&(secs, from, to)| Stage {
                    duration: Duration::from_secs(secs),
                    from,
                    to,
                })
                .collect(),
            tick: None,
            tick_auto: false,
        }
    }

    #[test]
    fn arrivals_follow_the_integral_of_the_rate_for_every_stage_shape() {
        // 0→200/s over 10 s: 1,000 arrivals (the review saw 1).
        let ramp_up = stages(&[(10, 0.0, 200.0)]);
        assert_eq!(ramp_up.expected_count(), 1000.0);
        assert!((999..=1000).contains(&arrivals(&ramp_up)), "{}", arrivals(&ramp_up));
        // The first arrivals of a ramp from zero come slowly: the k-th at sqrt(k / a).
        let t1 = ramp_up.time_of_count(1.0).unwrap().as_secs_f64();
        assert!((t1 - (1.0f64 / 10.0).sqrt()).abs() < 1e-9, "{t1}");
        for (shape, want) in [
            (stages(&[(10, 200.0, 0.0)]), 1000),
            (stages(&[(10, 100.0, 300.0)]), 2000),
            (stages(&[(5, 100.0, 100.0)]), 500),
            (stages(&[(5, 0.0, 100.0), (5, 100.0, 100.0), (5, 100.0, 0.0)]), 1000),
            (stages(&[(3, 0.0, 0.0), (2, 50.0, 50.0)]), 100),
        ] {
            let got = arrivals(&shape);
            assert!(got.abs_diff(want) <= 1, "{shape:?}: {got} arrivals, want {want}");
        }
        // Arrival times never go backwards.
        let mixed = stages(&[(2, 0.0, 50.0), (2, 50.0, 10.0)]);
        let times: Vec<Duration> = (0..arrivals(&mixed))
            .map(|k| mixed.time_of_count(k as f64).unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            stages(&[(5, 0.0, 0.0)]).time_of_count(0.0),
            None,
            "a zero rate sends nothing"
        );
    }

    #[test]
    fn shards_split_arrivals_users_and_connections_without_overlap_or_gap() {
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "1/1001", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|k| Shard::parse(&format!("{k}/3")).unwrap()).collect();
        // Every arrival of the whole schedule belongs to exactly one shard.
        let schedule = stages(&[(2, 0.0, 100.0), (2, 100.0, 100.0)]);
        let total = arrivals(&schedule);
        let mut owned = vec![0u64; 3];
        for k in 0..total {
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].owns(k)).collect();
            assert_eq!(owners.len(), 1, "arrival {k}");
            owned[owners[0]] += 1;
        }
        assert_eq!(owned.iter().sum::<u64>(), total);
        assert!(
            owned.iter().max().unwrap() - owned.iter().min().unwrap() <= 1,
            "{owned:?}"
        );
        assert_eq!(shards.iter().map(|s| s.share(10)).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!(shards.iter().map(|s| s.share(2)).sum::<usize>(), 2);
        let p = plan(&["--users", "2", "--shard", "3/3"]);
        assert!(p.unwrap_err().contains("cannot be split between 3 shards"));
        let p = plan(&["--users", "10", "--shard", "1/3", "--run-id", "load-7"]).unwrap();
        assert_eq!(p.run_id, "load-7-s1");
        assert!(matches!(p.model, Model::Closed { users: 4, .. }));
        assert!(plan(&["--run-id", "bad id"]).is_err());
    }

    #[test]
    fn rate_makes_an_open_model_and_stages_ramp() {
        let p = plan(&["--rate", "200/s", "--duration", "5s"]).unwrap();
        let Model::Open { schedule, .. } = &p.model else {
            panic!("{:?}", p.model)
        };
        assert_eq!(schedule.rate_at(Duration::from_secs(1)), 200.0);
        assert_eq!(p.duration, Duration::from_secs(5));
        let p = plan(&["--rate", "100/s", "--stage", "10s:300/s", "--stage", "5s:300/s"]).unwrap();
        let Model::Open { schedule, .. } = &p.model else {
            panic!()
        };
        assert_eq!(schedule.rate_at(Duration::from_secs(5)), 200.0);
        assert_eq!(schedule.rate_at(Duration::from_secs(12)), 300.0);
        assert_eq!(p.duration, Duration::from_secs(15));
    }

    /// `--tick auto`, the default, groups by 500us from 2,000 arrivals/s at a shard's peak;
    /// `--tick 0` never groups.
    #[test]
    fn the_auto_tick_follows_the_peak_rate_of_the_shard_and_zero_turns_it_off() {
        let tick = |args: &[&str]| -> (Option<Duration>, bool) {
            let p = plan(args).unwrap();
            let (Model::Open { schedule, .. }
            | Model::Plain {
                schedule: Some(schedule),
                ..
            }) = &p.model
            else {
                panic!("{:?}", p.model)
            };
            (schedule.tick, schedule.tick_auto)
        };
        let half_ms = Some(Duration::from_micros(500));
        assert_eq!(tick(&["--rate", "1999/s"]), (None, true));
        assert_eq!(tick(&["--rate", "2000/s"]), (half_ms, true));
        assert_eq!(tick(&["--rate", "20000/s", "--tick", "auto"]), (half_ms, true));
        // A ramp's peak decides, and a shard's part of it.
        assert_eq!(tick(&["--stage", "10s:5000/s", "--stage", "10s:0/s"]), (half_ms, true));
        assert_eq!(tick(&["--rate", "5000/s", "--shard", "1/3"]), (None, true));
        assert_eq!(tick(&["--rate", "6000/s", "--shard", "3/3"]), (half_ms, true));
        let plain = [
            "--target",
            "http://127.0.0.1:8/",
            "--connections",
            "4",
            "--rate",
            "20000/s",
        ];
        assert_eq!(tick(&plain), (half_ms, true));
        for off in ["0", "0ms", "off"] {
            assert_eq!(tick(&["--rate", "20000/s", "--tick", off]), (None, false), "{off}");
            assert_eq!(tick(&[&plain[..], &["--tick", off]].concat()), (None, false), "{off}");
        }
        assert_eq!(
            tick(&["--rate", "20000/s", "--tick", "2ms"]),
            (Some(Duration::from_millis(2)), false)
        );
        // Without a schedule there is nothing to group: auto says nothing, an explicit tick
        // is refused.
        assert!(plan(&["--users", "3"]).is_ok());
    }

    #[test]
    fn tick_groups_a_schedule_and_is_refused_without_one() {
        let p = plan(&["--rate", "200/s", "--tick", "1ms"]).unwrap();
        let Model::Open { schedule, .. } = &p.model else {
            panic!("{:?}", p.model)
        };
        assert_eq!(schedule.tick, Some(Duration::from_millis(1)));
        let p = plan(&[
            "--target",
            "http://127.0.0.1:8/",
            "--connections",
            "4",
            "--rate",
            "9/s",
            "--tick",
            "250us",
        ]);
        let Model::Plain {
            schedule: Some(schedule),
            ..
        } = &p.unwrap().model
        else {
            panic!()
        };
        assert_eq!(schedule.tick_us(), Some(250));
        for (args, want) in [
            (&["--users", "3", "--tick", "1ms"][..], "needs --rate or --stage"),
            (
                &["--target", "http://127.0.0.1:8/", "--connections", "4", "--tick", "1ms"][..],
                "plain mode takes it with --rate",
            ),
            (&["--rate", "9/s", "--tick", "2s"][..], "1us to 1s"),
            (&["--users", "3", "--tick", "0"][..], "needs --rate or --stage"),
            (&["--rate", "9/s", "--tick", "soon"][..], "--tick"),
        ] {
            let err = plan(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn plain_mode_needs_no_scenario_and_refuses_one() {
        let p = plan(&["--target", "http://127.0.0.1:8/x", "--connections", "50"]).unwrap();
        assert_eq!(
            p.model,
            Model::Plain {
                connections: 50,
                schedule: None,
                max_queue: 100_000,
            }
        );
        assert!(p.scenario.is_none());
        assert_eq!(p.duration, Duration::from_secs(10));
        // With a rate: the open model's arrivals over the plain connections.
        let p = plan(&[
            "--target",
            "http://127.0.0.1:8/x",
            "--connections",
            "50",
            "--rate",
            "5000/s",
        ])
        .unwrap();
        let Model::Plain {
            schedule: Some(schedule),
            connections: 50,
            ..
        } = &p.model
        else {
            panic!("{:?}", p.model)
        };
        assert_eq!(schedule.peak(), 5000.0);
        assert_eq!(p.duration, Duration::from_secs(10));
        assert!(
            plan(&["--target", "http://127.0.0.1:8/x", "--connections", "5", "--users", "5"])
                .unwrap_err()
                .contains("exclude each other")
        );
        assert!(
            plan(&["--connections", "5", "--scenario", "browse"])
                .unwrap_err()
                .contains("no --scenario")
        );
        assert!(
            plan(&["--target", "https://x/", "--connections", "5"])
                .unwrap_err()
                .contains("plain HTTP")
        );
    }

    #[test]
    fn conflicting_or_bad_flags_are_refused_with_the_fix() {
        assert!(
            plan(&["--rate", "10/s", "--users", "3"])
                .unwrap_err()
                .contains("exclude")
        );
        assert!(plan(&["--rate", "fast"]).unwrap_err().contains("--rate"));
        assert!(
            plan(&["--duration", "5 fortnights"])
                .unwrap_err()
                .contains("--duration")
        );
        assert!(plan(&["--threshold", "p95<300"]).unwrap_err().contains("p95<300"));
        assert!(plan(&["--target", "ftp://x"]).unwrap_err().contains("http://"));
        for flags in [
            &["--rate", "10/s", "--max-queue", "0"][..],
            &["--connections", "2", "--rate", "10/s", "--max-queue", "0"],
        ] {
            assert!(
                plan(flags).unwrap_err().contains("--max-queue must be at least 1"),
                "{flags:?}"
            );
        }
        assert!(
            plan(&["--rate", "10/s", "--max-in-flight", "0"])
                .unwrap_err()
                .contains("--max-in-flight must be at least 1")
        );
        assert!(
            plan(&["--scenario", "no-such"])
                .unwrap_err()
                .contains("built-in scenarios")
        );
    }

    #[test]
    fn thresholds_come_from_flags_and_the_scenario() {
        let p = plan(&["--scenario", "purchase", "--threshold", "rps>1"]).unwrap();
        let texts: Vec<_> = p.thresholds.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["rps>1", "p95<500ms", "error_rate<1%"]);
    }

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("500/s").unwrap(), 500.0);
        assert_eq!(parse_rate("30/m").unwrap(), 0.5);
        assert_eq!(parse_rate("7").unwrap(), 7.0);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/fortnight").is_err());
    }
}
