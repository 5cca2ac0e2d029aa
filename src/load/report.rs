//! The load-test report: data first (a versioned serde struct), rendered as a table for
//! people or JSON for machines. Renderers never compute; `build` does.

use std::collections::BTreeMap;

use comfy_table::{Cell, CellAlignment};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::exit::Outcome;
use crate::load::RunOutcome;
use crate::traffic::open::ScheduleReport;
use crate::traffic::stats::RequestRecord;
use crate::traffic::threshold::{Measured, Threshold, Verdict, format_us};

/// 2: `schedule.target_rate_rps` became `target_rate_tps` (transactions, not requests);
/// unsent arrivals are errors, not requests.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
        LatencySummary {
            count: h.len(),
            min_us: if h.is_empty() { 0 } else { h.min() },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            p50_us: q(0.50),
            p90_us: q(0.90),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamedSummary {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecondReport {
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    pub schema_version: u32,
    pub run_id: String,
    /// `K/N` when this run was one shard of a load split between N processes.
    #[serde(default)]
    pub shard: Option<String>,
    pub model: String,
    pub target: String,
    pub scenario: Option<String>,
    pub started_at: String,
    pub duration_s: f64,
    pub interrupted: bool,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub throughput_rps: f64,
    /// From the intended send time (open model: coordinated-omission-corrected).
    pub latency: LatencySummary,
    /// From the actual send time; differs from `latency` in the open model only.
    pub service_time: LatencySummary,
    pub per_request: Vec<NamedSummary>,
    pub status_codes: BTreeMap<String, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    pub schedule: Option<ScheduleReport>,
    pub timeline: Vec<SecondReport>,
    pub slowest: Vec<RequestRecord>,
    pub failed: Vec<RequestRecord>,
    pub thresholds: Vec<Verdict>,
}

pub struct ReportContext<'a> {
    pub run_id: &'a str,
    pub shard: Option<String>,
    pub model: &'a str,
    pub target: &'a str,
    pub scenario: Option<&'a str>,
    pub started_at: String,
    pub thresholds: &'a [Threshold],
}

pub fn build(ctx: &ReportContext<'_>, outcome: &RunOutcome) -> LoadReport {
    let s = &outcome.stats;
    let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
    let latency = LatencySummary::of(&s.latency);
    let measured = Measured {
        requests: s.requests,
        unsent: s.unsent,
        errors: s.failures,
        rps: s.requests as f64 / seconds,
        min_us: latency.min_us as f64,
        max_us: latency.max_us as f64,
        mean_us: latency.mean_us,
    };
    let service_time = if s.service.is_empty() {
        latency.clone()
    } else {
        LatencySummary::of(&s.service)
    };
    let percentile = |q: f64| {
        if s.latency.is_empty() {
            0.0
        } else {
            s.latency.value_at_quantile(q / 100.0) as f64
        }
    };
    LoadReport {
        schema_version: SCHEMA_VERSION,
        run_id: ctx.run_id.to_string(),
        shard: ctx.shard.clone(),
        model: ctx.model.to_string(),
        target: ctx.target.to_string(),
        scenario: ctx.scenario.map(str::to_string),
        started_at: ctx.started_at.clone(),
        duration_s: outcome.elapsed.as_secs_f64(),
        interrupted: outcome.interrupted,
        requests: s.requests,
        errors: s.failures,
        error_rate: if s.attempts() == 0 {
            0.0
        } else {
            s.failures as f64 / s.attempts() as f64
        },
        throughput_rps: measured.rps,
        latency,
        service_time,
        per_request: s
            .per_name
            .iter()
            .map(|(name, n)| NamedSummary {
                name: name.clone(),
                requests: n.requests,
                errors: n.errors,
                latency: LatencySummary::of(&n.latency),
            })
            .collect(),
        status_codes: s.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        error_kinds: s.errors.iter().map(|(k, v)| (k.label(), *v)).collect(),
        schedule: outcome.schedule.clone(),
        timeline: s
            .timeline
            .iter()
            .enumerate()
            .map(|(i, sec)| SecondReport {
                second: i as u64,
                requests: sec.requests,
                errors: sec.errors,
                p50_us: if sec.latency.is_empty() {
                    0
                } else {
                    sec.latency.value_at_quantile(0.5)
                },
                p99_us: if sec.latency.is_empty() {
                    0
                } else {
                    sec.latency.value_at_quantile(0.99)
                },
                max_us: if sec.latency.is_empty() { 0 } else { sec.latency.max() },
            })
            .collect(),
        slowest: s.slowest.clone(),
        failed: s.failed.clone(),
        thresholds: ctx
            .thresholds
            .iter()
            .map(|t| t.evaluate(&measured, &percentile))
            .collect(),
    }
}

impl LoadReport {
    pub fn outcome(&self) -> Outcome {
        if self.interrupted {
            Outcome::Interrupted
        } else {
            Outcome::checks(self.thresholds.iter().all(|t| t.passed))
        }
    }

    pub fn verdict(&self) -> String {
        let verdict = self.threshold_verdict();
        match &self.schedule {
            Some(s) if s.generator_fell_behind() => format!(
                "{verdict} — but the generator fell behind its schedule ({} of {} arrivals handed out more \
                 than 2 ms late): latency from the intended send time includes its own delay",
                s.generator_late, s.intended
            ),
            _ => verdict,
        }
    }

    fn threshold_verdict(&self) -> String {
        let failed: Vec<_> = self.thresholds.iter().filter(|t| !t.passed).collect();
        if self.interrupted {
            "INTERRUPTED: partial results".to_string()
        } else if !failed.is_empty() {
            let list: Vec<String> = failed
                .iter()
                .map(|t| format!("{} ({})", t.threshold, t.detail))
                .collect();
            format!("FAILED: {}", list.join("; "))
        } else if self.thresholds.is_empty() {
            "DONE: no thresholds set".to_string()
        } else {
            format!("PASSED: {} threshold(s)", self.thresholds.len())
        }
    }
}

fn ms(us: u64) -> String {
    format_us(us as f64)
}

/// The human summary: run line, latency table, distributions, thresholds, verdict.
/// The open model's schedule: due, started, late, dropped; a warning when the generator
/// itself fell behind.
pub(crate) fn schedule_lines(s: &ScheduleReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "schedule: target {:.1} transactions/s{} · {} due · {} started · {} late{}{} · {} dropped{} · peak queue {}\n",
        s.target_rate_tps,
        match s.tick_us {
            Some(us) if s.tick_auto => format!(
                " in groups every {} (--tick auto at this rate; --tick 0 sends each at its own instant)",
                format_us(us as f64)
            ),
            Some(us) => format!(" in groups every {}", format_us(us as f64)),
            None => String::new(),
        },
        s.intended,
        s.started,
        s.late,
        if s.generator_late > 0 {
            format!(" ({} handed out late by the generator)", s.generator_late)
        } else {
            String::new()
        },
        if s.relieved > 0 {
            format!(
                " · {} handed out by a relief thread while the loop's was held up",
                s.relieved
            )
        } else {
            String::new()
        },
        s.dropped,
        if s.unsent_at_interrupt > 0 {
            format!(" · {} unsent at interrupt", s.unsent_at_interrupt)
        } else {
            String::new()
        },
        s.peak_queue
    ));
    if s.generator_fell_behind() {
        out.push_str(&format!(
            "WARNING: the generator fell behind: {} of {} arrivals ({:.2}%) were handed out more than 2 ms after \
             they were due, by this process (CPU or timers), not because the target was slow; their latency \
             from the intended send time includes that delay (the service-time row does not). Lower the rate, \
             or split it with --shard.\n",
            s.generator_late,
            s.intended,
            s.generator_late as f64 / s.intended.max(1) as f64 * 100.0
        ));
    }
    out
}

