//! `drill --html FILE`: the drill as a postmortem page. A timeline chart of the drill's own
//! traffic (requests, errors, latency per second) with the fault window shaded, each alert's
//! pending and firing time as bands, time to detect and time to recover marked; then the
//! ledger (orders, money, stock), the expected alerts met or missed, and the first failed
//! request with links to its trace and its log lines. Everything drawn is in the report: the
//! renderer only lays it out.

use std::fmt::Write;

use super::report::{DrillReport, Tick};
use crate::html::{Band, Chart, Mark, Series, escape, page_head};

/// Stretches of time: each fault held (injected → reverted), and each alert's pending and
/// firing runs as the per-second observations saw them.
pub fn bands(r: &DrillReport) -> Vec<Band> {
    let mut bands = Vec::new();
    let mut open: Option<f64> = None;
    for e in &r.timeline {
        match e.kind.as_str() {
            "fault injected" => open = Some(e.t_s),
            "fault reverted" | "revert failed" => {
                if let Some(from) = open.take() {
                    bands.push(Band {
                        from,
                        to: e.t_s,
                        color: "#ff7f0e".into(),
                        label: "fault".into(),
                        row: 0,
                        shade: true,
                    });
                }
            }
            _ => {}
        }
    }
    if let (Some(from), Some(last)) = (open, r.seconds.last()) {
        bands.push(Band {
            from,
            to: last.t_s,
            color: "#ff7f0e".into(),
            label: "fault (not reverted)".into(),
            row: 0,
            shade: true,
        });
    }
    let mut names: Vec<&str> = r
        .seconds
        .iter()
        .flat_map(|t| t.alerts.iter().filter_map(|a| a.rsplit_once(':').map(|(n, _)| n)))
        .collect();
    names.sort_unstable();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        for state in ["pending", "firing"] {
            let wanted = format!("{name}:{state}");
            for (from, to) in runs(&r.seconds, |t| t.alerts.contains(&wanted)) {
                bands.push(Band {
                    from,
                    to,
                    color: if state == "firing" { "#d62728" } else { "#e6b800" }.into(),
                    label: format!("{name} {state}"),
                    row: i + 1,
                    shade: false,
                });
            }
        }
    }
    bands
}

/// Runs of consecutive seconds for which `holds` is true, as (start, end) in seconds into the
/// drill; a one-second run spans the second before its tick.
fn runs(ticks: &[Tick], holds: impl Fn(&Tick) -> bool) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start: Option<f64> = None;
    let mut last = 0.0;
    for t in ticks {
        if holds(t) {
            start.get_or_insert(t.t_s - 1.0);
            last = t.t_s;
        } else if let Some(from) = start.take() {
            out.push((from, last));
        }
    }
    if let Some(from) = start {
        out.push((from, last));
    }
    out
}

/// Detected (the first expected alert reaching its state) and recovered.
pub fn marks(r: &DrillReport) -> Vec<Mark> {
    let mut marks = Vec::new();
    let fault = r.timeline.iter().find(|e| e.kind == "fault injected").map(|e| e.t_s);
    if let (Some(fault), Some(ttd)) = (fault, r.time_to_detect_s) {
        marks.push(Mark {
            at: fault + ttd,
            label: format!("detected +{ttd:.0}s"),
            color: "#d62728",
        });
    }
    if let Some(e) = r.timeline.iter().find(|e| e.kind == "recovered") {
        marks.push(Mark {
            at: e.t_s,
            label: format!(
                "recovered{}",
                r.time_to_recover_s.map(|s| format!(" +{s:.0}s")).unwrap_or_default()
            ),
            color: "#2ca02c",
        });
    }
    marks
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into())
}

pub fn render(r: &DrillReport) -> String {
    let mut page = page_head(&format!("recordctl drill {}", r.drill));
    summary(&mut page, r);
    charts(&mut page, r);
    alerts(&mut page, r);
    ledger(&mut page, r);
    timeline(&mut page, r);
    page.push_str("</body></html>\n");
    page
}

