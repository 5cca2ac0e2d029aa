//! Latency histograms saved as an HdrHistogram interval log (one tagged histogram per
//! request name, plus `all`), so runs on several machines merge without loss:
//! `recordctl report merge a.hlog b.hlog`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use crate::traffic::stats::{Stats, histogram};

pub const ALL: &str = "all";

/// Tags cannot hold spaces or commas: percent-encode them.
fn encode_tag(name: &str) -> String {
    name.replace('%', "%25")
        .replace(' ', "%20")
        .replace(',', "%2C")
        .replace(['\r', '\n'], "")
}

fn decode_tag(tag: &str) -> String {
    tag.replace("%20", " ").replace("%2C", ",").replace("%25", "%")
}

/// Why an interval log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HdrError {
    /// The histogram library refused to encode a histogram.
    #[error("{0}")]
    Encode(String),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// A file that is not an interval log, or one whose histograms do not decode or merge.
    #[error("{path}: {reason}")]
    Decode { path: String, reason: String },
}

/// The interval log of a run: one histogram per request name, and `ALL`.
pub fn encode(stats: &Stats, started: SystemTime, elapsed: Duration, run_id: &str) -> Result<Vec<u8>, HdrError> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder.add_comment(&format!("recordctl load-test run {run_id}; values in microseconds"));
        builder.with_start_time(started);
        let mut log = builder
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| HdrError::Encode(format!("cannot start the log: {e}")))?;
        let mut entries: Vec<(String, &Histogram<u64>)> = vec![(ALL.to_string(), &stats.latency)];
        entries.extend(stats.per_name.iter().map(|(name, n)| (name.clone(), &n.latency)));
        for (name, h) in entries {
            let tag = encode_tag(&name);
            log.write_histogram(h, Duration::ZERO, elapsed, Tag::new(&tag))
                .map_err(|e| HdrError::Encode(format!("cannot write the histogram of {name}: {e:?}")))?;
        }
    }
    Ok(out)
}

/// Reads interval logs and merges their histograms by tag (request name).
pub fn read_and_merge(paths: &[String]) -> Result<BTreeMap<String, Histogram<u64>>, HdrError> {
    let mut merged: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| HdrError::Read {
            path: path.clone(),
            source,
        })?;
        let bad = |reason: String| HdrError::Decode {
            path: path.clone(),
            reason,
        };
        let mut found = 0;
        for entry in IntervalLogIterator::new(&bytes) {
            let entry = entry.map_err(|e| bad(format!("not an HdrHistogram interval log ({e:?})")))?;
            let LogEntry::Interval(interval) = entry else { continue };
            let name = interval
                .tag()
                .map(|t| decode_tag(t.as_str()))
                .unwrap_or_else(|| ALL.to_string());
            let raw = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .map_err(|e| bad(format!("bad base64 in the histogram of {name}: {e}")))?;
            let h: Histogram<u64> = deserializer
                .deserialize(&mut raw.as_slice())
                .map_err(|e| bad(format!("cannot decode the histogram of {name}: {e:?}")))?;
            merged
                .entry(name)
                .or_insert_with(histogram)
                .add(&h)
                .map_err(|e| bad(format!("{e:?}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(bad("no histograms found (was it written by --hdr-out?)".into()));
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::stats::Sample;

    fn stats(ms: u64, n: usize) -> Stats {
        let mut s = Stats::default();
        for _ in 0..n {
            s.record(&Sample {
                name: "list products",
                correlation_id: "x",
                latency: Duration::from_millis(ms),
                service: None,
                status: Some(200),
                error: None,
                at: Duration::ZERO,
            });
        }
        s
    }

    #[test]
    fn logs_written_on_two_machines_merge_losslessly() {
        let dir = std::env::temp_dir().join(format!("recordctl-hdr-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (
            dir.join("a.hlog").display().to_string(),
            dir.join("b.hlog").display().to_string(),
        );
        let log = |stats: &Stats, run: &str| encode(stats, SystemTime::now(), Duration::from_secs(3), run).unwrap();
        std::fs::write(&a, log(&stats(10, 300), "a")).unwrap();
        std::fs::write(&b, log(&stats(50, 100), "b")).unwrap();
        let merged = read_and_merge(&[a.clone(), b]).unwrap();
        let all = &merged[ALL];
        assert_eq!(all.len(), 400);
        assert_eq!(merged["list products"].len(), 400);
        assert!(all.value_at_quantile(0.5) >= 9_990 && all.value_at_quantile(0.5) <= 10_010);
        assert!(all.max() >= 49_990);
        let garbage = dir.join("g.hlog");
        std::fs::write(&garbage, "hello").unwrap();
        assert!(read_and_merge(&[garbage.display().to_string()]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
