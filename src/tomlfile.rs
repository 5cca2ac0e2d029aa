//! The TOML files recordctl reads (scenarios, drills, probes): deserialized with serde, every
//! error placed at its file, line and column.

use std::fmt;

/// A problem in a file we read (a scenario, a drill, a probes file), located at its line and
/// column when possible.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// What a file's own check (beyond serde) found wrong, and a snippet of the file near which
/// it is: [`located`] turns it into a [`FileError`] with the snippet's line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub near: Option<String>,
    pub message: String,
}

impl Invalid {
    pub fn new(near: Option<String>, message: String) -> Invalid {
        Invalid { near, message }
    }

    /// This problem in `text` (the file `file`), at the first place its snippet appears.
    pub fn located(self, text: &str, file: &str) -> FileError {
        located(text, file, self.near.as_deref(), self.message)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// Deserializes TOML, placing serde's complaint at its line and column in `file`.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
        FileError {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

/// An error placed at the first occurrence of `needle` in the text (unplaced without one).
pub fn located(text: &str, file: &str, needle: Option<&str>, message: String) -> FileError {
    let (line, column) = needle.and_then(|n| text.find(n)).map(|o| line_col(text, o)).unzip();
    FileError {
        file: file.to_string(),
        line,
        column,
        message,
    }
}
