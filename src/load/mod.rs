//! `recordctl load-test`: plan → target (given or embedded) → pre-flight → engine (plain,
//! open or closed) → report (table, JSON, HTML, Pushgateway, HdrHistogram log) → exit code.

pub mod args;
pub mod html;
pub mod merge;
pub mod plan;
pub mod push;
pub mod remote_write;
pub mod report;

pub use args::LoadTestArgs;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::embedded::EmbeddedTarget;
use crate::exit::{CommandError, CommandResult};
use crate::output::Delivery;
use crate::traffic::stats::{Live, Recorder};
use crate::traffic::{EngineError, closed, executor, hdr, open, plain, plain_open, stats, threshold};
use plan::{LoadPlan, Model, Target};
use report::{LoadReport, ReportContext};

/// What the engines hand over.
pub struct RunOutcome {
    pub stats: stats::Stats,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub schedule: Option<open::ScheduleReport>,
    /// `--out prometheus-rw`: the writer, how many per-second pushes failed, the first error.
    pub remote_write: Option<(Arc<remote_write::RemoteWriter>, u64, Option<String>)>,
}

pub async fn run(args: LoadTestArgs, interrupt: CancellationToken) -> CommandResult {
    let plan = LoadPlan::from_args(&args)?;
    let (target_url, embedded) = match &plan.target {
        Target::Url(url) => (url.clone(), None),
        Target::Embedded { path } => {
            let app = EmbeddedTarget::start()
                .await
                .map_err(|e| CommandError::Unreachable(format!("cannot start the embedded recordstore: {e}")))?;
            let url = match plan.model {
                Model::Plain { .. } => format!("{}{path}", app.base_url()),
                _ => app.base_url(),
            };
            (url, Some(app))
        }
    };
    let result = measure(&plan, &target_url, embedded.is_some(), &interrupt).await;
    if let Some(app) = embedded {
        app.stop().await;
    }
    result
}

/// Checks the target, runs the plan against it and delivers the report.
async fn measure(plan: &LoadPlan, target_url: &str, embedded: bool, interrupt: &CancellationToken) -> CommandResult {
    preflight(target_url).await?;
    let outcome = execute(plan, target_url, interrupt)
        .await
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let report = report::build(
        &ReportContext {
            run_id: &plan.run_id,
            shard: plan.shard.map(|s| format!("{}/{}", s.index + 1, s.count)),
            model: plan.model.name(),
            target: if embedded { "embedded recordstore" } else { target_url },
            scenario: plan.scenario.as_ref().map(|s| s.name.as_str()),
            started_at: recordstore::clock::rfc3339_ms(
                recordstore::clock::now_ms() - outcome.elapsed.as_millis() as i64,
            ),
            thresholds: &plan.thresholds,
        },
        &outcome,
    );
    deliver(plan, &report, &outcome).await.conclude(report.outcome())
}

/// Checks the target answers TCP before the clock starts.
async fn preflight(url: &str) -> Result<(), CommandError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| CommandError::Usage(format!("bad target URL {url}: {e}")))?;
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CommandError::Unreachable(crate::backends::target_unreachable(
            url,
            &e.to_string(),
        ))),
        Err(_) => Err(CommandError::Unreachable(crate::backends::target_unreachable(
            url,
            "no TCP answer within 3s",
        ))),
    }
}

async fn execute(plan: &LoadPlan, target: &str, interrupt: &CancellationToken) -> Result<RunOutcome, EngineError> {
    let start = Instant::now();
    let live = Arc::new(Live::default());
    let recorder = Arc::new(Recorder::default());
    // The plain model counts in `live`; the others in the recorder.
    let plain_live = if matches!(plan.model, Model::Plain { .. }) {
        live.clone()
    } else {
        Arc::new(Live::default())
    };
    let progress = progress_bar(plan, plain_live.clone(), recorder.clone(), start);
    let writer = plan
        .outputs
        .remote_write
        .as_deref()
        .map(|url| Arc::new(remote_writer(plan, url)));
    let streaming = writer.clone().map(|writer| {
        let stop = CancellationToken::new();
        let task = tokio::spawn(remote_write::stream(
            writer,
            recorder.clone(),
            plain_live.clone(),
            start,
            stop.clone(),
        ));
        (stop, task)
    });
    let (stats, schedule) = run_model(plan, target, start, live, recorder, interrupt).await?;
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    let remote_write = match streaming {
        Some((stop, task)) => {
            stop.cancel();
            let (failed, first) = task.await.unwrap_or((0, None));
            writer.map(|w| (w, failed, first))
        }
        None => None,
    };
    Ok(RunOutcome {
        remote_write,
        stats,
        elapsed: start.elapsed(),
        interrupted: interrupt.is_cancelled(),
        schedule,
    })
}

/// The remote writer of `--out prometheus-rw=URL`, its series labelled with the run.
fn remote_writer(plan: &LoadPlan, url: &str) -> remote_write::RemoteWriter {
    let shard = plan
        .shard
        .map(|s| format!("{}/{}", s.index + 1, s.count))
        .unwrap_or_default();
    let scenario = plan.scenario.as_ref().map_or("", |s| s.name.as_str());
    remote_write::RemoteWriter::new(url, &plan.run_id, plan.model.name(), scenario, &shard)
}

