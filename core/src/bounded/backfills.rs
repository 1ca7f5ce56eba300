//! A job's backfills: planning one over a scope and recording it, and finding those recorded.

use super::plan::{BY_DATE, BY_VERSIONS, BackfillPlan, Destination, Writes, backfills_dir, sliced};
use super::runner::Backfill;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::scope::{Scope, SlicePlan};

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
        let (target, quarantine) = (self.table()?, self.quarantine()?);
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
        let quarantine = self.quarantine()?;
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