/// The verdict, the failures, the headline measures.
fn summary(page: &mut String, r: &DrillReport) {
    let verdict_class = if r.passed { "pass" } else { "fail" };
    let _ = write!(
        page,
        "<h1>Drill {}</h1><p>{} · project {} · target {}</p><p class=\"{verdict_class}\"><strong>{}</strong></p>",
        escape(&r.drill),
        escape(&r.file),
        escape(&r.project),
        escape(&r.target),
        escape(&r.verdict.to_uppercase())
    );
    if !r.failures.is_empty() {
        page.push_str("<ul class=\"fail\">");
        for f in &r.failures {
            let _ = write!(page, "<li>{}</li>", escape(f));
        }
        page.push_str("</ul>");
    }
    page.push_str("<table><tr><th>measure</th><th>value</th></tr>");
    for (what, value) in [
        ("time to detect (fault → expected alert)", secs(r.time_to_detect_s)),
        ("first error after the fault", secs(r.first_error_after_s)),
        ("time to recover (revert → steady state)", secs(r.time_to_recover_s)),
        ("impact (fault → steady state)", secs(r.impact_s)),
    ] {
        let _ = write!(page, "<tr><td>{what}</td><td>{}</td></tr>", escape(&value));
    }
    if let Some(p) = &r.probe_latency {
        let _ = write!(
            page,
            "<tr><td>readiness probe p50 (baseline → fault)</td><td>{:.1} ms → {:.1} ms ({:+.1} ms)</td></tr>",
            p.baseline_p50_ms, p.fault_p50_ms, p.extra_ms
        );
    }
    page.push_str("</table>");
}

/// Probe latency, throughput and errors second by second, the fault and the alerts marked.
fn charts(page: &mut String, r: &DrillReport) {
    let (bands, marks) = (bands(r), marks(r));
    let seconds_fmt = |v: f64| format!("{v:.0}s");
    let count_fmt = |v: f64| format!("{v:.0}");
    let ms_fmt = |v: f64| format!("{v:.0} ms");
    let traffic = r.traffic.as_ref();
    let per_second = |f: &dyn Fn(&super::report::TrafficSecond) -> f64| -> Vec<(f64, f64)> {
        traffic
            .map(|t| t.seconds.iter().map(|s| (s.t_s, f(s))).collect())
            .unwrap_or_default()
    };
    let mut throughput = vec![
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
    ];
    if traffic.is_none() {
        // No traffic of its own: the readiness probe's failures per second stand in.
        throughput = vec![Series {
            name: "readiness failures",
            color: "#d62728",
            points: r
                .seconds
                .iter()
                .map(|t| (t.t_s, f64::from(u8::from(t.probe_status != Some(200)))))
                .collect(),
            dashed: false,
        }];
    }
    page.push_str(
        &Chart {
            title: "Requests and errors per second, the fault and the alerts",
            x_label: "seconds into the drill",
            series: throughput,
            bands: bands.clone(),
            marks: marks.clone(),
            y_fmt: &count_fmt,
            x_fmt: &seconds_fmt,
            log_x: false,
        }
        .render(),
    );
    page.push_str(
        &Chart {
            title: "Latency per second (the drill's traffic) and the readiness probe",
            x_label: "seconds into the drill",
            series: vec![
                Series {
                    name: "p95",
                    color: "#d62728",
                    points: per_second(&|s| s.p95_ms),
                    dashed: false,
                },
                Series {
                    name: "p50",
                    color: "#1f77b4",
                    points: per_second(&|s| s.p50_ms),
                    dashed: false,
                },
                Series {
                    name: "readiness probe",
                    color: "#7f7f7f",
                    points: r.seconds.iter().map(|t| (t.t_s, t.probe_ms)).collect(),
                    dashed: true,
                },
            ],
            bands,
            marks,
            y_fmt: &ms_fmt,
            x_fmt: &seconds_fmt,
            log_x: false,
        }
        .render(),
    );
}

/// Each expected alert: when it went pending, firing, and reached Alertmanager; the unexpected ones.
fn alerts(page: &mut String, r: &DrillReport) {
    if !r.alerts.is_empty() {
        page.push_str("<h2>Expected alerts</h2><table><tr><th>alert</th><th>state</th><th>within</th><th>pending after</th><th>firing after</th><th>at Alertmanager after</th><th>met</th></tr>");
        for a in &r.alerts {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{:?}</td><td>{:.0} s</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                escape(&a.name),
                a.state,
                a.within_s,
                secs(a.pending_after_s),
                secs(a.firing_after_s),
                secs(a.alertmanager_after_s),
                if a.met { "pass" } else { "fail" },
                if a.met { "met" } else { "missed" }
            );
        }
        page.push_str("</table>");
    }
    if !r.unexpected_alerts.is_empty() {
        let _ = write!(
            page,
            "<p>Alerts the drill did not expect: {}</p>",
            escape(&r.unexpected_alerts.join(", "))
        );
    }
}

