//! Correlation ids and W3C trace context: validation, generation, `traceparent` text.

use std::fmt;

use rand::Rng;

pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A validated correlation id: `[A-Za-z0-9._:-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub fn parse(raw: &str) -> Option<CorrelationId> {
        let valid = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        valid.then(|| CorrelationId(raw.to_string()))
    }

    /// A fresh id, `rs-` and 24 hex characters.
    pub fn generate() -> CorrelationId {
        let n: u128 = rand::rng().random();
        CorrelationId(format!("rs-{:024x}", n >> 32))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parts of a W3C `traceparent` header (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids and version ff are invalid.
    /// Future versions are read by their first four fields, as the spec asks.
    pub fn parse(raw: &str) -> Option<TraceParent> {
        let raw = raw.trim();
        let mut parts = raw.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let rest_ok = version != "00" || parts.next().is_none();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !(hex(version, 2) && version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2) && rest_ok) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_outside_the_alphabet_are_rejected() {
        assert!(CorrelationId::parse("abc-123_x.y:z").is_some());
        assert!(CorrelationId::parse("").is_none());
        assert!(CorrelationId::parse("has space").is_none());
        assert!(CorrelationId::parse("semi;colon").is_none());
        assert!(CorrelationId::parse(&"a".repeat(128)).is_some());
        assert!(CorrelationId::parse(&"a".repeat(129)).is_none());
        assert!(CorrelationId::parse("ünïcode").is_none());
    }

    #[test]
    fn generated_correlation_ids_are_valid_and_distinct() {
        let a = CorrelationId::generate();
        let b = CorrelationId::generate();
        assert_ne!(a, b);
        assert!(CorrelationId::parse(a.as_str()).is_some());
    }

    #[test]
    fn traceparent_round_trips() {
        let raw = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(raw).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tp.sampled);
        assert_eq!(tp.to_string(), raw);
    }

    #[test]
    fn malformed_traceparents_are_rejected() {
        for raw in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceParent::parse(raw).is_none(), "{raw:?} should be rejected");
        }
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }
}
