//! A backfill's plan: what it reprocesses ([`crate::scope::Scope`]), how its chunks write
//! ([`Writes`]), its chunks, recorded once as `<checkpoint>/backfills/<id>/plan.json` before any
//! chunk runs; and the plans a job has recorded.
//!
//! # Invariant
//! Chunk `k` of plan `id` commits with `txn {appId: tidewater-backfill-<id>-<k>, version: 0}`
//! ([`BackfillPlan::app_id`]): a plan's chunks, once recorded, never change, so the table says
//! which are committed.

use super::runner::Backfill;
use crate::checkpoint::Checkpoint;
use crate::contract::{BoundedSource, SlicedSource};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::scope::{Chunk, RangeScope, Scope, SliceChunk, SlicePlan, Span};
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

/// Why a source that cannot slice refuses a plan by commits.
const BY_VERSIONS: &str = "--versions plans over the commits of a Delta source";

/// `source` sliced by date and commits, or refused with `why`.
pub(super) fn sliced<'a>(source: &'a mut dyn BoundedSource, why: &str) -> Result<&'a mut dyn SlicedSource> {
    source.sliced().ok_or_else(|| Error::Unsupported(why.to_string()))
}

/// Where a job's backfills live in its checkpoint.
pub fn backfills_dir(checkpoint: &Checkpoint) -> Checkpoint {
    checkpoint.child("backfills")
}

impl Job {
    /// Plans a backfill of `scope` into the job's sink table and records it under the job's
    /// checkpoint with a new id. Nothing is recorded when the plan is refused (an unknown
    /// column, a range with no data, commits or files without a sink key to replace by).
    pub async fn plan_backfill(&self, scope: Scope) -> Result<Backfill> {
        self.refuse_bounded_aggregation("a backfill")?;
        self.refuse_bounded_dedup("a backfill")?;
        let mut source = self.source.open_bounded(None).await?;
        let (mut planned, writes) = match &scope {
            Scope::Range(range) => (sliced(source.as_mut(), BY_DATE)?.plan_slices(range).await?, Writes::Slice),
            Scope::Versions { from, to } => {
                let planned = sliced(source.as_mut(), BY_VERSIONS)?.plan_versions(*from, *to).await?;
                (planned, self.writes_by_key(&scope)?)
            }
            Scope::Files => {
                if let everything @ Scope::Versions { .. } = source.everything() {
                    return Err(Error::Unsupported(format!(
                        "{}: --files plans over a landing directory's files; a Delta source's are planned by commits (--versions A..B; all of them: {}) or by dates (--from, --to)",
                        self.source.describe(),
                        everything,
                    )));
                }
                (source.plan_files().await?, self.writes_by_key(&scope)?)
            }
        };
        let mut scope = scope;
        if let (Scope::Range(range), Some(column)) = (&mut scope, &planned.column) {
            range.column = Some(column.clone());
        }
        planned.chunks.retain(|c| c.files > 0);
        if planned.chunks.is_empty() {
            let at = planned.version.map_or_else(String::new, |v| format!(" at version {v}"));
            return Err(Error::Unsupported(format!(
                "{}: no data in {scope}{at}: nothing to backfill, no plan recorded",
                self.source.describe(),
            )));
        }
        let (target, quarantine) = (self.table()?.clone(), self.quarantine.clone());
        self.record_backfill(scope, planned, writes, Destination { target, quarantine, asked_version: None }).await
    }

    /// Backfills of an aggregation by slices would each write partial groups: refused (a batch
    /// run recomputes every group instead).
    pub(super) fn refuse_bounded_aggregation(&self, what: &str) -> Result<()> {
        match &self.aggregation {
            Some(a) => Err(Error::Unsupported(format!(
                "job {}: {what} of an aggregation ({} mode) is not supported yet: its chunks would each write partial groups. `tidewater batch` recomputes every group in one commit",
                self.name, a.mode
            ))),
            None => Ok(()),
        }
    }

