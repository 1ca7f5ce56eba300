//! `kind = "delta"` (the default): a Delta table, one commit per batch carrying the query's txn.

use crate::spec::file::{JobFile, SpecError};
use serde::Deserialize;

/// The keys of a Delta sink (besides those every sink takes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeltaSink {
    pub table: Option<String>,
    #[serde(default)]
    pub partition_by: Vec<String>,
    #[serde(default)]
    pub key: Vec<String>,
}

impl RawDeltaSink {
    /// The table's location.
    pub(super) fn table(&self, file: &JobFile) -> Result<String, SpecError> {
        let table = self.table.as_deref().ok_or_else(|| file.err("sink.table", "missing: the Delta table to write"))?;
        file.location("sink.table", table)
    }
}
