//! The user-facing builder: a source, a transform, a Delta sink and a checkpoint, run as a stream
//! (`run(trigger)`) or as a bounded batch (`batch()`).

use crate::batch::RunReport;
use crate::bounded::{Backfill, BackfillPlan, BatchOptions, BatchRunReport};
use crate::checkpoint::Checkpoint;
use crate::clock::{Clock, Stop, SystemClock};
use crate::context::BatchContext;
use crate::contract::{SinkProvider, SourceProvider, Transform};
use crate::crash::StepHook;
use crate::engine::{StreamQuery, Trigger};
use crate::error::{Error, Result};
use crate::job::{Job, JobSink, default_late};
use crate::ops::aggregate::Aggregation;
use crate::ops::dedup::Dedup;
use crate::ops::static_tables::{StaticTable, StaticTables};
use crate::ops::watermark::Watermark;
use crate::scope::Scope;
use std::sync::Arc;
use std::time::Duration;

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
    source: Arc<dyn SourceProvider>,
    transform: Arc<dyn Transform>,
    table: Option<String>,
    /// A sink of another kind than a Delta table (console, memory, Kafka), instead of `table`.
    rows_sink: Option<Arc<dyn SinkProvider>>,
    partition_by: Vec<String>,
    key: Vec<String>,
    quarantine: Option<String>,
    watermark: Option<Watermark>,
    aggregation: Option<Aggregation>,
    dedup: Option<Dedup>,
    statics: StaticTables,
    late: Option<String>,
    checkpoint: Option<String>,
    hook: Option<StepHook>,
    stop: Stop,
    clock: Arc<dyn Clock>,
    heartbeat: Duration,
}

