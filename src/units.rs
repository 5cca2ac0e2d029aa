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

/// A duration or rate that could not be read; says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid duration {raw:?}, expected a number and a unit like 250ms, 2s, 1m")]
    DurationNumber { raw: String },
    #[error("invalid duration {raw:?}: unknown unit {unit:?}, expected us, ms, s, m or h")]
    DurationUnit { raw: String, unit: String },
    #[error("invalid duration {raw:?}: at most 365 days")]
    DurationTooLong { raw: String },
    #[error("invalid duration {raw:?}")]
    DurationOutOfRange { raw: String },
    #[error("think time {raw:?}: the lower bound is above the upper")]
    RangeReversed { raw: String },
    #[error("invalid rate {raw:?}, expected e.g. 500/s or 30/m")]
    RateNumber { raw: String },
    #[error("invalid rate {raw:?}: unknown unit {unit:?}, expected /s, /m or /h")]
    RateUnit { raw: String, unit: String },
    #[error("invalid rate {raw:?}: must be above 0 and at most 10M/s")]
    RateOutOfRange { raw: String },
}

pub fn parse_duration(raw: &str) -> Result<Duration, UnitError> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let owned = || raw.to_string();
    let value: f64 = number.parse().map_err(|_| UnitError::DurationNumber { raw: owned() })?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(UnitError::DurationUnit {
                raw: owned(),
                unit: unit.to_string(),
            });
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(UnitError::DurationOutOfRange { raw: owned() });
    }
    if seconds > MAX_DURATION_SECS {
        return Err(UnitError::DurationTooLong { raw: owned() });
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| UnitError::DurationOutOfRange { raw: owned() })
}

/// The longest duration any flag or file may give: a year, far past any real run, and far
/// from the overflow of `Instant + Duration`.
const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

/// Parses `500/s`, `500`, `30/m`, `1/ms`.
pub fn parse_rate(raw: &str) -> Result<f64, UnitError> {
    let owned = || raw.to_string();
    let (number, unit) = raw.trim().split_once('/').unwrap_or((raw.trim(), "s"));
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| UnitError::RateNumber { raw: owned() })?;
    let per_second = match unit.trim() {
        "s" | "sec" => n,
        "m" | "min" => n / 60.0,
        "h" => n / 3600.0,
        "ms" => n * 1000.0,
        other => {
            return Err(UnitError::RateUnit {
                raw: owned(),
                unit: other.to_string(),
            });
        }
    };
    if !per_second.is_finite() || per_second <= 0.0 || per_second > 10_000_000.0 {
        return Err(UnitError::RateOutOfRange { raw: owned() });
    }
    Ok(per_second)
}

/// `2026-11-21T19:30:45.123456Z` → unix nanoseconds (the log lines' own format). Log lines
/// are untrusted: anything out of range or not ASCII digits is `None`, never a panic.
pub fn parse_rfc3339_nanos(ts: &str) -> Option<u128> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let number = |p: &str, max: i64| -> Option<i64> {
        let ok = !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| p.parse::<i64>().ok()).flatten().filter(|v| *v <= max)
    };
    let mut d = date.split('-');
    let (y, m, day) = (number(d.next()?, 9999)?, number(d.next()?, 12)?, number(d.next()?, 31)?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let (h, mi, s) = (number(t.next()?, 23)?, number(t.next()?, 59)?, number(t.next()?, 60)?);
    if m == 0 || day == 0 || d.next().is_some() || t.next().is_some() {
        return None;
    }
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u128::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()?;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(secs * 1_000_000_000 + digits.parse::<u128>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_read_as_written_and_refuse_what_is_not() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_duration("400d").is_err());
        assert!(parse_duration("366d").is_err());
        assert!(parse_duration("9000h").unwrap_err().to_string().contains("365 days"));
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("1/ms"), Ok(1000.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/d").unwrap_err().to_string().contains("unknown unit"));
    }

    #[test]
    fn odd_log_timestamps_are_none_not_panics() {
        for odd in [
            "2026-11-21T19:30:45.1é3Z",
            "2026-11-21T19:30:45.Z",
            "99999999999999-11-21T19:30:45Z",
            "1960-01-01T00:00:00Z",
            "2026-13-21T19:30:45Z",
            "2026-11-21T19:30:45:12Z",
            "2026-11-21T-1:30:45Z",
            "T",
            "",
            "２０２６-11-21T19:30:45Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(odd), None, "{odd}");
        }
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000),
            "fractions are padded"
        );
    }

    #[test]
    fn log_timestamps_parse_back_to_unix_nanos() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:01.000002Z"), Some(1_000_002_000));
        let micros = recordstore::clock::now_micros();
        let text = recordstore::clock::rfc3339_micros(micros);
        assert_eq!(parse_rfc3339_nanos(&text), Some(micros as u128 * 1000));
    }
}
