//! The micro-batch engine: Structured Streaming's loop over a [`Source`], the one batch step
//! ([`crate::step`]) and a checkpoint holding a write-ahead offset log and a log of done batches.
//!
//! ```text
//!  plan N ──► offsets/N ──► read ──► BatchStep (transform, state, commits) ──► state/N ──► commits/N ──► acknowledge
//!  (range,     (write-       (source)  keyed by (app id, N)                      (stateful)   (done)        (source may
//!   context)    ahead)                                                                                      release)
//! ```
//!
//! A crash anywhere leaves either no `commits/N` (batch N is replayed with its logged range and
//! context; the sinks skip what they already committed) or a complete batch: the recovery rule
//! ([`crate::checkpoint::Recovery`]).

mod state;
#[cfg(test)]
mod tests;
mod trigger;

pub use trigger::Trigger;

use crate::batch::{BatchReport, RunReport, SinkOutcome};
use crate::checkpoint::{Checkpoint, DoneEntry, OffsetEntry, Recovery};
use crate::clock::{Clock, Stop};
use crate::context::{BatchContext, Mode};
use crate::contract::Source;
use crate::crash::{CrashPoint, StepHook, pass};
use crate::error::Result;
use crate::id::{BatchId, Offset, OffsetRange, QueryId};
use crate::job::{Job, JobSink};
use crate::ops::aggregate::Aggregation;
use crate::ops::watermark::LateRule;
use crate::sink::{Change, Output, WriteKind};
use crate::step::{BatchStep, StepInput};
use state::StateStore;
use std::sync::Arc;
use std::time::Instant;

/// Offset and done entries kept behind the latest batch (Spark's `minBatchesToRetain`): each
/// batch deletes the entries of the batch this many before it, and a restart any older ones.
pub const RETAIN_BATCHES: u64 = 100;

/// A running streaming query.
pub struct StreamQuery {
    query: QueryId,
    source: Box<dyn Source>,
    step: BatchStep,
    checkpoint: Checkpoint,
    states: StateStore,
    hook: Option<StepHook>,
    stop: Stop,
    clock: Arc<dyn Clock>,
    /// The watermark the next planned batch runs with (from the last done entry).
    watermark_ms: Option<i64>,
    /// The watermark the last batch ran with.
    ran_watermark_ms: Option<i64>,
}

/// Where the stream is: the next batch's id and where it starts.
struct Position {
    next: BatchId,
    start: Option<Offset>,
}

impl StreamQuery {
    /// Opens `job`'s stream: its query id from the checkpoint (created on first start), its
    /// source on the checkpoint's `sources/0`, its sink under the query id's txn app id.
    pub(crate) async fn open(job: Job) -> Result<Self> {
        let meta = job.checkpoint.query_metadata(&job.name).await?;
        let app_id = meta.id.app_id();
        let sink = match &job.sink {
            JobSink::Table(_) => Output::Table(Box::new(job.delta_sink(job.table()?, &app_id, WriteKind::Stream))),
            JobSink::Rows(sink) => Output::Rows(sink.open().await?),
        };
        tracing::info!(%meta.id, sink = %sink.describe(), checkpoint = %job.checkpoint.url(), source = %job.source.describe(), "starting stream");
        warn_unbounded_state(&job);
        let step = job.step(sink, &app_id, WriteKind::Stream, job.quarantine()?, job.late_rule())?;
        let fingerprint = job.aggregation.as_ref().map(Aggregation::fingerprint);
        Ok(StreamQuery {
            query: meta.id,
            source: job.open_stream_source().await?,
            step,
            states: StateStore::new(job.checkpoint.clone(), fingerprint),
            checkpoint: job.checkpoint,
            hook: job.hook,
            stop: job.stop,
            clock: job.clock,
            watermark_ms: None,
            ran_watermark_ms: None,
        })
    }

    /// Runs batches under `trigger` until it is done or a stop is requested.
    pub async fn run(&mut self, trigger: Trigger) -> Result<RunReport> {
        tracing::info!(query = %self.query, %trigger, "running");
        let result = self.run_batches(trigger).await;
        self.step.settle().await;
        result
    }

