//! `journey --html FILE`: the journey as a waterfall. One row per client step and per span
//! (indented under its parent), bars on one time axis, the journey's log lines as marks at
//! their times on the row of the span that wrote them, then the log lines, the pillar
//! verdicts and the verdict. Self-contained: inline SVG, no scripts.

use std::fmt::Write;

use super::JourneyReport;
use super::steps::JourneyResult;
use crate::correlate::pillars::Telemetry;
use crate::correlate::timeline::span_tree;
use crate::html::{escape, page_head};
use crate::units::parse_rfc3339_nanos;

struct Row {
    label: String,
    depth: usize,
    start: u128,
    end: u128,
    color: &'static str,
    id: String,
    title: String,
}

fn rows(j: &JourneyResult, t: Option<&Telemetry>) -> Vec<Row> {
    let mut rows: Vec<Row> = j
        .steps
        .iter()
        .map(|s| Row {
            label: format!("client {}", s.name),
            depth: 0,
            start: s.started_unix_nanos,
            end: s.started_unix_nanos + (s.duration_ms.max(0.0) * 1e6) as u128,
            color: "#1f77b4",
            id: s.client_span_id.clone(),
            title: format!(
                "{} {} → {} in {:.2} ms",
                s.method,
                s.path,
                s.status.map(|v| v.to_string()).unwrap_or_else(|| "no answer".into()),
                s.duration_ms
            ),
        })
        .collect();
    if let Some(t) = t {
        let tree = span_tree(&j.client_rows(), t);
        for s in &tree.spans {
            rows.push(Row {
                label: format!("{} {}", s.service, s.name),
                depth: tree.depth_of.get(&s.span_id).copied().unwrap_or(1),
                start: s.start_unix_nanos,
                end: s.end_unix_nanos.max(s.start_unix_nanos),
                color: if s.status == "error" {
                    "#d62728"
                } else if s.service.contains("worker") {
                    "#9467bd"
                } else {
                    "#2ca02c"
                },
                id: s.span_id.clone(),
                title: format!(
                    "{} · {} · {:.2} ms{}",
                    s.service,
                    s.name,
                    s.duration().as_secs_f64() * 1000.0,
                    if s.status == "error" { " · error" } else { "" }
                ),
            });
        }
    }
    // Time order, as the text timeline; a parent starts before its children.
    rows.sort_by_key(|r| r.start);
    rows
}

struct LogMark {
    at: u128,
    span: Option<String>,
    level: String,
    service: String,
    message: String,
}

