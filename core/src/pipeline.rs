//! The user-facing builder: a source, a transform, a Delta sink and a checkpoint, run as a stream
//! (`run(trigger)`) or as a bounded batch (`batch()`).

use crate::aggregate::Aggregation;
use crate::backfill::{Backfill, BackfillPlan, ChunkState, RangeScope, RunOptions, Scope, SlicePlan, Writes};
use crate::checkpoint::Checkpoint;
use crate::contract::{SourceProvider, Transform};
use crate::crash::StepHook;
use crate::engine::BatchReport;
use crate::engine::{BatchWriter, Clock, RunReport, Stop, StreamQuery, SystemClock, Trigger};
use crate::error::{Error, Result};
use crate::location::table_url;
use crate::sink::{DeltaSink, WriteKind};
use crate::watermark::{LateRule, Watermark};
use polars::prelude::{DataFrame, IntoLazy};
use serde::Serialize;
use std::sync::Arc;
use url::Url;

/// A job: source → transform → Delta table, with its checkpoint.
///
/// ```no_run
/// # use tidewater_core::{Pipeline, Trigger, BatchContext, Result};
/// # use polars::prelude::*;
/// # async fn demo(source: impl tidewater_core::SourceProvider + 'static) -> Result<()> {
/// let report = Pipeline::new("events", source)
///     .with_transform(|input: LazyFrame, _ctx: &BatchContext| Ok(input.filter(col("amount").gt_eq(lit(0.0)))))
///     .with_table("/data/tables/events")
///     .with_partition_by(["date"])
///     .with_checkpoint("/data/checkpoints/events")
///     .run(Trigger::AvailableNow)
///     .await?;
/// println!("{} batches", report.batches.len());
/// # Ok(()) }
/// ```
pub struct Pipeline {
    name: String,
    pub(crate) source: Arc<dyn SourceProvider>,
    transform: Arc<dyn Transform>,
    table: Option<String>,
    /// A sink of another kind than a Delta table (console, memory, Kafka), instead of `table`.
    rows_sink: Option<Arc<dyn crate::contract::SinkProvider>>,
    partition_by: Vec<String>,
    key: Vec<String>,
    quarantine: Option<String>,
    watermark: Option<Watermark>,
    aggregation: Option<Aggregation>,
    dedup: Option<crate::dedup::Dedup>,
    statics: crate::static_tables::StaticTables,
    late: Option<String>,
    checkpoint: Option<String>,
    hook: Option<StepHook>,
    stop: Stop,
    clock: Arc<dyn Clock>,
}

/// The quarantine table beside `table` when none is configured: `<table>_quarantine`.
pub fn default_quarantine(table: &str) -> String {
    format!("{}_quarantine", table.trim_end_matches('/'))
}

/// The late table beside `table` when none is configured: `<table>_late`.
pub fn default_late(table: &str) -> String {
    format!("{}_late", table.trim_end_matches('/'))
}

/// Where a recorded backfill writes.
struct Destination {
    target: Url,
    quarantine: Url,
    asked_version: Option<u64>,
}

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

