//! How a command ends, and the one place that becomes an exit code.
//!
//! A command's `run` returns a [`CommandResult`]: the [`Outcome`] of a run that finished (its
//! report already written), or the [`CommandError`] that stopped it. [`conclude`] prints the
//! error, once, and maps either to the documented codes below; no command chooses a number.

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

/// A bad flag, file or value, found by a command's plan before anything ran (exit 2). Its
/// message names the flag, or the file with its line and column, and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<String> for UsageError {
    fn from(message: String) -> UsageError {
        UsageError(message)
    }
}

impl From<&str> for UsageError {
    fn from(message: &str) -> UsageError {
        UsageError(message.to_string())
    }
}

impl From<UsageError> for CommandError {
    fn from(e: UsageError) -> CommandError {
        CommandError::Usage(e.0)
    }
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
        let prefix = if command.is_empty() {
            "recordctl".to_string()
        } else {
            format!("recordctl {command}")
        };
        for line in e.to_string().lines() {
            eprintln!("{prefix}: {line}");
        }
    }
    code(&result)
}

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
            Some(Failure::Send(_)) => UNREACHABLE,
            _ => USAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
