//! A stream's logs in its checkpoint: `offsets/<N>` (write-ahead: what batch N reads and the
//! context it runs with) and `commits/<N>` (batch N is done: its Delta commit and its state are
//! written), and the recovery rule that reads them.
//!
//! # Recovery rule
//! Let N be the highest batch in `offsets/`. If `commits/N` is missing, batch N is replayed with
//! exactly the logged range and context (the sinks skip what they already committed). Otherwise
//! the next batch is N+1 and starts where N ended. ([`Recovery::from_logs`], a pure function.)

use super::Checkpoint;
use crate::batch::BatchReport;
use crate::context::BatchContext;
use crate::error::Result;
use crate::id::{BatchId, Offset, OffsetRange};
use serde::{Deserialize, Serialize};

/// `offsets/<N>`: what batch N reads and the context it runs with, written before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetEntry {
    pub v: u32,
    pub range: OffsetRange,
    pub context: BatchContext,
}

/// `commits/<N>`: batch N is done; what it wrote, written after its Delta commit and its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoneEntry {
    pub v: u32,
    /// The sink table's version holding the batch (`None` when it was already committed before a
    /// crash and the replay skipped it).
    pub table_version: Option<u64>,
    pub input_records: u64,
    pub output_rows: u64,
    pub filtered: u64,
    pub quarantined: u64,
    /// Rows set aside as late (entries written before watermarks existed read as 0).
    #[serde(default)]
    pub late: u64,
    pub next_watermark_ms: Option<i64>,
    /// Groups in the aggregation's state after the batch (`state/<N>.parquet`); `None` for a
    /// query without state.
    #[serde(default)]
    pub state_rows: Option<u64>,
    /// That state's size as written (Parquet bytes).
    #[serde(default)]
    pub state_bytes: Option<u64>,
    /// The fingerprint of the aggregation that wrote that state ([`crate::ops::aggregate::Aggregation::fingerprint`]).
    #[serde(default)]
    pub state_of: Option<String>,
    /// Keys in the deduplication's state after the batch (`dedup/<N>.parquet`).
    #[serde(default)]
    pub dedup_rows: Option<u64>,
}

impl DoneEntry {
    /// The entry of a batch that `report` describes, its watermark for the next batch, and the
    /// fingerprint of the aggregation whose state it wrote.
    pub fn new(report: &BatchReport, next_watermark_ms: Option<i64>, state_of: Option<String>) -> Self {
        DoneEntry {
            v: 1,
            table_version: report.table_version,
            input_records: report.input_records,
            output_rows: report.output_rows,
            filtered: report.filtered,
            quarantined: report.quarantined,
            late: report.late,
            next_watermark_ms,
            state_rows: report.state_rows,
            state_bytes: report.state_bytes,
            state_of: report.state_rows.and(state_of),
            dedup_rows: report.dedup_state_rows,
        }
    }
}

/// Where a query goes on from, by the recovery rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    /// The id of the next batch to plan (after the replay, if any).
    pub next: BatchId,
    /// Where the next batch starts, or the replay (`None`: the source's beginning).
    pub start: Option<Offset>,
    /// The logged batch to run again first, with its range and context, when it is not done.
    pub replay: Option<OffsetEntry>,
    /// The watermark the next planned batch runs with.
    pub watermark_ms: Option<i64>,
    /// The watermark the last logged batch ran with.
    pub ran_watermark_ms: Option<i64>,
}

impl Recovery {
    /// The recovery rule over the latest entries of the two logs.
    pub fn from_logs(offsets: Option<(BatchId, OffsetEntry)>, done: Option<(BatchId, DoneEntry)>) -> Recovery {
        let Some((last, entry)) = offsets else {
            return Recovery {
                next: BatchId::FIRST,
                start: None,
                replay: None,
                watermark_ms: None,
                ran_watermark_ms: None,
            };
        };
        let watermark_ms = done.as_ref().and_then(|(_, d)| d.next_watermark_ms);
        let ran_watermark_ms = entry.context.watermark_ms;
        if done.is_some_and(|(id, _)| id == last) {
            Recovery { next: last.next(), start: Some(entry.range.end), replay: None, watermark_ms, ran_watermark_ms }
        } else {
            let start = entry.range.start.clone();
            Recovery { next: last.next(), start, replay: Some(entry), watermark_ms, ran_watermark_ms }
        }
    }
}