impl Pipeline {
    /// A pipeline named `name` reading `source`. The transform defaults to the identity.
    pub fn new(name: impl Into<String>, source: impl SourceProvider + 'static) -> Self {
        Pipeline {
            name: name.into(),
            source: Arc::new(source),
            transform: Arc::new(|input, _: &crate::BatchContext| Ok(input)),
            table: None,
            rows_sink: None,
            partition_by: Vec::new(),
            key: Vec::new(),
            quarantine: None,
            watermark: None,
            aggregation: None,
            dedup: None,
            statics: Default::default(),
            late: None,
            checkpoint: None,
            hook: None,
            stop: Stop::default(),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_transform(mut self, transform: impl Transform + 'static) -> Self {
        self.transform = Arc::new(transform);
        self
    }

    /// The sink table (local path or URL); created on first write.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Writes each batch's result rows to `sink` (console, memory, Kafka) instead of a Delta
    /// table. Its guarantee is the sink's own (see [`crate::Sink`]); the quarantine table is then
    /// `<checkpoint>/quarantine` unless set, and bounded runs, backfills and `verify`, which need
    /// a table, are refused.
    pub fn with_sink(mut self, sink: impl crate::contract::SinkProvider + 'static) -> Self {
        self.rows_sink = Some(Arc::new(sink));
        self
    }

    pub fn with_partition_by<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.partition_by = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The output's key columns, recorded in the table property `tidewater.key` when the sink
    /// creates the table, so `reconcile` and `verify` compare by it without being told.
    pub fn with_key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The quarantine table; by default `<table>_quarantine` beside the sink table.
    pub fn with_quarantine(mut self, table: impl Into<String>) -> Self {
        self.quarantine = Some(table.into());
        self
    }

    /// The checkpoint location (local path or URL).
    pub fn with_checkpoint(mut self, location: impl Into<String>) -> Self {
        self.checkpoint = Some(location.into());
        self
    }

    /// Called at each crash point (fault injection for tests).
    pub fn with_hook(mut self, hook: StepHook) -> Self {
        self.hook = Some(hook);
        self
    }

    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A handle that stops a running `run` after its batch in flight.
    pub fn stop_handle(&self) -> Stop {
        self.stop.clone()
    }

    fn table(&self) -> Result<&str> {
        self.table.as_deref().ok_or_else(|| {
            Error::Unsupported(match &self.rows_sink {
                Some(sink) => format!(
                    "pipeline {} writes to {}: bounded runs, backfills and verify need a Delta table sink",
                    self.name,
                    sink.describe()
                ),
                None => format!("pipeline {}: no sink table set", self.name),
            })
        })
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let location = self
            .checkpoint
            .as_deref()
            .ok_or_else(|| Error::Unsupported(format!("pipeline {}: no checkpoint location set", self.name)))?;
        Checkpoint::open(location)
    }

    /// The quarantine table for `table`: `explicit`, or `<table>_quarantine`.
    fn quarantine_url(explicit: Option<&str>, table: &Url) -> Result<Url> {
        match explicit {
            Some(q) => table_url(q),
            None => table_url(&default_quarantine(table.as_str())),
        }
    }

    /// Sets rows whose `column` is older than the watermark (the largest event time seen in
    /// earlier batches minus `delay`) aside in streaming runs: see [`crate::watermark`].
    pub fn with_watermark(mut self, column: impl Into<String>, delay: std::time::Duration) -> Self {
        self.watermark = Some(Watermark::new(column, delay));
        self
    }

    /// Runs the job as a streaming aggregation over the rows of its transform (row-wise: it
    /// derives keys, filters, joins static tables): each batch's rows merged into the state kept
    /// in the checkpoint, the results written as `aggregation.mode` says; a bounded run computes
    /// every group of its input. Build the aggregation from SQL ([`crate::aggregate::AggregateQuery::parse`])
    /// or in Rust ([`crate::aggregate::GroupBy`]). See [`crate::aggregate`].
    pub fn with_aggregation(mut self, aggregation: Aggregation) -> Self {
        self.aggregation = Some(aggregation);
        self
    }

    /// Drops rows whose `keys` an earlier row had, within the watermark (Spark's
    /// `dropDuplicatesWithinWatermark`; every key seen is kept without one). See
    /// [`crate::dedup`]. Set the watermark first: its column bounds the keys kept.
    pub fn with_dedup<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        let event_time = self.watermark.as_ref().map(|w| w.column.clone());
        self.dedup = Some(crate::dedup::Dedup::new(keys.into_iter().map(Into::into).collect(), event_time));
        self
    }

    /// Reads the Delta table at `location` beside the input, as `name`: a SQL transform joins it
    /// by that name, a Rust one reads it with [`crate::BatchContext::table`]. Each batch reads
    /// the version that was the latest when it was planned, recorded in its offset-log entry, so
    /// a replay joins the same rows. See [`crate::static_tables`].
    pub fn with_static_table(mut self, name: impl Into<String>, location: impl Into<String>) -> Self {
        self.statics = self.statics.with(crate::StaticTable { name: name.into(), location: location.into() });
        self
    }

    /// Whether the job runs as an aggregation.
    pub fn aggregates(&self) -> bool {
        self.aggregation.is_some()
    }

    /// Where late rows go (default `<table>_late`).
    pub fn with_late_table(mut self, table: impl Into<String>) -> Self {
        self.late = Some(table.into());
        self
    }

    /// The late table of this pipeline's sink table, when it has a watermark.
    pub fn late_table(&self) -> Result<Option<String>> {
        if self.watermark.is_none() {
            return Ok(None);
        }
        Ok(match (&self.late, &self.rows_sink) {
            (Some(late), _) => Some(late.clone()),
            // Beside no table, late rows are only counted unless a late table is set.
            (None, Some(_)) => None,
            (None, None) => Some(default_late(self.table()?)),
        })
    }

    fn writer(
        &self,
        table: Url,
        quarantine: Url,
        late: (LateRule, Option<Url>),
        app_id: &str,
        kind: WriteKind,
    ) -> Result<BatchWriter> {
        self.writer_into(
            crate::sink::Output::Table(Box::new(self.sink(table, app_id, kind))),
            app_id,
            kind,
            quarantine,
            late,
        )
    }

    /// The job's sink into `table`, with its partitioning, key and crash hook.
    pub(crate) fn sink(&self, table: Url, app_id: &str, kind: WriteKind) -> DeltaSink {
        DeltaSink::new(table, app_id, kind)
            .with_partition_by(self.partition_by.clone())
            .with_key(self.key.clone())
            .with_hook(self.hook.clone())
    }

    fn writer_into(
        &self,
        sink: crate::sink::Output,
        app_id: &str,
        kind: WriteKind,
        quarantine: Url,
        late: (LateRule, Option<Url>),
    ) -> Result<BatchWriter> {
        let quarantine = DeltaSink::new(quarantine, app_id, kind);
        let late = (late.0, late.1.map(|url| DeltaSink::new(url, app_id, kind)));
        Ok(BatchWriter {
            transform: self.transform.clone(),
            sink,
            quarantine,
            late,
            aggregation: self.aggregation.clone(),
            dedup: self.dedup.clone(),
            statics: self.statics.clone(),
        })
    }

    /// Streams the source into the table under `trigger` until it is done or stopped.
    pub async fn run(&self, trigger: Trigger) -> Result<RunReport> {
        let checkpoint = self.checkpoint()?;
        let meta = checkpoint.query_metadata(&self.name).await?;
        let app_id = meta.id.app_id();
        let (output, quarantine) = match &self.rows_sink {
            Some(sink) if self.table.is_some() => {
                return Err(Error::Unsupported(format!(
                    "pipeline {}: it has a sink table and a {} sink; give it one",
                    self.name,
                    sink.describe()
                )));
            }
            Some(sink) => {
                let quarantine = match self.quarantine.as_deref() {
                    Some(q) => table_url(q)?,
                    None => table_url(checkpoint.child("quarantine").url())?,
                };
                (crate::sink::Output::Rows(sink.open().await?), quarantine)
            }
            None => {
                let table = table_url(self.table()?)?;
                let quarantine = Self::quarantine_url(self.quarantine.as_deref(), &table)?;
                (crate::sink::Output::Table(Box::new(self.sink(table, &app_id, WriteKind::Stream))), quarantine)
            }
        };
        tracing::info!(%meta.id, sink = %output.describe(), checkpoint = %checkpoint.url(), %trigger, source = %self.source.describe(), "starting stream");
        let late = match &self.watermark {
            Some(wm) => (LateRule::Watermark(wm.clone()), self.late_table()?.as_deref().map(table_url).transpose()?),
            None => (LateRule::None, None),
        };
        let mut query = StreamQuery {
            query: meta.id,
            source: self.source.open_stream(checkpoint.child("sources/0")).await?,
            writer: self.writer_into(output, &app_id, WriteKind::Stream, quarantine, late)?,
            checkpoint,
            hook: self.hook.clone(),
            stop: self.stop.clone(),
            clock: self.clock.clone(),
            watermark_ms: None,
            states: Default::default(),
            ran_watermark_ms: None,
        };
        if let Some(dedup) = &self.dedup
            && !dedup.evicts()
        {
            tracing::warn!(job = %self.name, "the deduplication's keys are never evicted: the job has no watermark, so they grow with the input");
        }
        if let Some(aggregation) = &self.aggregation
            && !aggregation.evicts()
        {
            tracing::warn!(job = %self.name, mode = %aggregation.mode, "the aggregation's state is never evicted: no watermark closes its groups (a window, or a date key cast from the watermark column), so it grows with the number of groups");
        }
        query.run(trigger).await
    }

    /// Whether the job's stream has committed to its sink table (its query id's txn is there).
    pub async fn stream_has_written(&self) -> Result<Option<i64>> {
        let Some(app_id) = self.stream_app_id().await? else {
            return Ok(None);
        };
        DeltaSink::new(table_url(self.table()?)?, &app_id, WriteKind::Stream).committed_version().await
    }

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
        let total = backfill.plan.chunks.len();
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
            quarantine: backfill.plan.quarantine.clone(),
            plan: format!("{}/plan.json", backfill.location()),
            chunks_total: total,
            chunks_already_done: report.already_done,
            chunks: report.chunks.into_iter().filter_map(|c| c.report).collect(),
        })
    }

    /// The batch run into a table the job's stream has not written: the latest such run into the
    /// same table (to resume, or to find it done), or a new plan appending every file.
    async fn plan_batch(&self, options: &BatchOptions) -> Result<Backfill<'_>> {
        let target = table_url(options.into.as_deref().map_or_else(|| self.table(), Ok)?)?;
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
            let dir = self.backfills()?.child(&plan.id);
            return Ok(Backfill { pipeline: self, dir, plan, late: LateRule::None });
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
            (None, Some(_)) => Self::quarantine_url(None, target),
            (None, None) => Self::quarantine_url(self.quarantine.as_deref(), target),
        }
    }

    /// Refuses a batch run into `target` that a Tidewater before backfills recorded (under
    /// `<checkpoint>/batch/`, with its own txn app id): this one cannot resume it, and planning
    /// anew would append its rows a second time.
    async fn refuse_earlier_batch_run(&self, target: &Url) -> Result<()> {
        let earlier = self.checkpoint()?.child("batch");
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
    async fn plan_replacing_everything(&self, replan: bool) -> Result<Backfill<'_>> {
        let mut source = self.source.open_bounded(None).await?;
        let by_key = source.everything();
        let scope = match source.date_range(None).await {
            Ok(Some((column, first, last))) => {
                Scope::Range(RangeScope::new(Some(column), first, last, crate::backfill::Granularity::Day)?)
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
            let dir = self.backfills()?.child(&plan.id);
            let latest = Backfill { pipeline: self, dir, plan, late: LateRule::None };
            if latest.status().await?.iter().any(|c| c.state != ChunkState::Done) {
                return Ok(latest);
            }
        }
        self.plan_backfill(scope).await
    }

    /// The writer of one backfill chunk, committing through `sink` (the job's [`Pipeline::sink`]
    /// that read the chunk's slice, so the commit is built on the snapshot it holds).
    pub(crate) fn backfill_writer(&self, sink: DeltaSink, quarantine: Url, late: LateRule) -> Result<BatchWriter> {
        let (app_id, kind) = (sink.app_id().to_string(), sink.kind());
        self.writer_into(crate::sink::Output::Table(Box::new(sink)), &app_id, kind, quarantine, (late, None))
    }

    /// Whether `target` (a table URL) is the job's sink table.
    pub(crate) fn is_own_table(&self, target: &str) -> Result<bool> {
        Ok(table_url(self.table()?)?.as_str() == target)
    }

    /// The job's backfills' directory in its checkpoint.
    fn backfills(&self) -> Result<Checkpoint> {
        Ok(crate::backfill::backfills_dir(&self.checkpoint()?))
    }

    /// Plans a backfill of `scope` into the job's sink table and records it under the job's
    /// checkpoint with a new id. Nothing is recorded when the plan is refused (an unknown
    /// column, a range with no data, commits or files without a sink key to replace by).
    pub async fn plan_backfill(&self, scope: impl Into<Scope>) -> Result<Backfill<'_>> {
        self.refuse_bounded_aggregation("a backfill")?;
        self.refuse_bounded_dedup("a backfill")?;
        let scope = scope.into();
        let mut source = self.source.open_bounded(None).await?;
        let (mut planned, writes) = match &scope {
            Scope::Range(range) => (source.plan_slices(range).await?, Writes::Slice),
            Scope::Versions { from, to } => (source.plan_versions(*from, *to).await?, self.writes_by_key(&scope)?),
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
        let target = table_url(self.table()?)?;
        let quarantine = Self::quarantine_url(self.quarantine.as_deref(), &target)?;
        self.record_backfill(scope, planned, writes, Destination { target, quarantine, asked_version: None }).await
    }

    /// Backfills of an aggregation by slices would each write partial groups: refused (a batch
    /// run recomputes every group instead).
    fn refuse_bounded_aggregation(&self, what: &str) -> Result<()> {
        match &self.aggregation {
            Some(a) => Err(Error::Unsupported(format!(
                "job {}: {what} of an aggregation ({} mode) is not supported yet: its chunks would each write partial groups. `tidewater batch` recomputes every group in one commit",
                self.name, a.mode
            ))),
            None => Ok(()),
        }
    }

    /// Bounded runs are chunked, and duplicates in different chunks would both be kept.
    fn refuse_bounded_dedup(&self, what: &str) -> Result<()> {
        match &self.dedup {
            Some(d) => Err(Error::Unsupported(format!(
                "job {}: {what} of a job with [dedup] (keys [{}]) is not supported yet: its chunks would each keep their own first row of a key",
                self.name,
                d.keys.join(", ")
            ))),
            None => Ok(()),
        }
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
        let target = table_url(options.into.as_deref().map_or_else(|| self.table(), Ok)?)?;
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
        if replacing && aggregation.mode == crate::aggregate::OutputMode::Append {
            return Err(Error::Unsupported(format!(
                "job {}: a batch run would write every group into the append-mode table, open ones included, and the stream would append them again when they close; recompute into another table with --into",
                self.name
            )));
        }
        let late = match &options.exclude_late {
            Some(rows) => LateRule::Exclude(rows.clone()),
            None => LateRule::None,
        };
        let mut writer =
            self.writer(target.clone(), quarantine.clone(), (late.clone(), None), &app_id, WriteKind::Batch)?;
        let recorded = writer.sink.table()?.committed_version().await?;
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
        let id = match (replacing, recorded) {
            (true, Some(v)) => crate::BatchId::new(u64::try_from(v + 1).unwrap_or_default()),
            _ => crate::BatchId::new(0),
        };
        // Every chunk joins the static tables at their latest versions now.
        let mut ctx = crate::BatchContext::new(id, crate::Mode::Batch, self.clock.now_ms());
        ctx.tables = crate::context::Tables::new(self.statics.latest().await?, Default::default());
        let mut chunk_ctx = ctx.clone();
        if !self.statics.is_empty() {
            chunk_ctx.tables = self.statics.at(ctx.tables.versions()).await?;
        }
        let (mut state, mut rejected, mut input_records, mut late_rows) = (None, Vec::new(), 0u64, 0u64);
        let mut last = crate::SourceBatch { rows: DataFrame::empty(), rejected: Vec::new(), input_records: 0 };
        for (k, chunk) in chunks.iter().enumerate() {
            let read = source.read_chunk(chunk).await?;
            input_records += read.input_records;
            rejected.extend(read.rejected);
            if k + 1 == chunks.len() {
                last.rows = read.rows;
            } else {
                let (agg, rule, before) = (aggregation.clone(), late.clone(), state.take());
                let (transform, ctx) = (self.transform.clone(), chunk_ctx.clone());
                let (folded, late) = crate::compute::blocking("aggregating a chunk", move || {
                    let split = rule.split(read.rows, None)?;
                    let rows = transform
                        .apply(split.on_time.lazy(), &ctx)?
                        .collect()
                        .map_err(|source| Error::Transform { batch: ctx.batch_id, source })?;
                    Ok((agg.fold(before, rows, &ctx.tables)?, split.late.height() as u64))
                })
                .await?;
                state = Some(folded);
                late_rows += late;
            }
            progress(k + 1, chunks.len() + 1);
        }
        (last.rejected, last.input_records) = (rejected, input_records);
        let change = match replacing {
            false => crate::sink::Change::Append,
            true => {
                let (read_version, removes) = writer.sink.table()?.all_files().await?;
                crate::sink::Change::Replace {
                    removes,
                    predicate: "true".into(),
                    read_version,
                    within: crate::sink::Within::Anything,
                }
            }
        };
        if aggregation.mode == crate::aggregate::OutputMode::Append {
            ctx.watermark_ms = options.closed_by_ms;
        }
        let written = writer.write(last, &ctx, "every chunk", change, state, None, &[]).await;
        writer.settle().await;
        let mut report = written?.report;
        report.late += late_rows;
        progress(chunks.len() + 1, chunks.len() + 1);
        Ok(finished(1, 0, vec![report]))
    }

    /// A commit range or files reprocessed into the sink replace their rows by the sink's key.
    fn writes_by_key(&self, scope: &Scope) -> Result<Writes> {
        if self.key.is_empty() {
            return Err(Error::Unsupported(format!(
                "a backfill of {scope} replaces, in the sink table, the rows of the keys its source rows have: give the job's sink a key (`key = [\"event_id\"]` under [sink]), or plan by date range with --from and --to"
            )));
        }
        Ok(Writes::Keys(self.key.clone()))
    }

    async fn record_backfill(
        &self,
        scope: Scope,
        planned: SlicePlan,
        writes: Writes,
        into: Destination,
    ) -> Result<Backfill<'_>> {
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
        let dir = self.backfills()?.child(&id);
        dir.create_json("plan.json", &plan).await?;
        tracing::info!(backfill = %id, chunks = plan.chunks.len(), plan = %dir.url(), "planned backfill");
        Ok(Backfill { pipeline: self, dir, plan, late: LateRule::None })
    }

    /// Every recorded backfill of the job, oldest first.
    pub async fn backfill_plans(&self) -> Result<Vec<BackfillPlan>> {
        let dir = self.backfills()?;
        let quarantine = Self::quarantine_url(self.quarantine.as_deref(), &table_url(self.table()?)?)?;
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
    pub async fn backfill(&self, id: Option<&str>) -> Result<Backfill<'_>> {
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
        let dir = self.backfills()?.child(&plan.id);
        Ok(Backfill { pipeline: self, dir, plan, late: LateRule::None })
    }

    /// The Delta txn app id of the job's stream, once it has started (its checkpoint has query
    /// metadata); `None` when the job has never streamed.
    pub(crate) async fn stream_app_id(&self) -> Result<Option<String>> {
        let meta = self.checkpoint()?.get_json::<crate::checkpoint::QueryMetadata>("metadata").await?;
        Ok(meta.map(|m| m.id.app_id()))
    }

    /// The watermark the job's stream's latest batch ran with (its offset log), `None` before
    /// it ran or without a watermark: the groups an append-mode aggregation has written are
    /// those it closes.
    pub async fn stream_watermark(&self) -> Result<Option<i64>> {
        Ok(self.checkpoint()?.latest_offsets().await?.and_then(|(_, entry)| entry.context.watermark_ms))
    }

    /// Where the job's stream's batch `batch` ended, from its offset log.
    pub(crate) async fn stream_end(&self, batch: i64) -> Result<crate::Offset> {
        let checkpoint = self.checkpoint()?;
        let rel = format!("offsets/{batch}.json");
        let entry = checkpoint.get_json::<crate::checkpoint::OffsetEntry>(&rel).await?.ok_or_else(|| {
            Error::Internal(format!(
                "{}/{rel}: the sink table records batch {batch} of the job's stream, but the checkpoint has no offsets for it",
                checkpoint.url()
            ))
        })?;
        Ok(entry.range.end)
    }

    /// The job's stream's source, on its own state in the checkpoint.
    pub(crate) async fn open_stream_source(&self) -> Result<Box<dyn crate::Source>> {
        self.source.open_stream(self.checkpoint()?.child("sources/0")).await
    }
}
