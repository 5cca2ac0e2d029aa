//! JUnit XML as CI systems read it: one suite, one test case per check, a `failure` carrying
//! what was expected and what came. Written by `smoke` and `drill`.

use std::fmt::Write;

pub struct Case {
    pub name: String,
    /// Seconds the check took, when it was timed.
    pub seconds: Option<f64>,
    pub failure: Option<String>,
}

pub fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `<testsuites name=…>` holding one `<testsuite name=…>` of `cases`, each in `classname`.
pub fn render(suites: &str, suite: &str, classname: &str, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let total: f64 = cases.iter().filter_map(|c| c.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">",
        escape(suites),
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\">",
        escape(suite),
        cases.len()
    );
    for case in cases {
        let time = case.seconds.map(|s| format!(" time=\"{s:.3}\"")).unwrap_or_default();
        let open = format!(
            "    <testcase classname=\"{}\" name=\"{}\"{time}",
            escape(classname),
            escape(&case.name)
        );
        match &case.failure {
            None => {
                let _ = writeln!(out, "{open}/>");
            }
            Some(message) => {
                let message = escape(message);
                let _ = writeln!(
                    out,
                    "{open}>\n      <failure message=\"{message}\" type=\"check failed\">{message}</failure>\n    </testcase>"
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
