//! The micro-batch engine: Structured Streaming's loop over a [`Source`], a [`Transform`] and the
//! idempotent Delta sink, with a write-ahead offset log and a commit log.
//!
//! ```text
//!  plan N ──► offsets/N ──► read ──► transform ──► quarantine commit ──► sink commit ──► commits/N
//!  (range,     (write-       (source)  (pure)        (txn app, N)          (txn app, N)
//!   context)    ahead)
//! ```
//!
//! A crash anywhere leaves either no `commits/N` (batch N is replayed with its logged range and
//! context; the sinks skip what they already committed) or a complete batch.

mod trigger;

pub use trigger::{Clock, Stop, SystemClock, Trigger};

use crate::aggregate::{Aggregation, OutputMode};
use crate::checkpoint::{Checkpoint, CommitEntry, OffsetEntry, state_entry};
use crate::context::{BatchContext, Mode};
use crate::contract::{Lane, Sink, SinkCommit, Source, SourceBatch, Transform};
use crate::crash::{CrashPoint, StepHook, pass};
use crate::error::{Error, Result};
use crate::id::{BatchId, Offset, OffsetRange, QueryId};
use crate::sink::{DeltaSink, quarantine_frame};
use crate::watermark::{LateRule, late_frame};
use polars::prelude::{DataFrame, IntoLazy};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Offset and commit entries kept behind the latest batch (Spark's `minBatchesToRetain`): each
/// batch deletes the entries of the batch this many before it, and a restart any older ones.
pub const RETAIN_BATCHES: u64 = 100;

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
    /// Wall time from planning (or replay start) to the commit-log entry, in microseconds.
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

/// The pieces that turn one batch's input into commits; shared by the stream and the batch runner.
pub(crate) struct BatchWriter {
    pub transform: Arc<dyn Transform>,
    /// The query's sink: its table, or rows to a sink of another kind.
    pub sink: crate::sink::Output,
    pub quarantine: DeltaSink,
    /// What is late, and the table late rows go to (`None`: they are only counted).
    pub late: (LateRule, Option<DeltaSink>),
    /// An aggregating job's query and output mode, over the rows of its (row-wise) transform.
    pub aggregation: Option<Aggregation>,
    /// Rows whose keys were seen are dropped before the transform.
    pub dedup: Option<crate::dedup::Dedup>,
    /// The tables read beside the input, at the versions each batch recorded.
    pub statics: crate::static_tables::StaticTables,
}

/// What [`BatchWriter::write`] did.
pub(crate) struct Written {
    pub report: BatchReport,
    /// The largest event time of the on-time rows (for the next watermark).
    pub max_event_ms: Option<i64>,
    /// An aggregation's state after the batch.
    pub state: Option<DataFrame>,
    /// A deduplication's keys seen, after the batch.
    pub seen: Option<DataFrame>,
    /// What the sink did.
    pub commit: SinkCommit,
}

impl BatchWriter {
    /// Waits for the sinks' background work (checkpoints) before a run returns.
    pub async fn settle(&mut self) {
        self.sink.settle().await;
        self.quarantine.settle().await;
        if let Some(late) = self.late.1.as_mut() {
            late.settle().await;
        }
    }

    /// Sets late rows aside, transforms the rest and commits (quarantine, late table, then the
    /// sink, with `change`), all keyed by `ctx.batch_id`. An aggregation merges the rows into
    /// `state` (the state after the batch before) and writes what its output mode says, by its
    /// own change in a stream; a bounded run writes every group of its input. The sink's commit
    /// records the source's `lanes`. Returns the report minus timing.
    #[allow(clippy::too_many_arguments)]
    pub async fn write(
        &mut self,
        read: SourceBatch,
        ctx: &BatchContext,
        range: &str,
        change: crate::sink::Change,
        state: Option<DataFrame>,
        seen: Option<DataFrame>,
        lanes: &[Lane],
    ) -> Result<Written> {
        let id = ctx.batch_id;
        let mut context = ctx.clone();
        if !self.statics.is_empty() {
            context.tables = self.statics.at(ctx.tables.versions()).await?;
        }
        let (transform, rows, rule) = (self.transform.clone(), read.rows, self.late.0.clone());
        let aggregation = self.aggregation.clone().map(|a| match ctx.mode {
            Mode::Stream => a,
            // An append-mode recomputation given a watermark writes the groups it closes, as
            // the stream did; a bounded run's result is otherwise every group of its input.
            Mode::Batch if a.mode == OutputMode::Append && ctx.watermark_ms.is_some() => a,
            Mode::Batch => Aggregation { mode: OutputMode::Complete, ..a },
        });
        let dedup = self.dedup.clone();
        let (output, split, step, dedup) = crate::compute::blocking("transform", move || {
            let mut split = rule.split(rows, context.watermark_ms)?;
            let mut rows = std::mem::take(&mut split.on_time);
            let dedup = match dedup {
                Some(dedup) => {
                    let done = dedup.apply(seen, rows, context.watermark_ms)?;
                    rows = done.rows;
                    Some((done.dropped, done.state))
                }
                None => None,
            };
            let valid = rows.height() as u64;
            // The transform is row-wise; an aggregation runs over its rows.
            let rows = transform
                .apply(rows.lazy(), &context)?
                .collect()
                .map_err(|source| Error::Transform { batch: id, source })?;
            let (output, step) = match aggregation {
                None => (rows, None),
                Some(aggregation) => {
                    let step = aggregation.step(state, rows, context.watermark_ms, &context.tables)?;
                    (step.output, Some((aggregation.mode, step.changed, step.state)))
                }
            };
            Ok((output, (valid, split.late, split.max_event_ms), step, dedup))
        })
        .await?;
        let (deduplicated, seen) = match dedup {
            Some((dropped, seen)) => (dropped, (ctx.mode == Mode::Stream).then_some(seen)),
            None => (0, None),
        };
        let (change, state, pending) = match step {
            Some((mode, changed, state)) if ctx.mode == Mode::Stream => {
                (self.aggregation_change(id, mode, changed).await?, Some(state), None)
            }
            // A recomputation's groups left in the state are those still open.
            Some((OutputMode::Append, _, state)) => (change, None, Some(state.height() as u64)),
            _ => (change, None, None),
        };
        let (valid, late, max_event_ms) = split;
        let output_rows = output.height() as u64;
        let quarantined = read.rejected.len() as u64;
        if !read.rejected.is_empty() {
            self.quarantine_once(read.rejected, ctx, range, lanes).await?;
        }
        let late_rows = late.height() as u64;
        if let (Some(sink), Some(watermark)) = (self.late.1.as_mut(), ctx.watermark_ms.filter(|_| late_rows > 0)) {
            let rows =
                crate::compute::blocking("the late rows", move || late_frame(late, id.get() as i64, watermark)).await?;
            sink.add_batch(id, rows, range).await?;
        }
        let commit = self.sink.commit(id, output, range, change, lanes).await?;
        let report = BatchReport {
            batch: id,
            range: range.to_string(),
            input_records: read.input_records,
            output_rows,
            filtered: valid.saturating_sub(output_rows),
            quarantined,
            late: late_rows,
            table_version: commit.version(),
            replayed: matches!(commit, SinkCommit::Skipped { .. }),
            duration_us: 0,
            watermark_ms: ctx.watermark_ms,
            state_rows: pending,
            state_bytes: None,
            deduplicated,
            dedup_state_rows: None,
        };
        Ok(Written { report, max_event_ms, state, seen, commit })
    }

    /// Quarantines a batch's rejected records. With lanes, each lane's records at or after the
    /// offset the quarantine table records for it, and that lane's progress beside them: a record
    /// another process quarantined (it read the same offsets and died before its sink commit) is
    /// not written twice, whichever batch reads it again.
    async fn quarantine_once(
        &mut self,
        mut rejected: Vec<crate::contract::Rejected>,
        ctx: &BatchContext,
        range: &str,
        lanes: &[Lane],
    ) -> Result<()> {
        let mut recorded_lanes = Vec::new();
        if !lanes.is_empty() {
            let ids: Vec<String> = lanes.iter().map(|l| l.app_id.clone()).collect();
            let recorded = self.quarantine.recorded_versions(&ids).await?.unwrap_or_else(|| vec![None; lanes.len()]);
            let done: std::collections::HashMap<&str, i64> =
                lanes.iter().zip(&recorded).filter_map(|(lane, at)| at.map(|at| (lane.origin.as_str(), at))).collect();
            rejected.retain(|r| done.get(r.origin.as_str()).is_none_or(|&at| r.position as i64 >= at));
            for (lane, at) in lanes.iter().zip(recorded) {
                if at.is_none_or(|at| lane.to > at) {
                    recorded_lanes.push(Lane { from: at, ..lane.clone() });
                }
            }
        }
        let rows = quarantine_frame(&rejected, ctx)?;
        match self.quarantine.commit(ctx.batch_id, rows, range, crate::sink::Change::Append, &recorded_lanes).await? {
            SinkCommit::Superseded { lane, .. } => Err(Error::Internal(format!(
                "{}: another process quarantined records of {lane} while {} was being written; restart to write them once",
                self.quarantine.url(),
                ctx.batch_id
            ))),
            _ => Ok(()),
        }
    }

    /// How a stream's aggregation batch changes the table: update mode replaces the rows of the
    /// groups it changed (copy-on-write of the files holding them), complete mode every row,
    /// append mode adds the groups the watermark closed.
    async fn aggregation_change(
        &mut self,
        id: BatchId,
        mode: OutputMode,
        changed: DataFrame,
    ) -> Result<crate::sink::Change> {
        use crate::sink::{Change, Within};
        let crate::sink::Output::Table(sink) = &mut self.sink else {
            // Another kind of sink gets the batch's output rows, whatever the mode.
            return Ok(Change::Append);
        };
        let groups: Vec<String> = changed.get_column_names().iter().map(|c| c.to_string()).collect();
        Ok(match mode {
            OutputMode::Append => Change::Append,
            OutputMode::Update => Change::Replace {
                removes: Vec::new(),
                predicate: format!("[{}] in the groups batch {id} changed", groups.join(", ")),
                read_version: None,
                within: Within::Keys { columns: groups, keys: changed },
            },
            OutputMode::Complete => {
                let (read_version, removes) = sink.all_files().await?;
                Change::Replace { removes, predicate: "true".into(), read_version, within: Within::Anything }
            }
        })
    }
}

/// A running streaming query.
pub struct StreamQuery {
    pub(crate) query: QueryId,
    pub(crate) source: Box<dyn Source>,
    pub(crate) writer: BatchWriter,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) hook: Option<StepHook>,
    pub(crate) stop: Stop,
    pub(crate) clock: Arc<dyn Clock>,
    /// The watermark the next planned batch runs with (from the last commit-log entry).
    pub(crate) watermark_ms: Option<i64>,
    /// The states (by kind: `state`, `dedup`) after the last batch it ran.
    pub(crate) states: std::collections::HashMap<&'static str, (BatchId, DataFrame)>,
    /// The watermark the last batch ran with.
    pub(crate) ran_watermark_ms: Option<i64>,
}

