//! Units every command reads from flags and files: durations (`250ms`, `1.5s`, `2m`) and
//! rates (`500/s`, `30/m`), each with an error that says what was expected.

use std::time::Duration;

use serde::Deserialize;

/// A duration written like `250ms`, `1.5s`, `2m`, `100us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        parse_duration(&raw)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}, expected a number and a unit like 250ms, 2s, 1m"))?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {raw:?}: unknown unit {unit:?}, expected us, ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {raw:?}"));
    }
    if seconds > MAX_DURATION_SECS {
        return Err(format!("invalid duration {raw:?}: at most 365 days"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration {raw:?}"))
}

/// The longest duration any flag or file may give: a year, far past any real run, and far
/// from the overflow of `Instant + Duration`.
const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

/// Parses `500/s`, `500`, `30/m`, `1/ms`.
pub fn parse_rate(raw: &str) -> Result<f64, String> {
    let (number, unit) = raw.trim().split_once('/').unwrap_or((raw.trim(), "s"));
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {raw:?}, expected e.g. 500/s or 30/m"))?;
    let per_second = match unit.trim() {
        "s" | "sec" => n,
        "m" | "min" => n / 60.0,
        "h" => n / 3600.0,
        "ms" => n * 1000.0,
        other => {
            return Err(format!(
                "invalid rate {raw:?}: unknown unit {other:?}, expected /s, /m or /h"
            ));
        }
    };
    if !per_second.is_finite() || per_second <= 0.0 || per_second > 10_000_000.0 {
        return Err(format!("invalid rate {raw:?}: must be above 0 and at most 10M/s"));
    }
    Ok(per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_read_as_written_and_refuse_what_is_not() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("400d").is_err());
        assert!(parse_duration("366d").is_err());
        assert!(parse_duration("9000h").unwrap_err().contains("365 days"));
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("1/ms"), Ok(1000.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/d").unwrap_err().contains("unknown unit"));
    }
}
