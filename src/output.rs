//! Where results go, the same way for every command: the human text on stdout, or — with
//! `--json -` — the JSON document on stdout and the text on stderr, so a pipe gets exactly one
//! document; report files (JSON, JUnit, HTML, HDR log) and pushes collected by one
//! [`Delivery`]. The one rule: every requested output is attempted; one that could not be
//! written is exit 2 (one that could not be sent, exit 3), whatever the verdict, which is
//! printed all the same.

use serde::Serialize;

use crate::exit::{CommandError, CommandResult, DeliveryError, Failure, Outcome};

/// Collects a run's outputs; see the module header.
#[derive(Debug, Default)]
pub struct Delivery {
    failures: Vec<Failure>,
}

impl Delivery {
    /// Prints `text` and, when asked, writes `doc` as pretty JSON to `json` (`-` for stdout).
    pub fn show(&mut self, text: &str, doc: &impl Serialize, json: Option<&str>) {
        let rendered = || serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        match json {
            Some("-") => {
                eprint!("{text}");
                println!("{}", rendered());
            }
            Some(path) => {
                print!("{text}");
                self.file("JSON", Some(path), rendered);
            }
            None => print!("{text}"),
        }
    }

    /// Writes the `what` report to `path` when one was asked for; `render` runs only then.
    pub fn file(&mut self, what: &'static str, path: Option<&str>, render: impl FnOnce() -> String) {
        self.bytes(what, path, || Ok::<_, std::convert::Infallible>(render().into_bytes()));
    }

    /// Like [`Delivery::file`], for a report whose rendering can fail (the reason is kept).
    pub fn bytes<E: std::fmt::Display>(
        &mut self,
        what: &'static str,
        path: Option<&str>,
        render: impl FnOnce() -> Result<Vec<u8>, E>,
    ) {
        let Some(path) = path else { return };
        let failure = match render() {
            Ok(bytes) => match std::fs::write(path, bytes) {
                Ok(()) => return,
                Err(source) => Failure::Write {
                    what,
                    path: path.to_string(),
                    source,
                },
            },
            Err(reason) => Failure::Render {
                what,
                path: path.to_string(),
                reason: reason.to_string(),
            },
        };
        self.failures.push(failure);
    }

    /// Records a push that failed.
    pub fn failed_to_send(&mut self, message: String) {
        self.failures.push(Failure::Send(message));
    }

    /// The run's result: its outcome when everything arrived.
    pub fn conclude(self, outcome: Outcome) -> CommandResult {
        if self.failures.is_empty() {
            Ok(outcome)
        } else {
            Err(CommandError::Delivery(DeliveryError {
                failures: self.failures,
            }))
        }
    }
}

/// The table every command prints: condensed borders and, on a terminal, cells wrapped to
/// fit its width (piped output keeps each row on one line, for grep).
pub fn table() -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{CHECKS_FAILED, UNREACHABLE, USAGE, code};

    #[test]
    fn a_report_that_cannot_be_written_is_exit_2_whatever_the_verdict() {
        let dir = std::env::temp_dir().join(format!("recordctl-exit-{}", std::process::id()));
        let missing = dir.join("no-such-dir").join("report.xml");
        for outcome in [Outcome::Passed, Outcome::ChecksFailed, Outcome::Interrupted] {
            let mut delivery = Delivery::default();
            delivery.file("JUnit", missing.to_str(), || "<testsuites/>".into());
            let result = delivery.conclude(outcome);
            assert_eq!(code(&result), USAGE, "{outcome:?}");
            let message = result.unwrap_err().to_string();
            assert!(message.starts_with("cannot write the JUnit report to "), "{message}");
        }
        // A report that could not be sent (a push) is exit 3; the first failure decides.
        let mut delivery = Delivery::default();
        delivery.failed_to_send("cannot push to http://127.0.0.1:9/: refused".into());
        delivery.file("HTML", missing.to_str(), String::new);
        let result = delivery.conclude(Outcome::Passed);
        assert_eq!(code(&result), UNREACHABLE);
        assert_eq!(result.unwrap_err().to_string().lines().count(), 2);
        // Nothing asked, nothing failed: the outcome stands.
        assert_eq!(
            code(&Delivery::default().conclude(Outcome::ChecksFailed)),
            CHECKS_FAILED
        );
    }
}
