//! The one error type for a bad search-space file: file, line, key and what is wrong.

use std::fmt;
use std::path::PathBuf;

/// A problem in a search-space file, located by file, line and key.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceError {
    /// The file that holds the problem.
    pub file: PathBuf,
    /// 1-based line of the offending key or value, when it can be located.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `params.peak_lr.min`; empty for whole-file problems.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": key `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for SpaceError {}