    /// Bounded runs are chunked, and duplicates in different chunks would both be kept.
    pub(super) fn refuse_bounded_dedup(&self, what: &str) -> Result<()> {
        match &self.dedup {
            Some(d) => Err(Error::Unsupported(format!(
                "job {}: {what} of a job with [dedup] (keys [{}]) is not supported yet: its chunks would each keep their own first row of a key",
                self.name,
                d.keys.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// A commit range or files reprocessed into the sink replace their rows by the sink's key.
    pub(super) fn writes_by_key(&self, scope: &Scope) -> Result<Writes> {
        if self.key.is_empty() {
            return Err(Error::Unsupported(format!(
                "a backfill of {scope} replaces, in the sink table, the rows of the keys its source rows have: give the job's sink a key (`key = [\"event_id\"]` under [sink]), or plan by date range with --from and --to"
            )));
        }
        Ok(Writes::Keys(self.key.clone()))
    }

    pub(super) async fn record_backfill(
        &self,
        scope: Scope,
        planned: SlicePlan,
        writes: Writes,
        into: Destination,
    ) -> Result<Backfill> {
        let planned_at_ms = self.clock.now_ms();
        let id = format!(
            "{}-{}",
            chrono::DateTime::from_timestamp_millis(planned_at_ms).unwrap_or_default().format("%Y%m%dT%H%M%S"),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let plan = BackfillPlan {
            v: 2,
            id: id.clone(),
            job: self.name.clone(),
            source: self.source.describe(),
            source_version: planned.version,
            asked_version: into.asked_version,
            target: into.target.to_string(),
            quarantine: into.quarantine.to_string(),
            scope,
            writes,
            planned_at_ms,
            tables: self.statics.latest().await?,
            chunks: planned.chunks,
        };
        let dir = backfills_dir(&self.checkpoint).child(&id);
        dir.create_json("plan.json", &plan).await?;
        tracing::info!(backfill = %id, chunks = plan.chunks.len(), plan = %dir.url(), "planned backfill");
        Ok(Backfill::new(self.clone(), dir, plan))
    }

    /// Every recorded backfill of the job, oldest first.
    pub async fn backfill_plans(&self) -> Result<Vec<BackfillPlan>> {
        let dir = backfills_dir(&self.checkpoint);
        self.table()?;
        let quarantine = &self.quarantine;
        let mut plans = Vec::new();
        for id in dir.list_dirs().await? {
            let at = dir.child(&id);
            if let Some(recorded) = at.get_json::<serde_json::Value>("plan.json").await? {
                let plan = BackfillPlan::from_recorded(recorded, quarantine.as_str())
                    .map_err(|why| Error::Unsupported(format!("{}/plan.json: {why}", at.url())))?;
                plans.push(plan);
            }
        }
        plans.sort_by(|a, b| (a.planned_at_ms, &a.id).cmp(&(b.planned_at_ms, &b.id)));
        Ok(plans)
    }

    /// A recorded backfill: `id`, or the latest planned.
    pub async fn backfill(&self, id: Option<&str>) -> Result<Backfill> {
        let plans = self.backfill_plans().await?;
        let plan = match id {
            Some(id) => plans.into_iter().find(|p| p.id == id).ok_or_else(|| {
                Error::Unsupported(format!("job {}: no backfill with id {id} (see `tidewater backfill list`)", self.name))
            })?,
            // The latest into the job's table: not a recomputation into another (`verify`).
            None => plans.into_iter().rev().find(|p| self.is_own_table(&p.target).unwrap_or(false)).ok_or_else(|| {
                Error::Unsupported(format!(
                    "job {}: no backfill planned yet; plan one with `tidewater backfill plan JOB --from DATE --to DATE`",
                    self.name
                ))
            })?,
        };
        let dir = backfills_dir(&self.checkpoint).child(&plan.id);
        Ok(Backfill::new(self.clone(), dir, plan))
    }
}