impl Pipeline {
    /// A pipeline named `name` reading `source`. The transform defaults to the identity.
    pub fn new(name: impl Into<String>, source: impl SourceProvider + 'static) -> Self {
        Pipeline {
            name: name.into(),
            source: Arc::new(source),
            transform: Arc::new(|input, _: &BatchContext| Ok(input)),
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
            heartbeat: Duration::from_secs(10),
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
    pub fn with_sink(mut self, sink: impl SinkProvider + 'static) -> Self {
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

    /// Sets rows whose `column` is older than the watermark (the largest event time seen in
    /// earlier batches minus `delay`) aside in streaming runs: see [`crate::ops::watermark`].
    pub fn with_watermark(mut self, column: impl Into<String>, delay: std::time::Duration) -> Self {
        self.watermark = Some(Watermark::new(column, delay));
        self
    }

    /// Runs the job as a streaming aggregation over the rows of its transform (row-wise: it
    /// derives keys, filters, joins static tables): each batch's rows merged into the state kept
    /// in the checkpoint, the results written as `aggregation.mode` says; a bounded run computes
    /// every group of its input. Build the aggregation from SQL ([`crate::ops::aggregate::AggregateQuery::parse`])
    /// or in Rust ([`crate::ops::aggregate::GroupBy`]). See [`crate::ops::aggregate`].
    pub fn with_aggregation(mut self, aggregation: Aggregation) -> Self {
        self.aggregation = Some(aggregation);
        self
    }

    /// Drops rows whose `keys` an earlier row had, within the watermark (Spark's
    /// `dropDuplicatesWithinWatermark`; every key seen is kept without one). See
    /// [`crate::ops::dedup`]. Set the watermark first: its column bounds the keys kept.
    pub fn with_dedup<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        let event_time = self.watermark.as_ref().map(|w| w.column.clone());
        self.dedup = Some(Dedup::new(keys.into_iter().map(Into::into).collect(), event_time));
        self
    }

    /// Reads the Delta table at `location` beside the input, as `name`: a SQL transform joins it
    /// by that name, a Rust one reads it with [`crate::BatchContext::table`]. Each batch reads
    /// the version that was the latest when it was planned, recorded in its offset-log entry, so
    /// a replay joins the same rows. See [`crate::ops::static_tables`].
    pub fn with_static_table(mut self, name: impl Into<String>, location: impl Into<String>) -> Self {
        self.statics = self.statics.with(StaticTable { name: name.into(), location: location.into() });
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

    /// How often a running backfill chunk records that its process is alive (default 10 s);
    /// another process judges it gone after three intervals without a sign.
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The late table of this pipeline's sink table, when it has a watermark.
    pub fn late_table(&self) -> Result<Option<String>> {
        if self.watermark.is_none() {
            return Ok(None);
        }
        Ok(match (&self.late, &self.table, &self.rows_sink) {
            (Some(late), _, _) => Some(late.clone()),
            (None, Some(table), _) => Some(default_late(table)),
            // Beside no table, late rows are only counted unless a late table is set.
            (None, None, Some(_)) => None,
            (None, None, None) => return Err(Error::Unsupported(format!("pipeline {}: no sink table set", self.name))),
        })
    }

    /// The pipeline resolved: its checkpoint opened, its sink, quarantine and late tables chosen.
    fn job(&self) -> Result<Job> {
        let location = self
            .checkpoint
            .as_deref()
            .ok_or_else(|| Error::Unsupported(format!("pipeline {}: no checkpoint location set", self.name)))?;
        let checkpoint = Checkpoint::open(location)?;
        let sink = match (&self.table, &self.rows_sink) {
            (Some(table), _) => JobSink::Table(table.clone()),
            (None, Some(sink)) => JobSink::Rows(sink.clone()),
            (None, None) => return Err(Error::Unsupported(format!("pipeline {}: no sink table set", self.name))),
        };
        let late = self.late_table()?;
        Ok(Job {
            name: self.name.clone(),
            source: self.source.clone(),
            transform: self.transform.clone(),
            sink,
            partition_by: self.partition_by.clone(),
            key: self.key.clone(),
            quarantine: self.quarantine.clone(),
            late,
            watermark: self.watermark.clone(),
            aggregation: self.aggregation.clone(),
            dedup: self.dedup.clone(),
            statics: self.statics.clone(),
            checkpoint,
            hook: self.hook.clone(),
            stop: self.stop.clone(),
            clock: self.clock.clone(),
            heartbeat: self.heartbeat,
        })
    }

    /// Streams the source into the table under `trigger` until it is done or stopped.
    pub async fn run(&self, trigger: Trigger) -> Result<RunReport> {
        if let (Some(_), Some(sink)) = (&self.table, &self.rows_sink) {
            return Err(Error::Unsupported(format!(
                "pipeline {}: it has a sink table and a {} sink; give it one",
                self.name,
                sink.describe()
            )));
        }
        StreamQuery::open(self.job()?).await?.run(trigger).await
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
        self.job()?.batch(options, progress).await
    }

    /// Whether the job's stream has committed to its sink table: the table version holding its
    /// latest batch.
    pub async fn stream_has_written(&self) -> Result<Option<i64>> {
        self.job()?.stream_has_written().await
    }

    /// The watermark the job's stream's latest batch ran with (its offset log), `None` before
    /// it ran or without a watermark: the groups an append-mode aggregation has written are
    /// those it closes.
    pub async fn stream_watermark(&self) -> Result<Option<i64>> {
        self.job()?.stream_watermark().await
    }

    /// Plans a backfill of `scope` into the job's sink table and records it under the job's
    /// checkpoint with a new id. Nothing is recorded when the plan is refused (an unknown
    /// column, a range with no data, commits or files without a sink key to replace by).
    pub async fn plan_backfill(&self, scope: impl Into<Scope>) -> Result<Backfill> {
        self.job()?.plan_backfill(scope.into()).await
    }

    /// Every recorded backfill of the job, oldest first.
    pub async fn backfill_plans(&self) -> Result<Vec<BackfillPlan>> {
        self.job()?.backfill_plans().await
    }

    /// A recorded backfill: `id`, or the latest planned into the job's table.
    pub async fn backfill(&self, id: Option<&str>) -> Result<Backfill> {
        self.job()?.backfill(id).await
    }
}