fn log_marks(t: Option<&Telemetry>) -> Vec<LogMark> {
    let field = |l: &serde_json::Map<String, serde_json::Value>, k: &str| {
        l.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    let mut marks: Vec<LogMark> = t
        .map(|t| {
            t.logs
                .iter()
                .map(|l| LogMark {
                    at: l
                        .get("timestamp")
                        .and_then(|v| v.as_str())
                        .and_then(parse_rfc3339_nanos)
                        .unwrap_or(0),
                    span: l.get("span_id").and_then(|v| v.as_str()).map(str::to_string),
                    level: field(l, "level"),
                    service: field(l, "service"),
                    message: field(l, "message"),
                })
                .collect()
        })
        .unwrap_or_default();
    marks.sort_by_key(|m| m.at);
    marks
}

fn waterfall(rows: &[Row], logs: &[LogMark]) -> String {
    let (w, label_w, row_h, top, right) = (780.0, 300.0, 20.0, 30.0, 30.0);
    let first = rows.iter().map(|r| r.start).min().unwrap_or(0);
    let last = rows
        .iter()
        .map(|r| r.end)
        .chain(logs.iter().map(|l| l.at).filter(|at| *at >= first))
        .max()
        .unwrap_or(first)
        .max(first + 1);
    let span_ms = (last - first) as f64 / 1e6;
    let x = |at: u128| label_w + (at.saturating_sub(first)) as f64 / 1e6 / span_ms * (w - label_w - right);
    let unplaced = logs
        .iter()
        .any(|l| l.span.as_ref().is_none_or(|s| !rows.iter().any(|r| &r.id == s)));
    let n = rows.len() + usize::from(unplaced);
    let h = top + n as f64 * row_h + 30.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>Waterfall: client steps, spans and log lines</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#
    );
    // Time axis: five ticks across the journey.
    for i in 0..=4 {
        let ms = span_ms * f64::from(i) / 4.0;
        let tx = label_w + f64::from(i) / 4.0 * (w - label_w - right);
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{:.1}" font-size="10" text-anchor="middle">{ms:.1} ms</text>"##,
            top - 4.0,
            h - 24.0,
            h - 10.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let (x0, x1) = (x(r.start), x(r.end));
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text><rect class="span" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
            4.0 + r.depth as f64 * 12.0,
            y + 14.0,
            escape(&truncate(&r.label, 40)),
            y + 3.0,
            (x1 - x0).max(1.5),
            row_h - 6.0,
            r.color,
            escape(&r.title)
        );
    }
    if unplaced {
        let _ = write!(
            svg,
            r#"<text x="4" y="{:.1}" font-size="11">log lines without a span</text>"#,
            top + rows.len() as f64 * row_h + 14.0
        );
    }
    for l in logs.iter().filter(|l| l.at >= first) {
        let row = l
            .span
            .as_ref()
            .and_then(|s| rows.iter().position(|r| &r.id == s))
            .unwrap_or(rows.len());
        let (cx, cy) = (x(l.at), top + row as f64 * row_h + row_h / 2.0);
        let color = match l.level.as_str() {
            "error" => "#d62728",
            "warn" => "#e6b800",
            _ => "#333333",
        };
        let _ = write!(
            svg,
            r#"<path class="log" d="M{cx:.1} {:.1} l4 5 l-4 5 l-4 -5 z" fill="{color}"><title>{} {}: {}</title></path>"#,
            cy - 5.0,
            escape(&l.level),
            escape(&l.service),
            escape(&l.message)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

pub fn render(r: &JourneyReport) -> String {
    let mut page = page_head("recordctl journey");
    let verdict_class = if r.outcome() == crate::exit::Outcome::Passed {
        "pass"
    } else {
        "fail"
    };
    let _ = write!(
        page,
        "<h1>Journey</h1><p>target {} · {} journeys · {:.1}% completed</p>",
        escape(&r.target),
        r.journeys.len(),
        r.success_rate * 100.0
    );
    if let Some(j) = r.journeys.first() {
        let _ = write!(
            page,
            "<p>correlation id <code>{}</code> · trace <code>{}</code> · order {} · {} · {:.1} ms end to end</p>",
            escape(&j.correlation_id),
            escape(&j.trace_id),
            j.order_id.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
            escape(&j.outcome),
            j.end_to_end_ms
        );
        let telemetry = r.telemetry.as_ref();
        let (rows, logs) = (rows(j, telemetry), log_marks(telemetry));
        page.push_str(&waterfall(&rows, &logs));
        if telemetry.is_none() {
            page.push_str("<p>Client steps only: run with --trace for the store's spans and log lines.</p>");
        }
        if !logs.is_empty() {
            let first = rows.iter().map(|r| r.start).min().unwrap_or(0);
            page.push_str(
                "<h2>Log lines</h2><table><tr><th>at</th><th>level</th><th>service</th><th>message</th></tr>",
            );
            for l in &logs {
                let _ = write!(
                    page,
                    "<tr><td>{:+.1} ms</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                    (l.at as f64 - first as f64) / 1e6,
                    escape(&l.level),
                    escape(&l.service),
                    escape(&l.message)
                );
            }
            page.push_str("</table>");
        }
    }
    if let Some(t) = &r.telemetry {
        page.push_str("<h2>Pillars</h2><table><tr><th>pillar</th><th>complete</th><th>detail</th></tr>");
        for p in &t.pillars {
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td class=\"l\">{}</td></tr>",
                escape(&p.pillar),
                if p.complete { "pass" } else { "fail" },
                if p.complete { "✓" } else { "✗" },
                escape(&p.detail)
            );
        }
        page.push_str("</table>");
    }
    let _ = writeln!(
        page,
        "<p class=\"{verdict_class}\"><strong>{}</strong></p></body></html>",
        escape(&r.verdict)
    );
    page
}
