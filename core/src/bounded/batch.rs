//! `tidewater batch`: the job's transform over the whole source, as a backfill of everything.
//! Into a table its stream has not written, every file appended chunk by chunk (resumable); into
//! the job's own table after its stream wrote there, everything replaced by slice or by key;
//! an aggregation's every group computed from every chunk and written in one commit.

use super::ledger::ChunkState;
use super::plan::{Destination, Writes, backfills_dir};
use super::runner::{Backfill, RunOptions};
use crate::batch::{BatchReport, SourceBatch};
use crate::context::{BatchContext, Mode};
use crate::error::{Error, Result};
use crate::id::BatchId;
use crate::job::Job;
use crate::location::table_url;
use crate::ops::aggregate::{Aggregation, OutputMode};
use crate::ops::watermark::LateRule;
use crate::scope::{Granularity, RangeScope, Scope};
use crate::sink::{Change, Output, WriteKind};
use crate::step::{States, StepInput, replacing_everything};
use polars::prelude::DataFrame;
use serde::Serialize;
use std::sync::Arc;
use url::Url;

/// What a batch run did.
#[derive(Clone, Debug, Serialize)]
pub struct BatchRunReport {
    /// The backfill the run is (its plan id).
    pub backfill: String,
    pub target: String,
    pub quarantine: String,
    pub plan: String,
    pub chunks_total: usize,
    /// Chunks already committed by an earlier, interrupted or finished, run.
    pub chunks_already_done: usize,
    pub chunks: Vec<BatchReport>,
}

impl BatchRunReport {
    pub fn is_noop(&self) -> bool {
        self.chunks.is_empty() && self.chunks_already_done == self.chunks_total
    }

    pub fn total(&self, field: fn(&BatchReport) -> u64) -> u64 {
        self.chunks.iter().map(field).sum()
    }
}

/// Options of a bounded run.
#[derive(Clone, Debug, Default)]
pub struct BatchOptions {
    /// Write this table instead of the job's sink table.
    pub into: Option<String>,
    /// Read the source at this table version (Delta sources).
    pub source_version: Option<u64>,
    /// Plan again, with a new app id, even if a plan is recorded.
    pub replan: bool,
    /// The quarantine table of this run. Default: the job's when writing the job's table;
    /// `<into>_quarantine` when writing another table (so a reprocessing run never adds to the
    /// stream's quarantine).
    pub quarantine: Option<String>,
    /// Input rows to leave out, counted as late: a stream's late-table rows (without the
    /// bookkeeping columns), so a recomputation matches what the stream wrote.
    pub exclude_late: Option<Arc<DataFrame>>,
    /// An append-mode aggregation writes only the groups this watermark (epoch ms) has closed,
    /// as its stream has; the others are counted as pending (`state_rows` of the report).
    pub closed_by_ms: Option<i64>,
}

