//! A self-contained HTML report: summary, thresholds, and inline SVG charts (latency over
//! time, throughput over time, latency by percentile). No scripts, no network.

use std::fmt::Write;

use crate::load::report::LoadReport;
use crate::load::threshold::format_us;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
    /// Drawn dashed and thin, beneath the others (an envelope such as max).
    dashed: bool,
}

/// A line chart with axes and a legend, `y_unit` formatting the y tick labels.
/// X tick marks: whole numbers about a quarter of the range apart, or on a log axis the
/// points' own x values.
fn x_ticks(x_min: f64, x_max: f64, series: &[Series<'_>], log_x: bool) -> Vec<f64> {
    if log_x {
        let mut xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        return xs;
    }
    // Whole numbers (seconds), about five of them.
    let step = ((x_max - x_min) / 4.0).ceil().max(1.0);
    let mut ticks = Vec::new();
    let mut t = x_min.ceil();
    while t <= x_max + 1e-9 && ticks.len() < 12 {
        ticks.push(t);
        t += step;
    }
    ticks
}

fn line_chart(
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
    y_fmt: &dyn Fn(f64) -> String,
    x_fmt: &dyn Fn(f64) -> String,
    log_x: bool,
) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 260.0, 70.0, 40.0, 30.0, 20.0);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y_max = ys.fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#,
        escape(title)
    );
    if x_min > x_max {
        svg.push_str(r#"<text x="20" y="40">no data</text></svg></figure>"#);
        return svg;
    }
    let sx = |x: f64| {
        let (a, b, v) = if log_x {
            ((x_min).ln(), (x_max).ln(), x.ln())
        } else {
            (x_min, x_max, x)
        };
        left + if b > a { (v - a) / (b - a) } else { 0.5 } * (w - left - right)
    };
    let sy = |y: f64| h - bottom - y / y_max * (h - bottom - top);
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            w - right,
            left - 6.0,
            sy(y) + 4.0,
            escape(&y_fmt(y)),
            y0 = sy(y)
        );
    }
    for x in x_ticks(x_min, x_max, series, log_x) {
        let _ = write!(
            svg,
            r##"<line class="xtick" x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#999"/><text x="{0:.1}" y="{3:.1}" font-size="10" text-anchor="middle">{4}</text>"##,
            sx(x),
            h - bottom,
            h - bottom + 4.0,
            h - bottom + 14.0,
            escape(&x_fmt(x))
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        (left + w - right) / 2.0,
        h - 4.0,
        escape(x_label)
    );
    // Envelopes first, so that a line close to them (p99 under max) stays visible on top.
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by_key(|&i| !series[i].dashed);
    for i in order {
        let s = &series[i];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let style = if s.dashed {
            r#"stroke-width="1.5" stroke-dasharray="4 3""#
        } else {
            r#"stroke-width="2""#
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" {style} points="{}"/>"#,
            s.color,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<rect x="{}" y="8" width="10" height="10" fill="{}"/><text x="{}" y="17" font-size="11">{}</text>"#,
            left + 10.0 + i as f64 * 140.0,
            s.color,
            left + 24.0 + i as f64 * 140.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

pub fn render(r: &LoadReport) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>recordctl load-test {}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:820px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .pass{{color:#080}}.fail{{color:#b00}}figcaption{{font-weight:600;margin-top:1.5em}}</style></head><body>",
        escape(&r.run_id)
    );
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
    let ms = |v: f64| format!("{v:.1} ms");
    let seconds_fmt = |v: f64| format!("{v:.0}s");
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
    let seconds: Vec<f64> = r.timeline.iter().map(|s| s.second as f64).collect();
    let per_second = |f: &dyn Fn(&crate::load::report::SecondReport) -> f64| -> Vec<(f64, f64)> {
        seconds.iter().copied().zip(r.timeline.iter().map(f)).collect()
    };
    page.push_str(&line_chart(
        "Latency over time",
        "seconds into the run",
        &[
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
        &ms,
        &seconds_fmt,
        false,
    ));
    page.push_str(&line_chart(
        "Throughput and errors per second",
        "seconds into the run",
        &[
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
        &|v| format!("{v:.0}"),
        &seconds_fmt,
        false,
    ));
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
    page.push_str(&line_chart(
        "Latency by percentile (50 → 90 → 99 → 99.9 → max)",
        "percentile (log scale of 1/(1−p))",
        &percentile_series,
        &ms,
        // The axis holds 1/(1−p): label it with p again.
        &|x| match 100.0 - 100.0 / x {
            p if p > 99.95 => "max".to_string(),
            p => format!("p{}", format!("{p:.1}").trim_end_matches(".0")),
        },
        true,
    ));
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
    page.push_str("</body></html>\n");
    page
}