impl StreamQuery {
    /// Runs batches under `trigger` until it is done or a stop is requested.
    pub async fn run(&mut self, trigger: Trigger) -> Result<RunReport> {
        let result = self.run_batches(trigger).await;
        self.writer.settle().await;
        result
    }

    async fn run_batches(&mut self, trigger: Trigger) -> Result<RunReport> {
        let mut report = RunReport {
            query: self.query,
            table: self.writer.sink.describe(),
            quarantine: self.writer.quarantine.url().to_string(),
            late: self.writer.late.1.as_ref().map(|s| s.url().to_string()),
            batches: Vec::new(),
        };
        let (mut next, mut start, pending) = self.recover().await?;
        if let Some(entry) = pending {
            tracing::info!(batch = %entry.context.batch_id, range = %entry.range, "replaying uncommitted batch");
            start = Some(entry.range.end.clone());
            report.batches.push(self.run_batch(entry, Instant::now()).await?);
        }
        self.place_lanes(start.as_ref()).await?;
        let until = match trigger {
            Trigger::Once | Trigger::AvailableNow => self.source.available_end().await?,
            Trigger::ProcessingTime(_) => None,
        };
        loop {
            if self.stop.is_requested() {
                tracing::info!("stop requested; exiting after the last committed batch");
                break;
            }
            let tick = Instant::now();
            self.place_lanes(start.as_ref()).await?;
            let end = match trigger {
                Trigger::Once => until.clone(),
                _ => self.source.latest_offset(start.as_ref(), until.as_ref()).await?,
            };
            let has_data = end.is_some() && end != start;
            if let Some(end) = end.filter(|_| has_data) {
                let entry = self.plan(next, start.clone(), end.clone()).await?;
                self.checkpoint.write_offsets(next, &entry).await?;
                pass(&self.hook, CrashPoint::AfterOffsetLog, next);
                report.batches.push(self.run_batch(entry, tick).await?);
                start = Some(end);
                next = next.next();
            } else if let Some(at) = start.clone().filter(|_| self.may_close_without_data())
                && self.closes_without_data().await?
            {
                // No new data, but the watermark moved past what the last batch ran with: a
                // batch of no rows writes (append) or evicts the groups it closes, as Spark's
                // no-data batches do.
                let entry = self.plan(next, Some(at.clone()), at).await?;
                self.checkpoint.write_offsets(next, &entry).await?;
                pass(&self.hook, CrashPoint::AfterOffsetLog, next);
                report.batches.push(self.run_batch(entry, tick).await?);
                next = next.next();
            }
            match trigger {
                Trigger::Once => break,
                Trigger::AvailableNow
                    if (!has_data || start == until)
                        && !(self.may_close_without_data() && self.closes_without_data().await?) =>
                {
                    break;
                }
                Trigger::AvailableNow => {}
                Trigger::ProcessingTime(interval) => {
                    let wake = tokio::time::Instant::from_std(tick + interval);
                    tokio::select! {
                        () = tokio::time::sleep_until(wake) => {}
                        () = self.stop.requested() => {}
                    }
                }
            }
        }
        Ok(report)
    }

