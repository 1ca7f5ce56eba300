//! Identifiers and positions: batch ids, query ids, source offsets.
//!
//! Each is a newtype whose `Display` gives every message the same words (`batch 7`, `query 3f2a…`),
//! so logs, errors and reports name things alike.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The number of a micro-batch (stream) or chunk (batch run). It is also the Delta `txn` version
/// the sink commits with, so it only ever grows for one app id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(u64);

impl BatchId {
    pub const FIRST: BatchId = BatchId(0);

    pub const fn new(n: u64) -> Self {
        BatchId(n)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn next(self) -> Self {
        BatchId(self.0 + 1)
    }

    /// The Delta `txn` version this batch commits with.
    pub fn txn_version(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch {}", self.0)
    }
}

/// The stable identity of a streaming query, kept in its checkpoint's `metadata` file. It is the
/// Delta `txn` app id of every commit the query makes, as Spark's `queryId` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueryId(Uuid);

impl QueryId {
    pub fn random() -> Self {
        QueryId(Uuid::new_v4())
    }

    pub fn app_id(&self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query {}", self.0)
    }
}

/// A position in a source, opaque to the engine: each source defines its own JSON shape (a file
/// count for a landing directory, per-partition offsets for Kafka, a version for Delta). The engine
/// stores it in the offset log and hands it back unchanged on replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(serde_json::Value);

impl Offset {
    pub fn new(value: serde_json::Value) -> Self {
        Offset(value)
    }

    pub fn value(&self) -> &serde_json::Value {
        &self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The offsets one batch reads: after `start` (exclusive; `None` = from the beginning) up to `end`
/// (inclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    pub start: Option<Offset>,
    pub end: Offset,
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.start {
            Some(start) => write!(f, "offsets {start}..{}", self.end),
            None => write!(f, "offsets ..{}", self.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_alike_in_messages() {
        assert_eq!(BatchId::new(7).to_string(), "batch 7");
        let range = OffsetRange {
            start: Some(Offset::new(serde_json::json!({"files": 3}))),
            end: Offset::new(serde_json::json!({"files": 5})),
        };
        assert_eq!(range.to_string(), r#"offsets {"files":3}..{"files":5}"#);
    }
}
