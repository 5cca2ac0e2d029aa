//! Thresholds such as `p95<300ms`, `p99.9<1s`, `error_rate<1%`, `rps>200`: parsed once,
//! evaluated against a finished run, each verdict saying by how much it passed or failed.

use serde::{Deserialize, Serialize};

use crate::exit::UsageError;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Percentile(f64),
    Min,
    Max,
    Mean,
    ErrorRate,
    Rps,
    Requests,
    Errors,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub text: String,
    metric: Metric,
    op: Op,
    /// Microseconds for latencies, a fraction for error_rate, a count or rate otherwise.
    value: f64,
}

/// The numbers a threshold can be checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    pub requests: u64,
    /// Arrivals never sent (errors, not requests): part of the error rate's denominator.
    pub unsent: u64,
    pub errors: u64,
    pub rps: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// One threshold's verdict, as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub threshold: String,
    pub actual: String,
    pub passed: bool,
    pub detail: String,
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Threshold, UsageError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let pos = compact.find(['<', '>']).ok_or_else(|| {
            UsageError(format!(
                "threshold {text:?}: expected METRIC<VALUE or METRIC>VALUE, e.g. p95<300ms"
            ))
        })?;
        let (name, rest) = compact.split_at(pos);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let metric = match name {
            "min" => Metric::Min,
            "max" => Metric::Max,
            "mean" | "avg" => Metric::Mean,
            "error_rate" | "errors%" => Metric::ErrorRate,
            "rps" => Metric::Rps,
            "requests" => Metric::Requests,
            "errors" => Metric::Errors,
            p if p.starts_with('p') => {
                let q: f64 = p[1..]
                    .parse()
                    .map_err(|_| UsageError(format!("threshold {text:?}: unknown metric {name:?}")))?;
                if !(0.0..=100.0).contains(&q) {
                    return Err(format!("threshold {text:?}: percentile must be between p0 and p100").into());
                }
                Metric::Percentile(q)
            }
            _ => {
                return Err(format!(
                    "threshold {text:?}: unknown metric {name:?}, expected pNN, min, max, mean, error_rate, rps, requests or errors"
                ).into());
            }
        };
        let value = match metric {
            Metric::Percentile(_) | Metric::Min | Metric::Max | Metric::Mean => crate::units::parse_duration(value)
                .map(|d| d.as_secs_f64() * 1e6)
                .map_err(|e| UsageError(format!("threshold {text:?}: {e}")))?,
            Metric::ErrorRate => {
                let number = value.strip_suffix('%').ok_or_else(|| {
                    UsageError(format!(
                        "threshold {text:?}: error_rate takes a percentage, e.g. error_rate<1%"
                    ))
                })?;
                number
                    .parse::<f64>()
                    .map_err(|_| format!("threshold {text:?}: bad percentage {value:?}"))?
                    / 100.0
            }
            _ => value
                .parse::<f64>()
                .map_err(|_| format!("threshold {text:?}: bad number {value:?}"))?,
        };
        Ok(Threshold {
            text: text.trim().to_string(),
            metric,
            op,
            value,
        })
    }

    /// Checks the threshold; `percentile` gives the latency in µs at a percentile.
    pub fn evaluate(&self, m: &Measured, percentile: &dyn Fn(f64) -> f64) -> Verdict {
        // Nothing measured proves nothing: only a threshold on the count itself can judge it.
        if m.requests == 0 && self.metric != Metric::Requests {
            return Verdict {
                threshold: self.text.clone(),
                actual: "—".into(),
                passed: false,
                detail: "no requests measured".into(),
            };
        }
        let actual = match self.metric {
            Metric::Percentile(q) => percentile(q),
            Metric::Min => m.min_us,
            Metric::Max => m.max_us,
            Metric::Mean => m.mean_us,
            Metric::ErrorRate => m.errors as f64 / (m.requests + m.unsent) as f64,
            Metric::Rps => m.rps,
            Metric::Requests => m.requests as f64,
            Metric::Errors => m.errors as f64,
        };
        let passed = match self.op {
            Op::Lt => actual < self.value,
            Op::Le => actual <= self.value,
            Op::Gt => actual > self.value,
            Op::Ge => actual >= self.value,
        };
        let (shown_actual, shown_limit) = (self.show(actual), self.show(self.value));
        let detail = if passed {
            format!("{shown_actual} is within {shown_limit}")
        } else {
            let by = (actual - self.value).abs();
            let relative = if self.value != 0.0 {
                format!(" ({:.0}%)", by / self.value.abs() * 100.0)
            } else {
                String::new()
            };
            format!("{shown_actual} misses {shown_limit} by {}{relative}", self.show(by))
        };
        Verdict {
            threshold: self.text.clone(),
            actual: shown_actual,
            passed,
            detail,
        }
    }

    fn show(&self, v: f64) -> String {
        match self.metric {
            Metric::Percentile(_) | Metric::Min | Metric::Max | Metric::Mean => format_us(v),
            Metric::ErrorRate => format!("{:.3}%", v * 100.0),
            Metric::Rps => format!("{v:.1}/s"),
            Metric::Requests | Metric::Errors => format!("{v:.0}"),
        }
    }
}