    /// The recovery rule: the next batch id, where it starts, and the logged batch to replay.
    async fn recover(&mut self) -> Result<(BatchId, Option<Offset>, Option<OffsetEntry>)> {
        let Some((last, entry)) = self.checkpoint.latest_offsets().await? else {
            return Ok((BatchId::FIRST, None, None));
        };
        if let Some(keep_from) = last.get().checked_sub(RETAIN_BATCHES) {
            // Entries the previous run left behind (it purged batch by batch, or died first).
            self.checkpoint.purge_before(BatchId::new(keep_from)).await?;
        }
        let latest_commit = self.checkpoint.latest_commit().await?;
        let committed = latest_commit.as_ref().map(|(id, _)| *id);
        self.watermark_ms = latest_commit.and_then(|(_, c)| c.next_watermark_ms);
        self.ran_watermark_ms = entry.context.watermark_ms;
        if committed == Some(last) {
            Ok((last.next(), Some(entry.range.end), None))
        } else {
            Ok((last.next(), entry.range.start.clone(), Some(entry)))
        }
    }

    /// Tells the source what the table records for the lanes it has no position for (Kafka
    /// partitions just assigned to this process).
    async fn place_lanes(&mut self, start: Option<&Offset>) -> Result<()> {
        let ids = self.source.unplaced(start).await?;
        if ids.is_empty() {
            return Ok(());
        }
        let recorded = self.writer.sink.recorded_versions(&ids).await?.unwrap_or_else(|| vec![None; ids.len()]);
        self.source.place(ids.into_iter().zip(recorded).collect()).await
    }