pub fn render_table(r: &LoadReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} model against {}{} · run {} · {:.1}s\n",
        r.model,
        r.target,
        r.scenario
            .as_deref()
            .map(|s| format!(" · scenario {s}"))
            .unwrap_or_default(),
        r.run_id,
        r.duration_s
    ));
    out.push_str(&format!(
        "{} requests · {:.1} req/s · {} errors ({:.2}%)\n",
        r.requests,
        r.throughput_rps,
        r.errors,
        r.error_rate * 100.0
    ));
    if let Some(s) = &r.schedule {
        out.push_str(&schedule_lines(s));
    }
    let mut table = crate::output::table();
    table.set_header([
        "request", "count", "errors", "min", "p50", "p90", "p95", "p99", "p99.9", "max",
    ]);
    let mut row = |name: &str, count: u64, errors: u64, l: &LatencySummary| {
        let mut cells = vec![Cell::new(name), Cell::new(count), Cell::new(errors)];
        for v in [l.min_us, l.p50_us, l.p90_us, l.p95_us, l.p99_us, l.p999_us, l.max_us] {
            cells.push(Cell::new(ms(v)).set_alignment(CellAlignment::Right));
        }
        table.add_row(cells);
    };
    for n in &r.per_request {
        row(&n.name, n.requests, n.errors, &n.latency);
    }
    row("all (from intended send)", r.requests, r.errors, &r.latency);
    if r.model == "open" {
        row("all (service time)", r.requests, r.errors, &r.service_time);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    if !r.status_codes.is_empty() {
        let codes: Vec<String> = r.status_codes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push_str(&format!("status codes: {}\n", codes.join(", ")));
    }
    if !r.error_kinds.is_empty() {
        let kinds: Vec<String> = r.error_kinds.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push_str(&format!("errors: {}\n", kinds.join(", ")));
    }
    if let Some(slow) = r.slowest.first() {
        out.push_str(&format!(
            "slowest: {} {} ({})\n",
            slow.correlation_id,
            slow.name,
            ms(slow.latency_us)
        ));
    }
    for f in r.failed.iter().take(3) {
        out.push_str(&format!(
            "failed: {} {}: {}\n",
            f.correlation_id,
            f.name,
            f.error.as_deref().unwrap_or("?")
        ));
    }
    for t in &r.thresholds {
        out.push_str(&format!(
            "{} {}: {}\n",
            if t.passed { "✓" } else { "✗" },
            t.threshold,
            t.detail
        ));
    }
    out.push_str(&r.verdict());
    out.push('\n');
    out
}
