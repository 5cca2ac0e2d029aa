//! `recordctl report merge`: combine HdrHistogram logs from several runs or machines.

use serde::{Deserialize, Serialize};

use crate::exit::{CommandError, CommandResult, Outcome};
use crate::load::report::LatencySummary;
use crate::output::Delivery;
use crate::traffic::hdr;
use crate::traffic::threshold::format_us;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct MergedReport {
    pub schema_version: u32,
    pub files: Vec<String>,
    pub histograms: Vec<MergedHistogram>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct MergedHistogram {
    pub name: String,
    pub latency: LatencySummary,
}

pub fn run(files: &[String], json: Option<&str>) -> CommandResult {
    let merged = hdr::read_and_merge(files).map_err(|e| CommandError::Usage(e.to_string()))?;
    let report = MergedReport {
        schema_version: 1,
        files: files.to_vec(),
        histograms: merged
            .iter()
            .map(|(name, h)| MergedHistogram {
                name: name.clone(),
                latency: LatencySummary::of(h),
            })
            .collect(),
    };
    let mut table = crate::output::table();
    table.set_header(["request", "count", "min", "p50", "p90", "p95", "p99", "p99.9", "max"]);
    for h in &report.histograms {
        let l = &h.latency;
        let mut row = vec![h.name.clone(), l.count.to_string()];
        row.extend(
            [l.min_us, l.p50_us, l.p90_us, l.p95_us, l.p99_us, l.p999_us, l.max_us].map(|v| format_us(v as f64)),
        );
        table.add_row(row);
    }
    let text = format!("merged {} file(s)\n{table}\n", files.len());
    let mut delivery = Delivery::default();
    delivery.show(&text, &report, json);
    delivery.conclude(Outcome::Passed)
}
