//! What a transform may know about the piece of input it is given.
//!
//! A transform never reads the wall clock: the batch's logical time is chosen once, when the batch is
//! planned, and written to the offset log (or the batch plan), so a replay sees the same context and
//! produces the same rows.

use crate::error::{Error, Result};
use crate::id::BatchId;
use polars::prelude::{DataFrame, IntoLazy, LazyFrame};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Whether the transform runs inside a stream (micro-batches) or a bounded batch run (chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Stream,
    Batch,
}

/// The context of one micro-batch or chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchContext {
    pub batch_id: BatchId,
    pub mode: Mode,
    /// Logical time of the batch, milliseconds since the Unix epoch, recorded when it was planned.
    pub batch_time_ms: i64,
    /// Event-time watermark in milliseconds, when the job has one.
    pub watermark_ms: Option<i64>,
    /// The static tables the batch reads beside its input ([`crate::ops::static_tables`]), at the
    /// versions chosen when it was planned; the offset log records the versions.
    #[serde(default, skip_serializing_if = "Tables::is_empty")]
    pub tables: Tables,
}

/// A batch's static tables: each one's version (recorded with the batch) and, once the engine
/// has read them, its rows.
#[derive(Clone, Default)]
pub struct Tables {
    versions: BTreeMap<String, u64>,
    frames: Arc<BTreeMap<String, DataFrame>>,
}

impl Tables {
    pub(crate) fn new(versions: BTreeMap<String, u64>, frames: BTreeMap<String, DataFrame>) -> Self {
        Tables { versions, frames: Arc::new(frames) }
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Each table's version, by name.
    pub fn versions(&self) -> &BTreeMap<String, u64> {
        &self.versions
    }

    /// The rows of each table read, by name.
    pub fn frames(&self) -> impl Iterator<Item = (&str, &DataFrame)> {
        self.frames.iter().map(|(name, frame)| (name.as_str(), frame))
    }
}

// A batch's tables are known by their versions: the rows follow from them.
impl PartialEq for Tables {
    fn eq(&self, other: &Self) -> bool {
        self.versions == other.versions
    }
}

impl Eq for Tables {}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.versions.iter()).finish()
    }
}

impl Serialize for Tables {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.versions.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Tables {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Tables { versions: BTreeMap::deserialize(d)?, frames: Arc::default() })
    }
}

impl BatchContext {
    pub fn new(batch_id: BatchId, mode: Mode, batch_time_ms: i64) -> Self {
        BatchContext { batch_id, mode, batch_time_ms, watermark_ms: None, tables: Tables::default() }
    }

    /// The static table `name` at the version this batch reads (a stream–static join from Rust:
    /// `input.join(ctx.table("customers")?, …)`).
    pub fn table(&self, name: &str) -> Result<LazyFrame> {
        match self.tables.frames.get(name) {
            Some(frame) => Ok(frame.clone().lazy()),
            None => Err(Error::Unsupported(format!(
                "{}: no static table named `{name}`; the job has: [{}] (declare it under [tables], or with Pipeline::with_static_table)",
                self.batch_id,
                self.tables.versions.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    pub fn batch_time_ms(&self) -> i64 {
        self.batch_time_ms
    }
}
