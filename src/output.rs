//! Where results go, the same way for every command: the human text on stdout, or — with
//! `--json -` — the JSON document on stdout and the text on stderr, so a pipe gets exactly one
//! document; report files (JSON, JUnit, HTML, HDR log) and pushes collected by one
//! [`Delivery`]. The one rule: every requested output is attempted; one that could not be
//! written is exit 2 (one that could not be sent, exit 3), whatever the verdict, which is
//! printed all the same.

use serde::Serialize;

use crate::exit::{CommandError, CommandResult, Outcome};

/// One output that did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot write the {what} report to {path}: {source}")]
    Write {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A report that could not be rendered (an HDR log the library refused to encode).
    #[error("cannot write the {what} report to {path}: {reason}")]
    Render {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// A push to a backend (Pushgateway, remote write) that failed.
    #[error("{0}")]
    Send(String),
}

/// The outputs of a run that did not arrive, in the order they were attempted.
#[derive(Debug, thiserror::Error)]
#[error("{}", .failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct DeliveryError {
    pub failures: Vec<Failure>,
}

impl DeliveryError {
    /// The first failure decides: a file that could not be written is 2, a push that failed 3.
    pub fn code(&self) -> u8 {
        match self.failures.first() {
            Some(Failure::Send(_)) => crate::exit::UNREACHABLE,
            _ => crate::exit::USAGE,
        }
    }
}

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
        self.bytes(what, path, || Ok(render().into_bytes()));
    }

    /// Like [`Delivery::file`], for a report whose rendering can fail (the reason is kept).
    pub fn bytes(&mut self, what: &'static str, path: Option<&str>, render: impl FnOnce() -> Result<Vec<u8>, String>) {
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
                reason,
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
