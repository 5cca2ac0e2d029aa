//! A self-contained HTML report: summary, thresholds, and inline SVG charts (latency over
//! time, throughput over time, latency by percentile). No scripts, no network.

use std::fmt::Write;

use crate::html::{Chart, Series, escape, page_head};
use crate::load::report::LoadReport;
use crate::traffic::threshold::format_us;

pub fn render(r: &LoadReport) -> String {
    let mut page = page_head(&format!("recordctl load-test {}", r.run_id));
    summary(&mut page, r);
    answers(&mut page, r);
    over_time(&mut page, r);
    percentiles(&mut page, r);
    requests(&mut page, r);
    page.push_str("</body></html>\n");
    page
}

/// The run, its verdict, the latency table, the thresholds.
fn summary(page: &mut String, r: &LoadReport) {
    let _ = write!(
        page,
        "<h1>Load test {}</h1><p>{} model against {}{} · started {} · {:.1}s · {} requests · {:.1} req/s · {} errors ({:.2}%)</p>",
        escape(&r.run_id),
        escape(&r.model),
        escape(&r.target),
        r.scenario
            .as_deref()
            .map(|s| format!(" · scenario {}", escape(s)))
            .unwrap_or_default(),
        escape(&r.started_at),
        r.duration_s,
        r.requests,
        r.throughput_rps,
        r.errors,
        r.error_rate * 100.0
    );
    if let Some(schedule) = &r.schedule {
        // The open model's schedule: due, started, late, dropped, its tick, and the warning
        // when the generator fell behind — as the table on stdout says them.
        let lines: Vec<String> = crate::load::report::schedule_lines(schedule)
            .lines()
            .map(escape)
            .collect();
        let _ = write!(page, "<p class=\"schedule\">{}</p>", lines.join("<br>"));
    }
    let verdict_class = if r.thresholds.iter().all(|t| t.passed) && !r.interrupted {
        "pass"
    } else {
        "fail"
    };
    let _ = write!(
        page,
        "<p class=\"{verdict_class}\"><strong>{}</strong></p>",
        escape(&r.verdict())
    );
    page.push_str("<table><tr><th>request</th><th>count</th><th>errors</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    let mut rows: Vec<(&str, u64, u64, &crate::load::report::LatencySummary)> = r
        .per_request
        .iter()
        .map(|n| (n.name.as_str(), n.requests, n.errors, &n.latency))
        .collect();
    rows.push(("all (from intended send)", r.requests, r.errors, &r.latency));
    for (name, count, errors, l) in rows {
        let _ = write!(page, "<tr><td>{}</td><td>{count}</td><td>{errors}</td>", escape(name));
        for v in [l.p50_us, l.p90_us, l.p95_us, l.p99_us, l.p999_us, l.max_us] {
            let _ = write!(page, "<td>{}</td>", format_us(v as f64));
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
    if !r.thresholds.is_empty() {
        page.push_str("<h2>Thresholds</h2><ul>");
        for t in &r.thresholds {
            let _ = write!(
                page,
                "<li class=\"{}\">{} {}: {}</li>",
                if t.passed { "pass" } else { "fail" },
                if t.passed { "✓" } else { "✗" },
                escape(&t.threshold),
                escape(&t.detail)
            );
        }
        page.push_str("</ul>");
    }
}

/// Status codes and errors by kind, with their share of every request.
fn answers(page: &mut String, r: &LoadReport) {
    if !r.status_codes.is_empty() || !r.error_kinds.is_empty() {
        page.push_str("<h2>Status codes and errors</h2><table><tr><th>answer</th><th>count</th><th>share</th></tr>");
        let total = (r.requests + r.schedule.as_ref().map_or(0, |s| s.dropped)).max(1) as f64;
        let rows = r
            .status_codes
            .iter()
            .map(|(code, n)| (format!("status {code}"), *n))
            .chain(r.error_kinds.iter().map(|(kind, n)| (format!("error: {kind}"), *n)));
        for (what, n) in rows {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{n}</td><td>{:.2}%</td></tr>",
                escape(&what),
                n as f64 / total * 100.0
            );
        }
        page.push_str("</table>");
    }
}

/// Throughput, errors and latency second by second.
fn over_time(page: &mut String, r: &LoadReport) {
    let ms = |v: f64| format!("{v:.1} ms");
    let seconds_fmt = |v: f64| format!("{v:.0}s");
    let seconds: Vec<f64> = r.timeline.iter().map(|s| s.second as f64).collect();
    let per_second = |f: &dyn Fn(&crate::load::report::SecondReport) -> f64| -> Vec<(f64, f64)> {
        seconds.iter().copied().zip(r.timeline.iter().map(f)).collect()
    };
    page.push_str(
        &Chart {
            title: "Latency over time",
            x_label: "seconds into the run",
            series: vec![
                Series {
                    name: "p50",
                    color: "#1f77b4",
                    points: per_second(&|s| s.p50_us as f64 / 1000.0),
                    dashed: false,
                },
                Series {
                    name: "p99",
                    color: "#d62728",
                    points: per_second(&|s| s.p99_us as f64 / 1000.0),
                    dashed: false,
                },
                Series {
                    name: "max",
                    color: "#999999",
                    points: per_second(&|s| s.max_us as f64 / 1000.0),
                    dashed: true,
                },
            ],
            bands: Vec::new(),
            marks: Vec::new(),
            y_fmt: &ms,
            x_fmt: &seconds_fmt,
            log_x: false,
        }
        .render(),
    );
    page.push_str(
        &Chart {
            title: "Throughput and errors per second",
            x_label: "seconds into the run",
            series: vec![
                Series {
                    name: "requests/s",
                    color: "#2ca02c",
                    points: per_second(&|s| s.requests as f64),
                    dashed: false,
                },
                Series {
                    name: "errors/s",
                    color: "#d62728",
                    points: per_second(&|s| s.errors as f64),
                    dashed: false,
                },
            ],
            bands: Vec::new(),
            marks: Vec::new(),
            y_fmt: &|v| format!("{v:.0}"),
            x_fmt: &seconds_fmt,
            log_x: false,
        }
        .render(),
    );
}

/// The latency distribution on HdrHistogram's log scale.
fn percentiles(page: &mut String, r: &LoadReport) {
    let ms = |v: f64| format!("{v:.1} ms");
    let l = &r.latency;
    let pct = |v: u64| v as f64 / 1000.0;
    let mut percentile_series = vec![Series {
        name: "from intended send",
        color: "#d62728",
        dashed: false,
        points: vec![
            (50.0, pct(l.p50_us)),
            (90.0, pct(l.p90_us)),
            (95.0, pct(l.p95_us)),
            (99.0, pct(l.p99_us)),
            (99.9, pct(l.p999_us)),
            (99.99, pct(l.max_us)),
        ],
    }];
    if r.model == "open" {
        let s = &r.service_time;
        percentile_series.push(Series {
            name: "service time",
            color: "#1f77b4",
            dashed: false,
            points: vec![
                (50.0, pct(s.p50_us)),
                (90.0, pct(s.p90_us)),
                (95.0, pct(s.p95_us)),
                (99.0, pct(s.p99_us)),
                (99.9, pct(s.p999_us)),
                (99.99, pct(s.max_us)),
            ],
        });
    }
    // Percentiles on a log scale of 1/(1-p), the usual HdrHistogram plot.
    for s in &mut percentile_series {
        for p in &mut s.points {
            p.0 = 1.0 / (1.0 - p.0 / 100.0);
        }
    }
    page.push_str(
        &Chart {
            title: "Latency by percentile (50 → 90 → 99 → 99.9 → max)",
            x_label: "percentile (log scale of 1/(1−p))",
            series: percentile_series,
            bands: Vec::new(),
            marks: Vec::new(),
            y_fmt: &ms,
            x_fmt: // The axis holds 1/(1−p): label it with p again.
        &|x| match 100.0 - 100.0 / x {
            p if p > 99.95 => "max".to_string(),
            p => format!("p{}", format!("{p:.1}").trim_end_matches(".0")),
        },
            log_x: true,
        }
        .render(),
    );
}

/// The slowest requests and the failed ones, each with its correlation id.
fn requests(page: &mut String, r: &LoadReport) {
    if !r.slowest.is_empty() {
        page.push_str("<h2>Slowest requests</h2><table><tr><th>correlation id</th><th>request</th><th>latency</th><th>status</th></tr>");
        for s in &r.slowest {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.correlation_id),
                escape(&s.name),
                format_us(s.latency_us as f64),
                s.status.map(|v| v.to_string()).unwrap_or_default()
            );
        }
        page.push_str("</table>");
    }
    if !r.failed.is_empty() {
        page.push_str("<h2>Failed requests</h2><table><tr><th>correlation id</th><th>request</th><th>error</th></tr>");
        for f in &r.failed {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                escape(&f.correlation_id),
                escape(&f.name),
                escape(f.error.as_deref().unwrap_or(""))
            );
        }
        page.push_str("</table>");
    }
}