/// Runs the plan's model to its end; the stats and, for the open model, its schedule report.
async fn run_model(
    plan: &LoadPlan,
    target: &str,
    start: Instant,
    live: Arc<Live>,
    recorder: Arc<Recorder>,
    interrupt: &CancellationToken,
) -> Result<(stats::Stats, Option<open::ScheduleReport>), EngineError> {
    Ok(match &plan.model {
        Model::Plain {
            connections,
            schedule: Some(schedule),
            max_queue,
        } => {
            let target = plain::PlainTarget::parse(target)?;
            let on_schedule = plain_open::PlainSchedule {
                connections: *connections,
                schedule: schedule.clone(),
                shard: plan.shard,
                max_queue: *max_queue,
                timeout: plan.timeout,
            };
            let (stats, report) =
                plain_open::run(target, on_schedule, plan.run_id.clone(), live, interrupt.clone()).await;
            (stats, Some(report))
        }
        Model::Plain {
            connections,
            schedule: None,
            ..
        } => {
            let target = plain::PlainTarget::parse(target)?;
            let stats = plain::run(
                target,
                *connections,
                plan.duration,
                plan.timeout,
                plan.run_id.clone(),
                live,
                interrupt.clone(),
            )
            .await?;
            (stats, None)
        }
        Model::Open {
            schedule,
            max_in_flight,
            max_queue,
        } => {
            let executor = executor(plan, target, *max_in_flight, start)?;
            let report = open::run(
                executor,
                schedule,
                plan.shard,
                *max_in_flight,
                *max_queue,
                recorder.clone(),
                interrupt.clone(),
            )
            .await;
            (recorder.take(), Some(report))
        }
        Model::Closed {
            users,
            ramp_up,
            iterations,
        } => {
            let executor = executor(plan, target, *users, start)?;
            let model = closed::ClosedModel {
                users: *users,
                ramp_up: *ramp_up,
                iterations: *iterations,
                duration: plan.duration,
            };
            closed::run(target, model, executor, recorder.clone()).await?;
            (recorder.take(), None)
        }
    })
}

fn executor(
    plan: &LoadPlan,
    target: &str,
    connections: usize,
    start: Instant,
) -> Result<Arc<executor::Executor>, EngineError> {
    let scenario = (plan.scenario.clone()).ok_or_else(|| EngineError::Setup("this model needs a scenario".into()))?;
    executor::Executor::new(
        target,
        scenario,
        plan.think_time,
        plan.timeout,
        connections,
        &plan.run_id,
        start,
    )
    .map(Arc::new)
}

/// A progress bar on stderr (elapsed, requests/s, errors, live p99), only on a terminal and
/// never with NO_COLOR or --no-progress.
fn progress_bar(
    plan: &LoadPlan,
    plain_live: Arc<Live>,
    recorder: Arc<Recorder>,
    start: Instant,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    let wanted = plan.progress && std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if !wanted {
        return None;
    }
    let bar = indicatif::ProgressBar::new(plan.duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let mut last = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let live = if plain_live.requests.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                &plain_live
            } else {
                &recorder.live
            };
            let requests = live.requests.load(std::sync::atomic::Ordering::Relaxed);
            let errors = live.errors.load(std::sync::atomic::Ordering::Relaxed);
            let p99 = live.take_p99();
            b.set_position(start.elapsed().as_millis() as u64);
            b.set_message(format!(
                "{requests} req · {:.0} req/s · {errors} errors · p99 {}",
                (requests - last) as f64 * 2.0,
                threshold::format_us(p99 as f64)
            ));
            last = requests;
        }
    });
    Some((bar, task))
}

/// Writes the table (stdout, or stderr when JSON goes to stdout), the requested files and
/// the pushes; see [`crate::output`].
async fn deliver(plan: &LoadPlan, report: &LoadReport, outcome: &RunOutcome) -> Delivery {
    let mut delivery = Delivery::default();
    delivery.show(&report::render_table(report), report, plan.outputs.json.as_deref());
    delivery.file("HTML", plan.outputs.html.as_deref(), || html::render(report));
    delivery.bytes("HDR log", plan.outputs.hdr_out.as_deref(), || {
        let started = std::time::SystemTime::now() - outcome.elapsed;
        hdr::encode(&outcome.stats, started, outcome.elapsed, &report.run_id)
    });
    if let Some(gateway) = &plan.outputs.push_gateway
        && let Err(e) = push::push(gateway, report).await
    {
        delivery.failed_to_send(e.to_string());
    }
    // The last push carries the report's own totals: what Prometheus holds equals the report.
    if let Some((writer, failed_pushes, first)) = &outcome.remote_write {
        if let Err(e) = writer
            .send(&remote_write::final_points(report), recordstore::clock::now_ms())
            .await
        {
            delivery.failed_to_send(e.to_string());
        } else if *failed_pushes > 0 {
            eprintln!(
                "recordctl load-test: remote write: {failed_pushes} of the per-second pushes to {} failed (first: {}); the final totals arrived",
                writer.url(),
                first.as_deref().unwrap_or("")
            );
        }
    }
    delivery
}