    /// The loop: recover, then plan and run batches until the trigger says stop.
    async fn run_batches(&mut self, trigger: Trigger) -> Result<RunReport> {
        let mut report = self.empty_report();
        let mut at = self.recover(&mut report).await?;
        self.place_lanes(at.start.as_ref()).await?;
        let until = match trigger {
            Trigger::Once | Trigger::AvailableNow => self.source.available_end().await?,
            Trigger::ProcessingTime(_) => None,
        };
        while !self.stop_requested() {
            let tick = Instant::now();
            self.place_lanes(at.start.as_ref()).await?;
            let end = match trigger {
                Trigger::Once => until.clone(),
                _ => self.source.latest_offset(at.start.as_ref(), until.as_ref()).await?,
            };
            let has_data = end.is_some() && end != at.start;
            if let Some(end) = end.filter(|_| has_data) {
                report.batches.push(self.plan_and_run(&mut at, end, tick).await?);
            } else if let Some(start) = at.start.clone().filter(|_| self.may_close_without_data())
                && self.closes_without_data().await?
            {
                // No new data, but the watermark moved past what the last batch ran with: a
                // batch of no rows writes (append) or evicts the groups it closes, as Spark's
                // no-data batches do.
                report.batches.push(self.plan_and_run(&mut at, start, tick).await?);
            }
            if !self.goes_on(trigger, has_data, &at, until.as_ref(), tick).await? {
                break;
            }
        }
        Ok(report)
    }

    /// The recovery rule: where the stream goes on, after running again the logged batch that is
    /// not done.
    async fn recover(&mut self, report: &mut RunReport) -> Result<Position> {
        let offsets = self.checkpoint.latest_offsets().await?;
        if let Some(keep_from) = offsets.as_ref().and_then(|(last, _)| last.get().checked_sub(RETAIN_BATCHES)) {
            // Entries the previous run left behind (it purged batch by batch, or died first).
            self.checkpoint.purge_before(BatchId::new(keep_from)).await?;
        }
        let recovery = Recovery::from_logs(offsets, self.checkpoint.latest_done().await?);
        (self.watermark_ms, self.ran_watermark_ms) = (recovery.watermark_ms, recovery.ran_watermark_ms);
        let mut at = Position { next: recovery.next, start: recovery.start };
        if let Some(entry) = recovery.replay {
            tracing::info!(batch = %entry.context.batch_id, range = %entry.range, "replaying a batch that is not done");
            at.start = Some(entry.range.end.clone());
            report.batches.push(self.run_batch(entry, Instant::now()).await?);
        }
        Ok(at)
    }

    /// Plans batch `at.next` up to `end`, logs it ahead, runs it, and moves `at` past it.
    async fn plan_and_run(&mut self, at: &mut Position, end: Offset, tick: Instant) -> Result<BatchReport> {
        let entry = self.plan(at.next, at.start.clone(), end.clone()).await?;
        self.checkpoint.write_offsets(at.next, &entry).await?;
        pass(&self.hook, CrashPoint::AfterOffsetLog, at.next);
        let report = self.run_batch(entry, tick).await?;
        (at.next, at.start) = (at.next.next(), Some(end));
        Ok(report)
    }

    /// Runs one planned batch to its done entry. The order of these calls is the recovery
    /// protocol.
    #[tracing::instrument(name = "batch", skip_all, fields(query = %self.query, batch = entry.context.batch_id.get()))]
    async fn run_batch(&mut self, entry: OffsetEntry, started: Instant) -> Result<BatchReport> {
        let (id, range) = (entry.context.batch_id, entry.range.to_string());
        self.ran_watermark_ms = entry.context.watermark_ms;
        let read = self.source.read(&entry.range).await?;
        let prior = self.states.before(id, self.step.aggregation.is_some(), self.step.dedup.is_some()).await?;
        let lanes = self.source.lanes().map(|lanes| lanes.of(&entry.range)).unwrap_or_default();
        let input =
            StepInput { read, ctx: &entry.context, range: &range, change: Change::Append, prior, lanes: &lanes };
        let written = self.step.run(input).await?;
        if matches!(written.commit, SinkOutcome::Delivered { .. }) {
            pass(&self.hook, CrashPoint::AfterSinkDelivery, id);
        }
        let saved = self.states.save(id, written.states).await?;
        if saved.any() {
            pass(&self.hook, CrashPoint::AfterStateWrite, id);
        }
        let mut report = BatchReport {
            state_rows: saved.groups_rows,
            state_bytes: saved.groups_bytes,
            dedup_state_rows: saved.seen_rows,
            ..written.report
        };
        let next_watermark_ms = match &self.step.late.rule {
            LateRule::Watermark(wm) => wm.advance(entry.context.watermark_ms, written.max_event_ms),
            _ => entry.context.watermark_ms,
        };
        let fingerprint = self.step.aggregation.as_ref().map(Aggregation::fingerprint);
        self.checkpoint.write_done(id, &DoneEntry::new(&report, next_watermark_ms, fingerprint)).await?;
        self.watermark_ms = next_watermark_ms;
        if let Some(old) = id.get().checked_sub(RETAIN_BATCHES + 1) {
            // Two deletes per batch: a constant cost, where purging every 100th batch put 200
            // deletes on that batch's latency.
            self.checkpoint.forget(BatchId::new(old)).await?;
        }
        pass(&self.hook, CrashPoint::AfterCommitLog, id);
        self.source.acknowledge(&entry.range.end, &written.commit).await?;
        report.duration_us = started.elapsed().as_micros() as u64;
        log_batch(&report, &entry.context);
        Ok(report)
    }

