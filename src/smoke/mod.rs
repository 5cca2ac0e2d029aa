//! `recordctl smoke`: the CI gate. Health, readiness, one purchase journey (with its trace,
//! log lines and metrics when they can be read), then the sample probes; one JUnit test case
//! per check, each failure saying what was expected and what came.

pub mod args;

pub use args::SmokeArgs;

use std::fmt::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::correlate::source::TraceSource;
use crate::exit::{CommandResult, Outcome, UsageError};
use crate::journey::steps::Journey;
use crate::output::Delivery;
use crate::units::parse_duration;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SmokeCheck {
    pub name: String,
    pub ok: bool,
    pub duration_ms: f64,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SmokeReport {
    /// The JSON document's version: a field is only ever added within one.
    pub schema_version: u32,
    pub target: String,
    pub checks: Vec<SmokeCheck>,
    pub passed: bool,
    /// The journey's correlation id, to look it up later (`recordctl correlate`).
    pub correlation_id: Option<String>,
}

/// The smoke run's plan, from its flags alone: the journey's wait, and the probes file read
/// and validated (its relative targets against a placeholder, since the store's address is
/// known only once it runs). No network, no store started: a bad flag or file stops here.
#[derive(Debug)]
pub struct SmokePlan {
    pub wait: Duration,
    /// The probes file's text and where it came from (a path, or the built-in sample).
    pub probes: (String, String),
}

impl SmokePlan {
    /// `Err` is the message for a usage error (exit 2).
    pub fn from_args(args: &SmokeArgs) -> Result<SmokePlan, UsageError> {
        let wait = parse_duration(&args.wait).map_err(|e| format!("--wait: {e}"))?;
        let probes = match &args.probes {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
                path.clone(),
            ),
            None => (
                crate::probe::spec::SAMPLE.to_string(),
                "probes.toml (built in)".to_string(),
            ),
        };
        crate::probe::spec::parse(&probes.0, &probes.1, Some("http://127.0.0.1:8000")).map_err(|e| e.to_string())?;
        Ok(SmokePlan { wait, probes })
    }

    /// The probes, their relative targets on `base`.
    fn probes_on(&self, base: &str) -> Result<Vec<crate::probe::spec::ProbeSpec>, UsageError> {
        crate::probe::spec::parse(&self.probes.0, &self.probes.1, Some(base)).map_err(|e| UsageError(e.to_string()))
    }
}

pub async fn run(args: SmokeArgs, interrupt: CancellationToken) -> CommandResult {
    let plan = SmokePlan::from_args(&args)?;
    let source = TraceSource::open(args.target.as_deref(), args.trace, &args.stack).await?;
    let base = source.base.clone();
    let probes = match plan.probes_on(&base) {
        Ok(probes) => probes,
        Err(e) => {
            source.stop().await;
            return Err(e.into());
        }
    };
    let client = crate::backends::client_with_timeout(Duration::from_secs(10));
    let live = check_get(&client, &format!("{base}/health/live"), "live", None).await;
    let target_down = !live.ok && live.got.starts_with("no answer");
    let mut checks = vec![live];
    let mut correlation_id = None;
    if !target_down {
        checks.push(check_get(&client, &format!("{base}/health/ready"), "ready", Some("ready")).await);
        let id = format!("smoke-{:08x}", rand::random::<u32>());
        correlation_id = Some(id.clone());
        checks.extend(check_journey(&client, &source, id, plan.wait, &interrupt).await);
        checks.extend(check_probes(&probes).await);
    }
    source.stop().await;
    let report = SmokeReport {
        schema_version: 1,
        target: args.target.clone().unwrap_or_else(|| "embedded recordstore".into()),
        passed: checks.iter().all(|c| c.ok),
        checks,
        correlation_id,
    };
    let mut delivery = Delivery::default();
    delivery.show(&render(&report), &report, args.json.as_deref());
    delivery.file("JUnit", args.junit.as_deref(), || junit(&report));
    let outcome = if interrupt.is_cancelled() {
        Outcome::Interrupted
    } else if target_down {
        let cause = report.checks[0].got.trim_start_matches("no answer: ");
        eprintln!("recordctl smoke: {}", crate::backends::target_unreachable(&base, cause));
        Outcome::Unreachable
    } else {
        Outcome::checks(report.passed)
    };
    delivery.conclude(outcome)
}

