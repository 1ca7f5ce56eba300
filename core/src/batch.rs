//! What one batch carries and what it did: the records a source read ([`SourceBatch`], with the
//! [`Rejected`] ones), the lanes its commit records ([`Lane`]), what the sink did with it
//! ([`SinkOutcome`]), and its counters ([`BatchReport`], one type for a stream's batch, a batch run's
//! chunk and a backfill chunk's ledger line).
//!
//! # Invariant
//! `input_records = output_rows + filtered + quarantined + late + deduplicated` for a row-wise
//! transform: every record read is accounted for.

use crate::id::{BatchId, QueryId};
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

/// A record the source could not turn into a row: it goes to the quarantine table, not away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Where it came from: a file path, a topic-partition.
    pub origin: String,
    /// 1-based line number in a file, or the record's offset.
    pub position: u64,
    /// The record as it was read.
    pub raw: String,
    /// Why it was rejected, for a person to read.
    pub reason: String,
}

/// What a source read for one batch: the good rows and the rejected records.
///
/// `input_records == rows.height() + rejected.len()` always holds.
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub rows: DataFrame,
    pub rejected: Vec<Rejected>,
    pub input_records: u64,
}

/// One lane of a batch's source (a Kafka partition) whose progress the commit records beside
/// the batch, as the txn `{app_id, version = to}`: the commit lands only if the table records
/// `from` for it, or nothing yet. So the rows of a lane's offsets `from..to` are committed once
/// whoever writes them, whatever process, checkpoint or batch id (kafka-delta-ingest's rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    pub app_id: String,
    /// For messages: `orders/2`.
    pub origin: String,
    pub from: Option<i64>,
    pub to: i64,
}

/// What a sink did with one batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SinkOutcome {
    /// Committed as this table version.
    Committed { version: u64, rows: u64, files: u64 },
    /// Delivered by a sink that is not a table (console, memory, Kafka).
    Delivered { rows: u64 },
    /// The table already records this batch for this app id: nothing written.
    Skipped { recorded: i64 },
    /// Another writer recorded progress on one of the batch's lanes (a Kafka partition) since the
    /// batch was planned: its rows are that writer's to write, nothing written.
    Superseded { lane: String, recorded: i64, expected: Option<i64> },
}

impl SinkOutcome {
    pub fn version(&self) -> Option<u64> {
        match self {
            SinkOutcome::Committed { version, .. } => Some(*version),
            SinkOutcome::Delivered { .. } | SinkOutcome::Skipped { .. } | SinkOutcome::Superseded { .. } => None,
        }
    }
}

/// What one batch (or chunk) did. `input_records = output_rows + filtered + quarantined + late +
/// deduplicated`
/// for a row-wise transform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    pub batch: BatchId,
    pub range: String,
    pub input_records: u64,
    pub output_rows: u64,
    pub filtered: u64,
    pub quarantined: u64,
    /// Rows set aside as late (older than the batch's watermark; in a recomputation, the rows
    /// the stream set aside), never given to the transform.
    pub late: u64,
    /// Table version of the batch's commit; `None` when it was already committed (replay).
    pub table_version: Option<u64>,
    pub replayed: bool,
    /// Wall time from planning (or replay start) to the done entry, in microseconds.
    pub duration_us: u64,
    /// The batch's watermark (epoch milliseconds), when the job has one.
    #[serde(default)]
    pub watermark_ms: Option<i64>,
    /// An aggregation's state after the batch: its groups, and its size as written to the
    /// checkpoint (Parquet bytes).
    #[serde(default)]
    pub state_rows: Option<u64>,
    #[serde(default)]
    pub state_bytes: Option<u64>,
    /// Rows a deduplication dropped (their keys were seen), and the keys it keeps.
    #[serde(default)]
    pub deduplicated: u64,
    #[serde(default)]
    pub dedup_state_rows: Option<u64>,
}

/// What a `run` did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub query: QueryId,
    pub table: String,
    pub quarantine: String,
    /// The late table, when the job has a watermark.
    pub late: Option<String>,
    pub batches: Vec<BatchReport>,
}

impl RunReport {
    pub fn total(&self, field: fn(&BatchReport) -> u64) -> u64 {
        self.batches.iter().map(field).sum()
    }
}