impl Checkpoint {
    pub async fn latest_offsets(&self) -> Result<Option<(BatchId, OffsetEntry)>> {
        self.latest("offsets").await
    }

    pub async fn latest_done(&self) -> Result<Option<(BatchId, DoneEntry)>> {
        self.latest("commits").await
    }

    /// Write-ahead: records batch `id`'s range and context before anything is read.
    pub async fn write_offsets(&self, id: BatchId, entry: &OffsetEntry) -> Result<()> {
        self.create_json(&format!("offsets/{}.json", id.get()), entry).await
    }

    /// Records that batch `id` is done: committed to the sink, its state written.
    pub async fn write_done(&self, id: BatchId, entry: &DoneEntry) -> Result<()> {
        self.create_json(&format!("commits/{}.json", id.get()), entry).await
    }

    /// Deletes batch `id`'s offset and commit entries (absent ones are fine): two deletes, whatever
    /// the log's length.
    pub async fn forget(&self, id: BatchId) -> Result<()> {
        for dir in ["commits", "offsets"] {
            self.delete(&format!("{dir}/{}.json", id.get())).await?;
        }
        for kind in STATES {
            self.delete(&state_entry(kind, id)).await?;
        }
        Ok(())
    }

    /// Deletes the offset and commit entries of batches before `keep_from`, keeping the log's cost
    /// bounded (Spark's `minBatchesToRetain`). Recovery only needs the latest entries.
    pub async fn purge_before(&self, keep_from: BatchId) -> Result<usize> {
        let mut deleted = 0;
        for dir in ["commits", "offsets"] {
            for n in self.list_numbered(dir).await?.into_iter().filter(|&n| n < keep_from.get()) {
                self.delete(&format!("{dir}/{n}.json")).await?;
                deleted += 1;
            }
        }
        for kind in STATES {
            for n in self.list_numbered_with(kind, ".parquet").await?.into_iter().filter(|&n| n < keep_from.get()) {
                self.delete(&state_entry(kind, BatchId::new(n))).await?;
            }
        }
        Ok(deleted)
    }
}

/// The kinds of state a query keeps per batch: an aggregation's (`state`), a deduplication's
/// (`dedup`).
pub const STATES: [&str; 2] = ["state", "dedup"];

/// Where the state of `kind` after batch `id` is kept.
pub fn state_entry(kind: &str, id: BatchId) -> String {
    format!("{kind}/{}.parquet", id.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mode;
    use crate::error::Error;
    use crate::id::Offset;

    #[tokio::test]
    async fn offsets_are_write_once_and_the_latest_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().to_str().unwrap()).unwrap();
        assert!(cp.latest_offsets().await.unwrap().is_none());
        for n in [0u64, 1, 10] {
            let entry = OffsetEntry {
                v: 1,
                range: OffsetRange { start: None, end: Offset::new(serde_json::json!(n)) },
                context: BatchContext::new(BatchId::new(n), Mode::Stream, 1_000),
            };
            cp.write_offsets(BatchId::new(n), &entry).await.unwrap();
        }
        let (id, entry) = cp.latest_offsets().await.unwrap().unwrap();
        assert_eq!(id, BatchId::new(10), "numeric, not lexicographic order");
        let again = cp.write_offsets(id, &entry).await.unwrap_err();
        assert!(matches!(again, Error::ConcurrentQuery { .. }), "{again}");
        cp.write_done(
            BatchId::new(10),
            &DoneEntry {
                v: 1,
                table_version: Some(3),
                input_records: 1,
                output_rows: 1,
                filtered: 0,
                quarantined: 0,
                late: 0,
                next_watermark_ms: None,
                state_rows: None,
                state_bytes: None,
                state_of: None,
                dedup_rows: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(cp.purge_before(BatchId::new(10)).await.unwrap(), 2, "offsets 0 and 1 go");
        assert_eq!(cp.list_numbered("offsets").await.unwrap(), [10]);
        cp.forget(BatchId::new(3)).await.unwrap();
        assert_eq!(cp.list_numbered("offsets").await.unwrap(), [10], "forgetting an absent batch is fine");
        assert_eq!(cp.latest_done().await.unwrap().unwrap().0, BatchId::new(10), "recovery still finds batch 10");
        let q1 = cp.query_metadata("q").await.unwrap();
        let q2 = cp.query_metadata("q").await.unwrap();
        assert_eq!(q1.id, q2.id, "the query id is stable across opens");
    }
}