/// The journey (browse, view, checkout, order completed) and, when its order was placed, its
/// telemetry in all three pillars.
async fn check_journey(
    client: &reqwest::Client,
    source: &TraceSource,
    correlation_id: String,
    wait: Duration,
    interrupt: &CancellationToken,
) -> Vec<SmokeCheck> {
    let started = Instant::now();
    let journey = Journey {
        client,
        base: &source.base,
        correlation_id,
        wait,
    }
    .run()
    .await;
    let mut checks = vec![SmokeCheck {
        name: "journey: browse, view, checkout, order completed".into(),
        ok: journey.succeeded(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        expected: format!("order completed within {wait:?}"),
        got: match (&journey.order_id, journey.outcome.as_str()) {
            (Some(id), "completed") => format!("order {id} completed in {:.0} ms", journey.end_to_end_ms),
            (Some(id), "timeout") => format!(
                "order {id} not finished after {wait:?}{} (is the worker running?)",
                journey.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
            (_, outcome) => format!("{outcome}: {}", journey.detail.clone().unwrap_or_default()),
        },
    }];
    if journey.order_id.is_none() || interrupt.is_cancelled() {
        return checks;
    }
    let started = Instant::now();
    if let Some(t) = source.collect(&journey.subject(), journey.since_ns(), wait).await {
        let missing = t.missing();
        checks.push(SmokeCheck {
            name: "journey telemetry: trace, log lines, metrics".into(),
            ok: t.complete() && t.unreachable.is_empty(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            expected: "the journey's spans (api and worker), its log lines and its metrics".into(),
            got: if missing.is_empty() && t.unreachable.is_empty() {
                format!(
                    "{} spans, {} log lines, {} metric samples",
                    t.spans.len(),
                    t.logs.len(),
                    t.metrics.len()
                )
            } else {
                let mut got = missing.join("; ");
                if !t.unreachable.is_empty() {
                    let _ = write!(got, " unreachable: {}", t.unreachable.join(", "));
                }
                got
            },
        });
    }
    checks
}

/// The probes file's probes, one check each.
async fn check_probes(probes: &[crate::probe::spec::ProbeSpec]) -> Vec<SmokeCheck> {
    let mut checks = Vec::new();
    for result in crate::probe::run_all(probes).await {
        checks.push(SmokeCheck {
            name: format!("probe {}", result.name),
            ok: result.success,
            duration_ms: result.duration_s * 1000.0,
            expected: format!("{} succeeds", result.target),
            got: result.failure.clone().unwrap_or_else(|| {
                if result.kind == "http" {
                    format!("{} in {:.1} ms", result.status_code, result.duration_s * 1000.0)
                } else {
                    format!("connected in {:.1} ms", result.duration_s * 1000.0)
                }
            }),
        });
    }
    checks
}

async fn check_get(client: &reqwest::Client, url: &str, name: &str, status_field: Option<&str>) -> SmokeCheck {
    let started = Instant::now();
    let expected = match status_field {
        Some(value) => format!("GET {url} answers 200 with status {value:?}"),
        None => format!("GET {url} answers 200"),
    };
    let (ok, got) = match client.get(url).send().await {
        Err(e) => (false, format!("no answer: {}", crate::backends::error_chain(&e))),
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let field = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string));
            let ok = status == 200 && status_field.is_none_or(|want| field.as_deref() == Some(want));
            // A passing check says what it saw in a few words; a failing one keeps the start
            // of the body, which says why.
            let got = match (&field, ok) {
                (Some(field), true) => format!("{status}, status {field:?}"),
                (None, true) => status.to_string(),
                (_, false) => format!("{status} {}", body.chars().take(200).collect::<String>()),
            };
            (ok, got)
        }
    };
    SmokeCheck {
        name: name.into(),
        ok,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        expected,
        got,
    }
}

pub fn render(report: &SmokeReport) -> String {
    let mut table = crate::output::table();
    table.set_header(["check", "result", "time", "detail"]);
    for c in &report.checks {
        table.add_row([
            c.name.clone(),
            if c.ok { "ok".into() } else { "FAIL".into() },
            format!("{:.0} ms", c.duration_ms),
            if c.ok {
                c.got.clone()
            } else {
                format!("expected {}; got {}", c.expected, c.got)
            },
        ]);
    }
    format!(
        "smoke against {}: {}\n{table}\n",
        report.target,
        if report.passed { "PASSED" } else { "FAILED" }
    )
}

/// One JUnit test case per check; a failure says what was expected and what came.
pub fn junit(report: &SmokeReport) -> String {
    let cases: Vec<crate::junit::Case> = report
        .checks
        .iter()
        .map(|c| crate::junit::Case {
            name: c.name.clone(),
            seconds: Some(c.duration_ms / 1000.0),
            failure: (!c.ok).then(|| format!("expected {}; got {}", c.expected, c.got)),
        })
        .collect();
    crate::junit::render(
        "recordctl smoke",
        &format!("smoke {}", report.target),
        "recordctl.smoke",
        &cases,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> SmokeArgs {
        let words: Vec<&str> = std::iter::once("smoke").chain(extra.iter().copied()).collect();
        match crate::cli::parse_for_test(&words) {
            crate::cli::Command::Smoke(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_plan_takes_the_wait_and_the_built_in_probes() {
        let plan = SmokePlan::from_args(&args(&["--wait", "5s"])).unwrap();
        assert_eq!(plan.wait, Duration::from_secs(5));
        assert_eq!(plan.probes.1, "probes.toml (built in)");
        let probes = plan.probes_on("http://10.0.0.1:9000").unwrap();
        assert!(!probes.is_empty());
    }

    #[test]
    fn a_bad_wait_or_probes_file_stops_before_anything_starts() {
        let e = SmokePlan::from_args(&args(&["--wait", "soon"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--wait:"), "{e}");
        let e = SmokePlan::from_args(&args(&["--probes", "/nonexistent/probes.toml"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read /nonexistent/probes.toml"), "{e}");
        let dir = std::env::temp_dir().join(format!("recordctl-smoke-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("probes.toml");
        std::fs::write(&file, "[[probe]]\nname = \"x\"\nkind = \"nope\"\n").unwrap();
        let e = SmokePlan::from_args(&args(&["--probes", file.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("probes.toml"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
