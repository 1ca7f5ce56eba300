//! A job file being read: its text, the name it is shown by, and the directory its relative
//! locations resolve against. Every [`SpecError`] is made here, so each one names the file, then
//! the key path (or the line, for what serde refuses), then the problem.

use std::path::{Path, PathBuf};
use tidewater_core::location::parse_location;

/// A job file that cannot run, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct SpecError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

/// The job file being read.
pub(crate) struct JobFile {
    path: PathBuf,
    shown: String,
    text: String,
}

impl JobFile {
    /// Reads `path`; an unreadable file is a [`SpecError`] on the key `(file)`.
    pub(crate) fn read(path: &Path) -> Result<Self, SpecError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(JobFile { path: path.to_path_buf(), shown, text }),
            Err(e) => Err(SpecError { file: shown, key: "(file)".into(), problem: format!("cannot read: {e}") }),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// `file: key: problem`.
    pub(crate) fn err(&self, key: &str, problem: impl Into<String>) -> SpecError {
        SpecError { file: self.shown.clone(), key: key.to_string(), problem: problem.into() }
    }

    /// What TOML or serde refused, at the line its span starts on (`(syntax)` without a span).
    pub(crate) fn refused(&self, span: Option<std::ops::Range<usize>>, problem: &str) -> SpecError {
        let key = span.map_or_else(
            || "(syntax)".to_string(),
            |s| {
                let line = self.text[..s.start.min(self.text.len())].lines().count().max(1);
                format!("line {line}")
            },
        );
        self.err(&key, problem)
    }

    /// A serde or TOML error as it is: its message at its line.
    pub(crate) fn serde_error(&self, e: &toml::de::Error) -> SpecError {
        self.refused(e.span(), e.message())
    }

    /// A table or checkpoint location: relative paths resolve against the job file's directory,
    /// and the result must be a location Tidewater can open.
    pub(crate) fn location(&self, key: &str, value: &str) -> Result<String, SpecError> {
        let resolved = if value.contains("://") || Path::new(value).is_absolute() {
            value.to_string()
        } else {
            self.path.parent().map(Path::to_path_buf).unwrap_or_default().join(value).display().to_string()
        };
        parse_location(&resolved).map_err(|e| self.err(key, e.to_string()))?;
        Ok(resolved)
    }

    /// A count that must be positive, such as `source.max_files_per_trigger`.
    pub(crate) fn positive(&self, key: &str, n: i64) -> Result<usize, SpecError> {
        usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| self.err(key, format!("{n} is not a positive number")))
    }
}
