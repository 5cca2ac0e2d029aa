//! How a command ends, and the one place that becomes an exit code.
//!
//! A command's `run` returns a [`CommandResult`]: the [`Outcome`] of a run that finished (its
//! report already written), or the [`CommandError`] that stopped it. [`conclude`] prints the
//! error, once, and maps either to the documented codes below; no command chooses a number.

use crate::output::DeliveryError;

/// The run worked and every check passed.
pub const OK: u8 = 0;
/// The run worked, but a threshold, hypothesis or completeness check failed.
pub const CHECKS_FAILED: u8 = 1;
/// Usage or configuration error: a bad flag or a malformed file; or a report that could not
/// be written.
pub const USAGE: u8 = 2;
/// Something the command needs is unreachable: target, backend, Docker.
pub const UNREACHABLE: u8 = 3;
/// Interrupted by Ctrl-C or SIGTERM.
pub const INTERRUPTED: u8 = 130;

/// What a run that finished found. Its report says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// A threshold, hypothesis, probe or completeness check failed.
    ChecksFailed,
    /// The report was written, but a part of it could not be reached (a probe's target, a
    /// backend doctor checks, the journey's target).
    Unreachable,
    /// Ctrl-C or SIGTERM; the report is partial.
    Interrupted,
}

impl Outcome {
    /// `Passed` when `passed`, `ChecksFailed` otherwise.
    pub fn checks(passed: bool) -> Outcome {
        if passed { Outcome::Passed } else { Outcome::ChecksFailed }
    }
}

/// Why a command stopped without a verdict, or why its verdict could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A bad flag, file or value: nothing ran.
    #[error("{0}")]
    Usage(String),
    /// Something the command needs did not answer before anything ran.
    #[error("{0}")]
    Unreachable(String),
    /// A precondition did not hold, so nothing ran: a drill's project not found, a
    /// confirmation declined, a journal still holding changes.
    #[error("{0}")]
    Refused(String),
    /// The run finished and its verdict was printed, but a report could not be written or sent.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// A command's result: see the module header.
pub type CommandResult = Result<Outcome, CommandError>;

/// The exit code of a command's result.
pub fn code(result: &CommandResult) -> u8 {
    match result {
        Ok(Outcome::Passed) => OK,
        Ok(Outcome::ChecksFailed) => CHECKS_FAILED,
        Ok(Outcome::Unreachable) => UNREACHABLE,
        Ok(Outcome::Interrupted) => INTERRUPTED,
        Err(CommandError::Usage(_)) => USAGE,
        Err(CommandError::Unreachable(_)) => UNREACHABLE,
        Err(CommandError::Refused(_)) => CHECKS_FAILED,
        Err(CommandError::Delivery(e)) => e.code(),
    }
}

/// Prints the error of `result`, each line prefixed with `recordctl COMMAND:`, and returns
/// its exit code.
pub fn conclude(command: &str, result: CommandResult) -> u8 {
    if let Err(e) = &result {
        let prefix = if command.is_empty() { "recordctl".to_string() } else { format!("recordctl {command}") };
        for line in e.to_string().lines() {
            eprintln!("{prefix}: {line}");
        }
    }
    code(&result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Delivery;

    #[test]
    fn every_outcome_and_error_has_its_documented_code() {
        assert_eq!(code(&Ok(Outcome::Passed)), 0);
        assert_eq!(code(&Ok(Outcome::ChecksFailed)), 1);
        assert_eq!(code(&Ok(Outcome::Unreachable)), 3);
        assert_eq!(code(&Ok(Outcome::Interrupted)), 130);
        assert_eq!(code(&Err(CommandError::Usage("x".into()))), 2);
        assert_eq!(code(&Err(CommandError::Unreachable("x".into()))), 3);
        assert_eq!(code(&Err(CommandError::Refused("x".into()))), 1);
        assert_eq!(Outcome::checks(true), Outcome::Passed);
        assert_eq!(Outcome::checks(false), Outcome::ChecksFailed);
    }

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
        assert_eq!(code(&Delivery::default().conclude(Outcome::ChecksFailed)), CHECKS_FAILED);
    }
}