    /// Whether a batch without new data might close groups of the aggregation's state: the
    /// watermark has moved past the one the last batch ran with.
    fn may_close_without_data(&self) -> bool {
        self.writer.aggregation.as_ref().is_some_and(Aggregation::evicts)
            && self.states.contains_key("state")
            && self.watermark_ms > self.ran_watermark_ms
    }

    /// [`Self::may_close_without_data`], and a group of the state closes by the watermark.
    async fn closes_without_data(&self) -> Result<bool> {
        let (Some(aggregation), Some((_, state))) = (&self.writer.aggregation, self.states.get("state")) else {
            return Ok(false);
        };
        let (aggregation, state, watermark) = (aggregation.clone(), state.clone(), self.watermark_ms);
        crate::compute::blocking("closing groups", move || aggregation.closes_any(&state, watermark)).await
    }

    /// Batch `id` over `start..end`, with its logical time, watermark and the static tables'
    /// latest versions: what the offset log records.
    async fn plan(&self, id: BatchId, start: Option<Offset>, end: Offset) -> Result<OffsetEntry> {
        let tables = crate::context::Tables::new(self.writer.statics.latest().await?, Default::default());
        Ok(OffsetEntry {
            v: 1,
            range: OffsetRange { start, end },
            context: BatchContext {
                watermark_ms: self.watermark_ms,
                tables,
                ..BatchContext::new(id, Mode::Stream, self.clock.now_ms())
            },
        })
    }

