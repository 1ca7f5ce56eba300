//! The one error type of the core crate. Each variant names what it concerns (table, batch,
//! offset, path) and says what to do next. Bad records are not errors: they go to quarantine.

use crate::id::BatchId;
use deltalake::DeltaTableError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether retrying the same call could succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A transient condition (storage, a concurrent commit): run it again, it is idempotent.
    Yes,
    /// Retrying changes nothing until the input, the job or the environment is fixed.
    No,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "{url}: unsupported table or checkpoint URL scheme `{scheme}`; use a local path, a file:// or an s3:// URL{hint}"
    )]
    UnsupportedScheme { url: String, scheme: String, hint: &'static str },

    #[error("{url}: not a valid location: {problem}")]
    InvalidLocation { url: String, problem: String },

    #[error("{path}: storage operation `{op}` failed; rerunning is safe")]
    Store {
        path: String,
        op: &'static str,
        #[source]
        source: Box<object_store::Error>,
    },

    #[error(
        "{path}: checkpoint entry is unreadable ({source}); restore it, or start over with a new checkpoint location"
    )]
    CorruptCheckpoint {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: checkpoint entry already exists: another process is running this query; stop it first")]
    ConcurrentQuery { path: String },

    #[error("table {table}: {op} failed: {source}")]
    Delta {
        table: String,
        op: &'static str,
        #[source]
        source: Box<DeltaTableError>,
    },

    #[error(
        "{batch} ({range}) into table {table}: Delta commit failed: {source}; rerunning is safe, the batch is idempotent"
    )]
    DeltaCommit {
        table: String,
        batch: BatchId,
        range: String,
        #[source]
        source: Box<DeltaTableError>,
    },

    #[error("table {table}: the batch output does not fit the table: {problem}")]
    SchemaMismatch { table: String, problem: String },

    #[error("{batch}: transform failed: {source}")]
    Transform {
        batch: BatchId,
        #[source]
        source: polars::error::PolarsError,
    },

    #[error("{what}: {source}")]
    Polars {
        what: String,
        #[source]
        source: polars::error::PolarsError,
    },

    #[error("{what}: Arrow conversion failed: {source}")]
    Arrow {
        what: String,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },

    #[error("source {source_name}: {problem}")]
    Source { source_name: String, problem: String },

    /// Input the query still needs was deleted (log retention, VACUUM, topic retention): going on
    /// would silently skip rows.
    #[error(
        "source {source_name}: data loss: {problem}. Restart from a new checkpoint location (choosing where to start), or reprocess with `tidewater batch`"
    )]
    DataLoss { source_name: String, problem: String },

    #[error("{path}: {op} failed: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Unsupported(String),

    #[error("backfill {backfill}: {} chunks failed: {}; run it again to retry them", failed.len(), failed.join("; "))]
    ChunksFailed { backfill: String, failed: Vec<String> },

    #[error("internal error: {0} (a Tidewater bug; please report it with the log)")]
    Internal(String),
}

impl Error {
    /// Whether a runner should retry the failed call.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Store { .. } | Error::DeltaCommit { .. } | Error::Delta { .. } => Retry::Yes,
            _ => Retry::No,
        }
    }

    /// A stable code for JSON output and dashboards.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnsupportedScheme { .. } => "unsupported_scheme",
            Error::InvalidLocation { .. } => "invalid_location",
            Error::Store { .. } => "store",
            Error::CorruptCheckpoint { .. } => "corrupt_checkpoint",
            Error::ConcurrentQuery { .. } => "concurrent_query",
            Error::Delta { .. } => "delta",
            Error::DeltaCommit { .. } => "delta_commit",
            Error::SchemaMismatch { .. } => "schema_mismatch",
            Error::Transform { .. } => "transform",
            Error::Polars { .. } => "polars",
            Error::Arrow { .. } => "arrow",
            Error::Source { .. } => "source",
            Error::DataLoss { .. } => "data_loss",
            Error::Io { .. } => "io",
            Error::Unsupported(_) => "unsupported",
            Error::ChunksFailed { .. } => "chunks_failed",
            Error::Internal(_) => "internal",
        }
    }

    /// A `map_err` adapter for a delta-rs call on `table`.
    pub fn delta(table: impl ToString, op: &'static str) -> impl FnOnce(DeltaTableError) -> Error {
        let table = table.to_string();
        move |source| Error::Delta { table, op, source: Box::new(source) }
    }

    /// A `map_err` adapter for a local file operation on `path`.
    pub fn io(path: &std::path::Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.display().to_string();
        move |source| Error::Io { path, op, source }
    }

    /// A `map_err` adapter that names what Polars was doing.
    pub fn polars(what: impl Into<String>) -> impl FnOnce(polars::error::PolarsError) -> Error {
        let what = what.into();
        move |source| Error::Polars { what, source }
    }
}

/// An error and its causes, each cause after `separator` (`"\n  caused by: "` for a terminal, as
/// ripgrep prints them; `": "` for one line in a ledger). A cause whose text the lines before it
/// already hold is not repeated.
pub fn error_chain(error: &dyn std::error::Error, separator: &str) -> String {
    let mut text = error.to_string();
    let mut shown = text.clone();
    let mut cause = error.source();
    while let Some(e) = cause {
        let line = e.to_string();
        if !shown.contains(&line) {
            text.push_str(separator);
            text.push_str(&line);
            shown.push_str(&line);
        }
        cause = e.source();
    }
    text
}