/// A latency in µs shown in the unit that reads best.
pub fn format_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            requests: 1000,
            unsent: 0,
            errors: 5,
            rps: 250.0,
            min_us: 900.0,
            max_us: 2e6,
            mean_us: 20_000.0,
        }
    }

    fn percentiles(q: f64) -> f64 {
        if q >= 99.0 { 400_000.0 } else { 250_000.0 }
    }

    #[test]
    fn thresholds_parse_units_and_operators() {
        for ok in [
            "p95<300ms",
            "p99.9 < 1s",
            "error_rate<1%",
            "rps>200",
            "max<=2s",
            "requests>=10",
            "mean<50ms",
        ] {
            Threshold::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["p95", "p95<300", "error_rate<1", "latency<1s", "p101<1s", "rps>fast"] {
            assert!(Threshold::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn verdicts_pass_and_fail_and_say_by_how_much() {
        let m = measured();
        let pass = Threshold::parse("p95<300ms").unwrap().evaluate(&m, &percentiles);
        assert!(pass.passed, "{pass:?}");
        let fail = Threshold::parse("p99<300ms").unwrap().evaluate(&m, &percentiles);
        assert!(!fail.passed);
        assert_eq!(fail.detail, "400.00ms misses 300.00ms by 100.00ms (33%)");
        let errors = Threshold::parse("error_rate<1%").unwrap().evaluate(&m, &percentiles);
        assert!(errors.passed, "{errors:?}");
        assert!(
            !Threshold::parse("error_rate<0.1%")
                .unwrap()
                .evaluate(&m, &percentiles)
                .passed
        );
        assert!(!Threshold::parse("rps>300").unwrap().evaluate(&m, &percentiles).passed);
        assert!(Threshold::parse("max<=2s").unwrap().evaluate(&m, &percentiles).passed);
    }

    #[test]
    fn a_run_that_measured_no_requests_fails_every_threshold_but_the_count() {
        let none = Measured {
            requests: 0,
            unsent: 40,
            errors: 40,
            rps: 0.0,
            min_us: 0.0,
            max_us: 0.0,
            mean_us: 0.0,
        };
        for t in [
            "p95<300ms",
            "rps>10",
            "error_rate<1%",
            "max<=2s",
            "mean<50ms",
            "errors<100",
        ] {
            let v = Threshold::parse(t).unwrap().evaluate(&none, &|_| 0.0);
            assert!(!v.passed, "{t} passed with nothing measured");
            assert_eq!(v.detail, "no requests measured", "{t}");
        }
        assert!(
            !Threshold::parse("requests>=1")
                .unwrap()
                .evaluate(&none, &|_| 0.0)
                .passed
        );
        assert!(Threshold::parse("requests<5").unwrap().evaluate(&none, &|_| 0.0).passed);
    }

    #[test]
    fn unsent_arrivals_count_in_the_error_rate() {
        let m = Measured {
            unsent: 1000,
            errors: 1005,
            ..measured()
        };
        let v = Threshold::parse("error_rate<1%").unwrap().evaluate(&m, &percentiles);
        assert!(!v.passed);
        assert_eq!(v.actual, "50.250%");
    }
}