impl Job {
    /// Runs the transform over the whole source as a bounded input, chunk by chunk, through the
    /// backfill runner: into `options.into`, or the job's sink table. Into a table the job's
    /// stream has not written, the chunks are appended (a backfill of the source's files; the
    /// latest such run into the same table resumes, and a finished one is a no-op unless
    /// `replan`). Into the job's own sink after its stream wrote there, it replaces instead of
    /// appending a second copy: a backfill of everything (every day of a source sliced by date;
    /// every file, by the sink's key, otherwise). `progress(done, total)` is called after each
    /// chunk.
    pub async fn batch(
        &self,
        options: &BatchOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<BatchRunReport> {
        self.refuse_bounded_dedup("a batch run")?;
        if let Some(aggregation) = &self.aggregation {
            return self.batch_aggregation(aggregation, options, progress).await;
        }
        let own = match &options.into {
            None => true,
            Some(into) => self.is_own_table(table_url(into)?.as_str())?,
        };
        let mut backfill = match own && self.stream_has_written().await?.is_some() {
            true => self.plan_replacing_everything(options.replan).await?,
            false => self.plan_batch(options).await?,
        };
        if let Some(rows) = &options.exclude_late {
            backfill.late = LateRule::Exclude(rows.clone());
        }
        let total = backfill.plan().chunks.len();
        let before = backfill.status().await?.iter().filter(|c| c.state == ChunkState::Done).count();
        let done = std::sync::atomic::AtomicUsize::new(before);
        let report = backfill
            .run(&RunOptions::default(), &|_| {
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            })
            .await?;
        let failed: Vec<String> = report
            .failed()
            .map(|c| format!("chunk {} ({}): {}", c.chunk, c.range, c.error.as_deref().unwrap_or("?")))
            .collect();
        if !failed.is_empty() {
            return Err(Error::ChunksFailed { backfill: report.id, failed });
        }
        Ok(BatchRunReport {
            backfill: report.id,
            target: report.target,
            quarantine: backfill.plan().quarantine.clone(),
            plan: format!("{}/plan.json", backfill.location()),
            chunks_total: total,
            chunks_already_done: report.already_done,
            chunks: report.chunks.into_iter().filter_map(|c| c.report).collect(),
        })
    }

    /// The batch run into a table the job's stream has not written: the latest such run into the
    /// same table (to resume, or to find it done), or a new plan appending every file.
    async fn plan_batch(&self, options: &BatchOptions) -> Result<Backfill> {
        let target = self.target(options)?;
        let quarantine = self.batch_quarantine(options, &target)?;
        if !options.replan
            && let Some(plan) = self
                .backfill_plans()
                .await?
                .into_iter()
                .rev()
                .find(|p| p.writes == Writes::Append && p.target == target.as_str())
        {
            if plan.asked_version != options.source_version {
                let show =
                    |v: Option<u64>| v.map_or_else(|| "its latest version".to_string(), |v| format!("version {v}"));
                return Err(Error::Unsupported(format!(
                    "batch run {} into {target} was planned over the source at {}, and this run asks for {}; run it again as planned, or plan anew with --replan (into a new target: its rows are appended again)",
                    plan.id,
                    show(plan.asked_version),
                    show(options.source_version),
                )));
            }
            if plan.source != self.source.describe() {
                return Err(Error::Unsupported(format!(
                    "batch run {} into {target} was planned over {}, and this run reads {}; run it again as planned, or plan anew with --replan (into a new target: its rows are appended again)",
                    plan.id,
                    plan.source,
                    self.source.describe(),
                )));
            }
            let dir = backfills_dir(&self.checkpoint).child(&plan.id);
            return Ok(Backfill::new(self.clone(), dir, plan));
        }
        if !options.replan {
            self.refuse_earlier_batch_run(&target).await?;
        }
        let mut source = self.source.open_bounded(options.source_version).await?;
        let planned = source.plan_files().await?;
        let into = Destination { target, quarantine, asked_version: options.source_version };
        self.record_backfill(Scope::Files, planned, Writes::Append, into).await
    }

    /// The quarantine table of a batch run into `target`: the one asked for; `<into>_quarantine`
    /// into another table (never the stream's); the job's own into its own table.
    fn batch_quarantine(&self, options: &BatchOptions, target: &Url) -> Result<Url> {
        match (&options.quarantine, &options.into) {
            (Some(q), _) => table_url(q),
            (None, Some(_)) => Job::quarantine_beside(None, target),
            (None, None) => self.quarantine(),
        }
    }

    /// Refuses a batch run into `target` that a Tidewater before backfills recorded (under
    /// `<checkpoint>/batch/`, with its own txn app id): this one cannot resume it, and planning
    /// anew would append its rows a second time.
    async fn refuse_earlier_batch_run(&self, target: &Url) -> Result<()> {
        let earlier = self.checkpoint.child("batch");
        for key in earlier.list_dirs().await? {
            let at = earlier.child(&key);
            let Some(plan) = at.get_json::<serde_json::Value>("plan.json").await? else { continue };
            let into = plan.get("target").and_then(serde_json::Value::as_str).unwrap_or_default();
            if table_url(into).is_ok_and(|into| into == *target) {
                let app_id = plan.get("app_id").and_then(serde_json::Value::as_str).unwrap_or("?");
                return Err(Error::Unsupported(format!(
                    "{}/plan.json: an earlier Tidewater ran this batch into {target} (txn app id {app_id}), and this one cannot resume that run: its rows may be there already. To append the source again anyway, pass --replan; to start over, empty {target} and remove {}",
                    at.url(),
                    at.url(),
                )));
            }
        }
        Ok(())
    }

    /// What `tidewater batch` into the job's own sink does once the stream wrote there: every
    /// day of a source sliced by date, else every file by the sink's key, else refused (it would
    /// append a second copy). The latest such backfill instead, when it is not finished and not
    /// `replan` (a run killed midway resumes).
    async fn plan_replacing_everything(&self, replan: bool) -> Result<Backfill> {
        let mut source = self.source.open_bounded(None).await?;
        let by_key = source.everything();
        let dates = match source.sliced() {
            Some(sliced) => sliced.date_range(None).await,
            None => Err(Error::Unsupported(
                "this source cannot be sliced by date (a Delta source partitioned by a date column can)".into(),
            )),
        };
        let scope = match dates {
            Ok(Some((column, first, last))) => {
                Scope::Range(RangeScope::new(Some(column), first, last, Granularity::Day)?)
            }
            Ok(None) => by_key,
            Err(Error::Unsupported(why)) if self.key.is_empty() => {
                return Err(Error::Unsupported(format!(
                    "{}: the stream of job {} has written to this table; a batch run into it would append a second copy of those rows, and it cannot replace them instead ({why}; nor by key: the sink has no key). Reprocess into another table with --into TABLE (and compare the two with `tidewater verify`), or give the sink a key, and it is backfilled by key ({by_key})",
                    self.table()?,
                    self.name
                )));
            }
            Err(Error::Unsupported(_)) => by_key,
            Err(e) => return Err(e),
        };
        let latest =
            self.backfill_plans().await?.into_iter().rev().find(|p| {
                p.writes != Writes::Append && self.is_own_table(&p.target).unwrap_or(false) && p.scope == scope
            });
        if !replan && let Some(plan) = latest {
            let dir = backfills_dir(&self.checkpoint).child(&plan.id);
            let latest = Backfill::new(self.clone(), dir, plan);
            if latest.status().await?.iter().any(|c| c.state != ChunkState::Done) {
                return Ok(latest);
            }
        }
        self.plan_backfill(scope).await
    }

    /// The bounded run of an aggregating job: the source's chunks read in turn and merged into
    /// one state (in memory: the groups, not the input), then every group written in ONE
    /// commit, keyed by the txn (`<job>-batch`, 0): into a table the stream has not written,
    /// appended (a table already holding that txn is left as it is); into the job's own table
    /// after its stream wrote there, replacing all of it.
    async fn batch_aggregation(
        &self,
        aggregation: &Aggregation,
        options: &BatchOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<BatchRunReport> {
        let target = self.target(options)?;
        let quarantine = self.batch_quarantine(options, &target)?;
        let app_id = format!("{}-batch", self.name);
        // The run is one chunk: every group, in one commit.
        let finished = |total: usize, done: usize, chunks: Vec<BatchReport>| BatchRunReport {
            backfill: app_id.clone(),
            target: target.to_string(),
            quarantine: quarantine.to_string(),
            plan: String::new(),
            chunks_total: total,
            chunks_already_done: done,
            chunks,
        };
        let replacing = self.is_own_table(target.as_str())? && self.stream_has_written().await?.is_some();
        if replacing && aggregation.mode == OutputMode::Append {
            return Err(Error::Unsupported(format!(
                "job {}: a batch run would write every group into the append-mode table, open ones included, and the stream would append them again when they close; recompute into another table with --into",
                self.name
            )));
        }
        let late = match &options.exclude_late {
            Some(rows) => LateRule::Exclude(rows.clone()),
            None => LateRule::None,
        };
        let sink = self.delta_sink(target.clone(), &app_id, WriteKind::Batch);
        let mut step = self.step(Output::Table(Box::new(sink)), &app_id, WriteKind::Batch, quarantine.clone(), late)?;
        let recorded = step.sink.table()?.committed_version().await?;
        if !replacing && recorded.is_some() {
            tracing::info!(table = %target, app_id, "this batch run is in the table already");
            return Ok(finished(1, 1, Vec::new()));
        }
        let mut source = self.source.open_bounded(options.source_version).await?;
        let chunks = source.plan().await?;
        if chunks.is_empty() {
            return Ok(finished(0, 0, Vec::new()));
        }
        // Each replacing run is a new txn version: a finished one must not make the next a no-op.
        let id =
            match (replacing, recorded) {
                (true, Some(v)) => BatchId::new(u64::try_from(v + 1).map_err(|_| {
                    Error::Internal(format!("{target}: txn {app_id} records version {v}, not a batch id"))
                })?),
                _ => BatchId::new(0),
            };
        // Every chunk joins the static tables at their latest versions now.
        let mut ctx = BatchContext::new(id, Mode::Batch, self.clock.now_ms());
        ctx.tables = self.statics.planned().await?;
        let (mut groups, mut rejected, mut input_records, mut late_rows) = (None, Vec::new(), 0u64, 0u64);
        let mut last = SourceBatch { rows: DataFrame::empty(), rejected: Vec::new(), input_records: 0 };
        for (k, chunk) in chunks.iter().enumerate() {
            let read = source.read_chunk(chunk).await?;
            input_records += read.input_records;
            rejected.extend(read.rejected);
            if k + 1 == chunks.len() {
                last.rows = read.rows;
            } else {
                let (folded, late) = step.fold(groups.take(), read.rows, &ctx).await?;
                groups = Some(folded);
                late_rows += late;
            }
            progress(k + 1, chunks.len() + 1);
        }
        (last.rejected, last.input_records) = (rejected, input_records);
        let change = match replacing {
            false => Change::Append,
            true => replacing_everything(step.sink.table()?).await?,
        };
        if aggregation.mode == OutputMode::Append {
            ctx.watermark_ms = options.closed_by_ms;
        }
        let prior = States { groups, seen: None };
        let input = StepInput { read: last, ctx: &ctx, range: "every chunk", change, prior, lanes: &[] };
        let written = step.run(input).await;
        step.settle().await;
        let mut report = written?.report;
        report.late += late_rows;
        progress(chunks.len() + 1, chunks.len() + 1);
        Ok(finished(1, 0, vec![report]))
    }

    /// The table a batch run writes: `options.into`, or the job's sink table.
    fn target(&self, options: &BatchOptions) -> Result<Url> {
        match options.into.as_deref() {
            Some(into) => table_url(into),
            None => self.table(),
        }
    }
}
