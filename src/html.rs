//! The pieces every HTML report is made of: escaping, the page's head and style, and inline
//! SVG line charts with shaded bands (a fault window, an alert's pending and firing time) and
//! marked moments (detected, recovered). No scripts, no network: a report is one file.

use std::fmt::Write;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `<!doctype html>` up to `<body>`, with the reports' shared style.
pub fn page_head(title: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:820px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .pass{{color:#080}}.fail{{color:#b00}}figcaption{{font-weight:600;margin-top:1.5em}}\
         td.l{{text-align:left}}</style></head><body>",
        escape(title)
    )
}

pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed and thin, beneath the others (an envelope such as max).
    pub dashed: bool,
}

/// A shaded stretch of the x axis, drawn behind the lines, labelled at its top.
#[derive(Debug, Clone)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub color: String,
    pub label: String,
    /// Which of several stacked rows of the chart's top strip it is labelled in.
    pub row: usize,
    /// Also shade the plot beneath (the fault window); otherwise only its strip is drawn, so
    /// that many bands (alerts) do not drown the lines.
    pub shade: bool,
}

/// A moment on the x axis: a vertical line with a label.
#[derive(Debug, Clone)]
pub struct Mark {
    pub at: f64,
    pub label: String,
    pub color: &'static str,
}

/// A line chart with axes and a legend.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub series: Vec<Series<'a>>,
    pub bands: Vec<Band>,
    pub marks: Vec<Mark>,
    pub y_fmt: &'a dyn Fn(f64) -> String,
    pub x_fmt: &'a dyn Fn(f64) -> String,
    pub log_x: bool,
}

impl Chart<'_> {
    pub fn render(&self) -> String {
        line_chart(self)
    }
}

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

/// The chart's geometry: the SVG's size and margins, the data's ranges, and the mapping of
/// data to pixels.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    bottom: f64,
    top: f64,
    right: f64,
    x_min: f64,
    x_max: f64,
    y_max: f64,
    log_x: bool,
}

impl Frame {
    fn of(chart: &Chart<'_>) -> Frame {
        let rows = chart.bands.iter().map(|b| b.row + 1).max().unwrap_or(0);
        let strip = rows as f64 * 14.0;
        let xs = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let bounds = chart
            .bands
            .iter()
            .flat_map(|b| [b.from, b.to])
            .chain(chart.marks.iter().map(|m| m.at));
        let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (x_min, x_max) = if x_min > x_max {
            (x_min, x_max)
        } else {
            bounds.fold((x_min, x_max), |(a, b), x| (a.min(x), b.max(x)))
        };
        Frame {
            w: 760.0,
            h: 260.0 + strip,
            left: 70.0,
            bottom: 40.0,
            top: 30.0 + strip,
            right: 20.0,
            x_min,
            x_max,
            y_max: ys.fold(0.0f64, f64::max).max(1e-9) * 1.1,
            log_x: chart.log_x,
        }
    }

    fn sx(&self, x: f64) -> f64 {
        let (a, b, v) = if self.log_x {
            (self.x_min.ln(), self.x_max.ln(), x.ln())
        } else {
            (self.x_min, self.x_max, x)
        };
        self.left + if b > a { (v - a) / (b - a) } else { 0.5 } * (self.w - self.left - self.right)
    }

    fn sy(&self, y: f64) -> f64 {
        self.h - self.bottom - y / self.y_max * (self.h - self.bottom - self.top)
    }
}

fn line_chart(chart: &Chart<'_>) -> String {
    let f = Frame::of(chart);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#,
        escape(chart.title),
        w = f.w,
        h = f.h
    );
    if f.x_min > f.x_max {
        svg.push_str(r#"<text x="20" y="40">no data</text></svg></figure>"#);
        return svg;
    }
    draw_bands_and_marks(&mut svg, chart, &f);
    draw_axes(&mut svg, chart, &f);
    draw_series(&mut svg, chart, &f);
    svg.push_str("</svg></figure>");
    svg
}

/// Bands (a fault's span, shaded, with its label in the strip above) and marks (a moment: a
/// dashed line with its label).
fn draw_bands_and_marks(svg: &mut String, chart: &Chart<'_>, f: &Frame) {
    let (top, bottom, h) = (f.top, f.bottom, f.h);
    for band in &chart.bands {
        let (x0, x1) = (f.sx(band.from), f.sx(band.to.max(band.from)));
        let width = (x1 - x0).max(1.0);
        if band.shade {
            let _ = write!(
                svg,
                r#"<rect class="band" x="{x0:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{}" fill-opacity="0.15"/>"#,
                h - bottom - top,
                escape(&band.color),
            );
        }
        let _ = write!(
            svg,
            r#"<rect class="band-label" x="{x0:.1}" y="{:.1}" width="{width:.1}" height="12" fill="{}" fill-opacity="0.5"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            30.0 + band.row as f64 * 14.0,
            escape(&band.color),
            x0 + 2.0,
            40.0 + band.row as f64 * 14.0,
            escape(&band.label)
        );
    }
    for (i, mark) in chart.marks.iter().enumerate() {
        let x = f.sx(mark.at);
        let _ = write!(
            svg,
            r#"<line class="mark" x1="{x:.1}" x2="{x:.1}" y1="{top:.1}" y2="{:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="2 2"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{}">{}</text>"#,
            h - bottom,
            mark.color,
            x + 3.0,
            top + 12.0 + i as f64 * 12.0,
            mark.color,
            escape(&mark.label)
        );
    }
}

/// Y grid lines with their values, x ticks, the x label.
fn draw_axes(svg: &mut String, chart: &Chart<'_>, f: &Frame) {
    let (left, right, bottom, w, h) = (f.left, f.right, f.bottom, f.w, f.h);
    for i in 0..=4 {
        let y = f.y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            w - right,
            left - 6.0,
            f.sy(y) + 4.0,
            escape(&(chart.y_fmt)(y)),
            y0 = f.sy(y)
        );
    }
    for x in x_ticks(f.x_min, f.x_max, &chart.series, f.log_x) {
        let _ = write!(
            svg,
            r##"<line class="xtick" x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#999"/><text x="{0:.1}" y="{3:.1}" font-size="10" text-anchor="middle">{4}</text>"##,
            f.sx(x),
            h - bottom,
            h - bottom + 4.0,
            h - bottom + 14.0,
            escape(&(chart.x_fmt)(x))
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        (left + w - right) / 2.0,
        h - 4.0,
        escape(chart.x_label)
    );
}

/// Each series as a line, with its legend entry.
fn draw_series(svg: &mut String, chart: &Chart<'_>, f: &Frame) {
    let series = &chart.series;
    // Envelopes first, so that a line close to them (p99 under max) stays visible on top.
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by_key(|&i| !series[i].dashed);
    for i in order {
        let s = &series[i];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", f.sx(*x), f.sy(*y)))
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
            f.left + 10.0 + i as f64 * 140.0,
            s.color,
            f.left + 24.0 + i as f64 * 140.0,
            escape(s.name)
        );
    }
}
