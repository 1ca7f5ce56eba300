//! A backfill's plan: what it reprocesses ([`crate::scope::Scope`]), how its chunks write
//! ([`Writes`]), its chunks, recorded once as `<checkpoint>/backfills/<id>/plan.json` before any
//! chunk runs; and the plans a job has recorded.
//!
//! # Invariant
//! Chunk `k` of plan `id` commits with `txn {appId: tidewater-backfill-<id>-<k>, version: 0}`
//! ([`BackfillPlan::app_id`]): a plan's chunks, once recorded, never change, so the table says
//! which are committed.

use crate::checkpoint::Checkpoint;
use crate::contract::{BoundedSource, SlicedSource};
use crate::error::{Error, Result};
use crate::scope::{Chunk, RangeScope, Scope, SliceChunk, Span};
use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use url::Url;

/// How a chunk's output goes into the sink table, in the chunk's one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "columns", rename_all = "snake_case")]
pub enum Writes {
    /// It replaces the chunk's span ([`SliceChunk::span`]) of the table.
    Slice,
    /// It replaces the rows whose key (these sink key columns, also columns of the source) is
    /// the key of one of the chunk's source rows: a commit range or files reprocessed into a
    /// table that holds their earlier output.
    Keys(Vec<String>),
    /// It is appended: the table holds nothing of the source yet (`tidewater batch` into a new
    /// table, or into the sink before the job's stream wrote there).
    Append,
}

/// `plan.json`: a backfill's identity, scope and chunks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackfillPlan {
    pub v: u32,
    pub id: String,
    pub job: String,
    pub source: String,
    /// The source table version every chunk reads (`None`: a source without versions).
    pub source_version: Option<u64>,
    /// The version the run was asked for (`tidewater batch --source-version`); `None`: the
    /// latest at plan time.
    #[serde(default)]
    pub asked_version: Option<u64>,
    pub target: String,
    /// Where the chunks' invalid records go.
    pub quarantine: String,
    /// What is reprocessed; a range's column is the one resolved at plan time.
    pub scope: Scope,
    pub writes: Writes,
    pub planned_at_ms: i64,
    /// The static tables' versions every chunk reads (the latest at plan time).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tables: std::collections::BTreeMap<String, u64>,
    pub chunks: Vec<SliceChunk>,
}

impl BackfillPlan {
    /// The Delta txn app id of chunk `k`'s commit.
    pub fn app_id(&self, k: usize) -> String {
        format!("tidewater-backfill-{}-{k}", self.id)
    }

    /// A `plan.json` as any Tidewater recorded it: the current format as is; format 1 (date
    /// ranges over a partition column, before scopes, written by the first backfills)
    /// converted, its chunks' txn app ids unchanged, so the chunks it committed stay done.
    /// `quarantine`: the job's quarantine table, where format 1's chunks wrote.
    pub fn from_recorded(value: serde_json::Value, quarantine: &str) -> std::result::Result<Self, String> {
        match value.get("v").and_then(serde_json::Value::as_u64) {
            Some(2) => serde_json::from_value(value).map_err(|e| e.to_string()),
            Some(1) => {
                let v1: PlanV1 = serde_json::from_value(value).map_err(|e| format!("plan format 1: {e}"))?;
                Ok(v1.into_current(quarantine))
            }
            other => Err(format!(
                "plan format {} is not one this Tidewater reads (1 or 2): a newer Tidewater planned it",
                other.map_or_else(|| "(none)".to_string(), |v| v.to_string())
            )),
        }
    }
}

/// `plan.json` format 1.
#[derive(Deserialize)]
struct PlanV1 {
    id: String,
    job: String,
    source: String,
    source_version: u64,
    target: String,
    column: String,
    scope: RangeScope,
    planned_at_ms: i64,
    chunks: Vec<ChunkV1>,
}

#[derive(Deserialize)]
struct ChunkV1 {
    from: NaiveDate,
    until: NaiveDate,
    files: usize,
    estimated_rows: u64,
    estimated_bytes: u64,
    read: Chunk,
}

impl PlanV1 {
    fn into_current(self, quarantine: &str) -> BackfillPlan {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        let chunks = self
            .chunks
            .into_iter()
            .map(|c| {
                let span = Span::new(&self.column, midnight(c.from), midnight(c.until));
                SliceChunk::over(span, c.files, c.estimated_rows, c.estimated_bytes, c.read)
            })
            .collect();
        BackfillPlan {
            v: 2,
            id: self.id,
            job: self.job,
            source: self.source,
            source_version: Some(self.source_version),
            asked_version: None,
            target: self.target,
            quarantine: quarantine.to_string(),
            scope: Scope::Range(RangeScope { column: Some(self.column), ..self.scope }),
            writes: Writes::Slice,
            planned_at_ms: self.planned_at_ms,
            tables: Default::default(),
            chunks,
        }
    }
}

/// Where a recorded backfill writes.
pub(super) struct Destination {
    pub target: Url,
    pub quarantine: Url,
    pub asked_version: Option<u64>,
}

/// Why a source that cannot slice refuses a plan by date range.
pub(super) const BY_DATE: &str =
    "planning a backfill by date range needs a Delta source (a landing directory's --files plan is not available yet)";

/// Why a stream's history that cannot slice refuses to re-plan a chunk of a date-range plan.
pub(super) const BY_SPAN: &str = "planning a backfill by date range needs a Delta source";

/// Why a source that cannot slice refuses a plan by commits.
pub(super) const BY_VERSIONS: &str = "--versions plans over the commits of a Delta source";

/// `source` sliced by date and commits, or refused with `why`.
pub(super) fn sliced<'a>(source: &'a mut dyn BoundedSource, why: &str) -> Result<&'a mut dyn SlicedSource> {
    source.sliced().ok_or_else(|| Error::Unsupported(why.to_string()))
}

/// Where a job's backfills live in its checkpoint.
pub fn backfills_dir(checkpoint: &Checkpoint) -> Checkpoint {
    checkpoint.child("backfills")
}