    /// Batch `id` over `start..end`, with its logical time, watermark and the static tables'
    /// latest versions: what the offset log records.
    async fn plan(&mut self, id: BatchId, start: Option<Offset>, end: Offset) -> Result<OffsetEntry> {
        Ok(OffsetEntry {
            v: 1,
            range: OffsetRange { start, end },
            context: BatchContext {
                watermark_ms: self.watermark_ms,
                tables: self.step.statics.planned().await?,
                ..BatchContext::new(id, Mode::Stream, self.clock.now_ms())
            },
        })
    }

    /// Whether the loop plans another batch: `once` runs one; `available-now` until it reached
    /// the end it froze at start and no group closes without data; a processing-time trigger
    /// after waiting out its interval (or a stop).
    async fn goes_on(
        &mut self,
        trigger: Trigger,
        has_data: bool,
        at: &Position,
        until: Option<&Offset>,
        tick: Instant,
    ) -> Result<bool> {
        Ok(match trigger {
            Trigger::Once => false,
            Trigger::AvailableNow => {
                (has_data && at.start.as_ref() != until)
                    || (self.may_close_without_data() && self.closes_without_data().await?)
            }
            Trigger::ProcessingTime(interval) => {
                let wake = tokio::time::Instant::from_std(tick + interval);
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = self.stop.requested() => {}
                }
                true
            }
        })
    }

    fn stop_requested(&self) -> bool {
        let stop = self.stop.is_requested();
        if stop {
            tracing::info!("stop requested; exiting after the last committed batch");
        }
        stop
    }

    fn empty_report(&self) -> RunReport {
        RunReport {
            query: self.query,
            table: self.step.sink.describe(),
            quarantine: self.step.quarantine.url().to_string(),
            late: self.step.late.table.as_ref().map(|s| s.url().to_string()),
            batches: Vec::new(),
        }
    }

    /// Tells the source what the table records for the lanes it has no position for (Kafka
    /// partitions just assigned to this process).
    async fn place_lanes(&mut self, start: Option<&Offset>) -> Result<()> {
        let Some(lanes) = self.source.lanes() else { return Ok(()) };
        let ids = lanes.unplaced(start).await?;
        if ids.is_empty() {
            return Ok(());
        }
        let recorded = self.step.sink.recorded_versions(&ids).await?.unwrap_or_else(|| vec![None; ids.len()]);
        lanes.place(ids.into_iter().zip(recorded).collect()).await
    }

    /// Whether a batch without new data might close groups of the aggregation's state: the
    /// watermark has moved past the one the last batch ran with.
    fn may_close_without_data(&self) -> bool {
        self.step.aggregation.as_ref().is_some_and(Aggregation::evicts)
            && self.states.latest_groups().is_some()
            && self.watermark_ms > self.ran_watermark_ms
    }

    /// [`Self::may_close_without_data`], and a group of the state closes by the watermark.
    /// (`&mut self`, as every async method here: a `&self` held across an await would make the
    /// query's future need `Sync` sources and sinks to be `Send`.)
    async fn closes_without_data(&mut self) -> Result<bool> {
        let (Some(aggregation), Some(state)) = (&self.step.aggregation, self.states.latest_groups()) else {
            return Ok(false);
        };
        let (aggregation, state, watermark) = (aggregation.clone(), state.clone(), self.watermark_ms);
        crate::compute::blocking("closing groups", move || aggregation.closes_any(&state, watermark)).await
    }
}

/// Warns of a state that nothing evicts: it grows with the input for the life of the stream.
fn warn_unbounded_state(job: &Job) {
    if let Some(dedup) = &job.dedup
        && !dedup.evicts()
    {
        tracing::warn!(job = %job.name, "the deduplication's keys are never evicted: the job has no watermark, so they grow with the input");
    }
    if let Some(aggregation) = &job.aggregation
        && !aggregation.evicts()
    {
        tracing::warn!(job = %job.name, mode = %aggregation.mode, "the aggregation's state is never evicted: no watermark closes its groups (a window, or a date key cast from the watermark column), so it grows with the number of groups");
    }
}

fn log_batch(report: &BatchReport, ctx: &BatchContext) {
    tracing::info!(
        batch = report.batch.get(),
        offsets = %report.range,
        rows_in = report.input_records,
        rows_out = report.output_rows,
        filtered = report.filtered,
        quarantined = report.quarantined,
        late = report.late,
        deduplicated = report.deduplicated,
        watermark_ms = ?ctx.watermark_ms,
        state_rows = ?report.state_rows,
        state_bytes = ?report.state_bytes,
        version = ?report.table_version,
        duration_ms = report.duration_us / 1000,
        "{}",
        if report.replayed { "batch replayed (already in the table)" } else { "batch committed" }
    );
}