/// The checkout ledger, money and stock.
fn ledger(page: &mut String, r: &DrillReport) {
    if let Some(l) = &r.ledger {
        page.push_str("<h2>Ledger</h2><table><tr><th>orders</th><th>count</th></tr>");
        for (what, n) in [
            ("acknowledged (202)", l.acknowledged),
            ("completed", l.completed),
            ("failed", l.failed),
            ("lost", l.lost.len()),
            ("duplicated", l.duplicated.len()),
            ("unfinished", l.unfinished.len()),
            ("refused", l.refused),
            ("refused but ordered", l.refused_but_ordered.len()),
            ("unanswered", l.unanswered),
            ("unverifiable", l.unverifiable.len()),
        ] {
            let _ = write!(page, "<tr><td>{what}</td><td>{n}</td></tr>");
        }
        page.push_str("</table>");
        if let Some(a) = &l.audit {
            let _ = write!(page, "<p>Money and stock ({}):</p><table>", escape(&a.source));
            if let Some(m) = &a.money {
                let cents = |c: i64| format!("{:.2}", c as f64 / 100.0);
                let _ = write!(
                    page,
                    "<tr><td>charges</td><td>{} ({})</td></tr><tr><td>refunds</td><td>{} ({})</td></tr>\
                     <tr><td>net charged</td><td>{}</td></tr><tr><td>value of completed orders</td><td>{}</td></tr>",
                    m.charges,
                    cents(m.charged_cents),
                    m.refunds,
                    cents(m.refunded_cents),
                    cents(m.net_cents),
                    cents(m.completed_cents)
                );
            }
            if let Some(s) = &a.stock {
                let _ = write!(
                    page,
                    "<tr><td>stock at the start</td><td>{}</td></tr><tr><td>on the shelf + held by orders</td><td>{} + {}</td></tr>",
                    s.initial, s.on_hand, s.held
                );
            }
            let _ = write!(
                page,
                "<tr><td>violations</td><td class=\"{}\">{}</td></tr></table>",
                if a.violations.is_empty() { "pass" } else { "fail" },
                a.violations.len()
            );
            for v in a.violations.iter().take(20) {
                let _ = write!(page, "<p class=\"fail\">{}: {}</p>", escape(&v.kind), escape(&v.detail));
            }
        }
    }
}

/// The first failed request, the timeline of events, what was restored.
fn timeline(page: &mut String, r: &DrillReport) {
    let traffic = r.traffic.as_ref();
    if let Some(f) = traffic.and_then(|t| t.first_failed.as_ref()) {
        let _ = write!(
            page,
            "<h2>First failed request</h2><table><tr><td>correlation id</td><td class=\"l\"><code>{}</code></td></tr>\
             <tr><td>request</td><td class=\"l\">{}</td></tr><tr><td>when</td><td class=\"l\">{:.1} s into the drill</td></tr>\
             <tr><td>answer</td><td class=\"l\">{}</td></tr></table>\
             <p><a id=\"trace-link\" href=\"{}\">its trace in Jaeger</a> · <a id=\"logs-link\" href=\"{}\">its log lines in Grafana (Loki)</a></p>",
            escape(&f.correlation_id),
            escape(&f.request),
            f.t_s,
            escape(&match f.status {
                Some(status) => format!("{status} {}", f.error),
                None => f.error.clone(),
            }),
            escape(&f.trace_url),
            escape(&f.logs_url)
        );
    }
    page.push_str("<h2>Timeline</h2><table><tr><th>t</th><th>event</th><th>detail</th></tr>");
    for e in &r.timeline {
        let _ = write!(
            page,
            "<tr><td>{:.1} s</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            e.t_s,
            escape(&e.kind),
            escape(&e.detail)
        );
    }
    page.push_str("</table>");
    if !r.restored.is_empty() {
        page.push_str("<h2>Restored</h2><ul>");
        for x in &r.restored {
            let _ = write!(
                page,
                "<li class=\"{}\">{}{}</li>",
                if x.ok { "pass" } else { "fail" },
                escape(&x.what),
                if x.ok {
                    String::new()
                } else {
                    format!(": {}", escape(&x.error))
                }
            );
        }
        page.push_str("</ul>");
    }
}