    /// The state of `kind` (an aggregation's, `state`; a deduplication's, `dedup`) after the
    /// batch before `id`: kept in memory from that batch, or read from the checkpoint (after a
    /// restart). `None` before the first batch.
    async fn state_before(&mut self, kind: &'static str, id: BatchId) -> Result<Option<DataFrame>> {
        let Some(before) = id.get().checked_sub(1).map(BatchId::new) else { return Ok(None) };
        if let Some((at, state)) = self.states.remove(kind)
            && at == before
        {
            return Ok(Some(state));
        }
        let rel = state_entry(kind, before);
        let recorded = self.checkpoint.get_json::<CommitEntry>(&format!("commits/{}.json", before.get())).await?;
        let ours = self.writer.aggregation.as_ref().map(Aggregation::fingerprint);
        if kind == "state"
            && let Some(theirs) = recorded.as_ref().and_then(|c| c.state_of.clone())
            && Some(&theirs) != ours.as_ref()
        {
            return Err(Error::Unsupported(format!(
                "{}/{rel}: the state was written by another query (its SQL or mode changed since batch {before}); a changed aggregation cannot go on from it: stream it into a new checkpoint and table, or backfill",
                self.checkpoint.url()
            )));
        }
        let Some(bytes) = self.checkpoint.get_bytes(&rel).await? else {
            let rows = recorded.and_then(|c| if kind == "state" { c.state_rows } else { c.dedup_rows });
            return match rows {
                Some(rows) => Err(Error::Internal(format!(
                    "{}/{rel}: batch {before} recorded a state of {rows} rows, and it is gone; the query cannot go on without it",
                    self.checkpoint.url()
                ))),
                // A query that had no such state before (its first stateful batch).
                None => Ok(None),
            };
        };
        let what = format!("{}/{rel}", self.checkpoint.url());
        crate::compute::blocking("reading a state", move || {
            use polars::prelude::SerReader as _;
            polars::prelude::ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .map(Some)
                .map_err(Error::polars(format!("reading {what}")))
        })
        .await
    }

    /// Writes the state of `kind` after batch `id` (before `commits/<id>`: a replay starts from
    /// the state of the batch before it) and keeps it for the next batch. Returns its size in
    /// bytes.
    async fn save_state(&mut self, kind: &'static str, id: BatchId, state: DataFrame) -> Result<u64> {
        let rel = state_entry(kind, id);
        let (kept, what) = (state.clone(), format!("{}/{rel}", self.checkpoint.url()));
        let bytes = crate::compute::blocking("writing a state", move || {
            let mut state = state;
            let mut bytes = Vec::new();
            polars::prelude::ParquetWriter::new(&mut bytes)
                .finish(&mut state)
                .map_err(Error::polars(format!("writing {what}")))?;
            Ok(bytes)
        })
        .await?;
        let size = bytes.len() as u64;
        self.checkpoint.put_bytes(&rel, bytes).await?;
        self.states.insert(kind, (id, kept));
        Ok(size)
    }

    /// Runs one planned batch to its commit-log entry. The order of these calls is the recovery
    /// protocol.
    #[tracing::instrument(name = "batch", skip_all, fields(query = %self.query, batch = entry.context.batch_id.get()))]
    async fn run_batch(&mut self, entry: OffsetEntry, started: Instant) -> Result<BatchReport> {
        let id = entry.context.batch_id;
        let range = entry.range.to_string();
        self.ran_watermark_ms = entry.context.watermark_ms;
        let read = self.source.read(&entry.range).await?;
        let state = match self.writer.aggregation {
            Some(_) => self.state_before("state", id).await?,
            None => None,
        };
        let seen = match self.writer.dedup {
            Some(_) => self.state_before("dedup", id).await?,
            None => None,
        };
        let lanes = self.source.lanes(&entry.range);
        let Written { mut report, max_event_ms, state, seen, commit: outcome } =
            self.writer.write(read, &entry.context, &range, crate::sink::Change::Append, state, seen, &lanes).await?;
        if matches!(outcome, SinkCommit::Delivered { .. }) {
            pass(&self.hook, CrashPoint::AfterSinkDelivery, id);
        }
        let state_rows = match state {
            Some(state) => {
                let rows = state.height() as u64;
                report.state_bytes = Some(self.save_state("state", id, state).await?);
                report.state_rows = Some(rows);
                Some(rows)
            }
            None => None,
        };
        let dedup_rows = match seen {
            Some(seen) => {
                let rows = seen.height() as u64;
                self.save_state("dedup", id, seen).await?;
                report.dedup_state_rows = Some(rows);
                Some(rows)
            }
            None => None,
        };
        if state_rows.is_some() || dedup_rows.is_some() {
            pass(&self.hook, CrashPoint::AfterStateWrite, id);
        }
        let next_watermark_ms = match &self.writer.late.0 {
            LateRule::Watermark(wm) => wm.advance(entry.context.watermark_ms, max_event_ms),
            _ => entry.context.watermark_ms,
        };
        let commit = CommitEntry {
            v: 1,
            table_version: report.table_version,
            input_records: report.input_records,
            output_rows: report.output_rows,
            filtered: report.filtered,
            quarantined: report.quarantined,
            late: report.late,
            next_watermark_ms,
            state_rows,
            state_bytes: report.state_bytes,
            state_of: state_rows.and(self.writer.aggregation.as_ref().map(Aggregation::fingerprint)),
            dedup_rows,
        };
        self.checkpoint.write_commit(id, &commit).await?;
        self.watermark_ms = next_watermark_ms;
        if let Some(old) = id.get().checked_sub(RETAIN_BATCHES + 1) {
            // Two deletes per batch: a constant cost, where purging every 100th batch put 200
            // deletes on that batch's latency.
            self.checkpoint.forget(BatchId::new(old)).await?;
        }
        pass(&self.hook, CrashPoint::AfterCommitLog, id);
        self.source.commit(&entry.range.end, &outcome).await?;
        report.duration_us = started.elapsed().as_micros() as u64;
        tracing::info!(
            batch = id.get(),
            offsets = %range,
            rows_in = report.input_records,
            rows_out = report.output_rows,
            filtered = report.filtered,
            quarantined = report.quarantined,
            late = report.late,
            deduplicated = report.deduplicated,
            watermark_ms = ?entry.context.watermark_ms,
            state_rows = ?report.state_rows,
            state_bytes = ?report.state_bytes,
            version = ?report.table_version,
            duration_ms = report.duration_us / 1000,
            "{}",
            if report.replayed { "batch replayed (already in the table)" } else { "batch committed" }
        );
        Ok(report)
    }
}
