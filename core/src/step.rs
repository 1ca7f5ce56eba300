//! One micro-batch, from the rows a source read to the batch's Delta commit: late rows set aside,
//! deduplication, the transform, the aggregation's state, then the quarantine, late and sink
//! commits, all keyed by the batch's id. The stream ([`crate::engine`]), `tidewater batch` and
//! backfill chunks ([`crate::bounded`]) run every batch through this one step.
//!
//! ```text
//!  SourceBatch ─► late split ─► dedup ─► Transform ─► aggregation ─► quarantine ─► late table ─► sink
//!                 (watermark)   (seen)   (pure)       (state)        (txn app, N)  (txn app, N)  (txn app, N)
//! ```
//!
//! # Invariant
//! Everything the step writes is keyed by (app id, batch id): run again with the same input and
//! context (a replay after a crash), it writes nothing twice. It writes no checkpoint entry: the
//! caller records the state and the batch's end after it returns.

use crate::batch::{BatchReport, Lane, Rejected, SinkOutcome, SourceBatch};
use crate::context::{BatchContext, Mode};
use crate::contract::Transform;
use crate::error::{Error, Result};
use crate::id::BatchId;
use crate::ops::aggregate::{Aggregation, OutputMode};
use crate::ops::dedup::Dedup;
use crate::ops::static_tables::StaticTables;
use crate::ops::watermark::{LateRule, late_frame};
use crate::sink::{Change, DeltaSink, Output, Within, quarantine_frame};
use polars::prelude::{DataFrame, IntoLazy};
use std::sync::Arc;

/// What turns one batch's input into commits; shared by the stream and the bounded runs.
pub(crate) struct BatchStep {
    pub transform: Arc<dyn Transform>,
    /// The query's sink: its table, or rows to a sink of another kind.
    pub sink: Output,
    pub quarantine: DeltaSink,
    pub late: LateRows,
    /// An aggregating job's query and output mode, over the rows of its (row-wise) transform.
    pub aggregation: Option<Aggregation>,
    /// Rows whose keys were seen are dropped before the transform.
    pub dedup: Option<Dedup>,
    /// The tables read beside the input, at the versions each batch recorded.
    pub statics: StaticTables,
}

/// Which rows are late, and the table they go to (`None`: they are only counted).
pub(crate) struct LateRows {
    pub rule: LateRule,
    pub table: Option<DeltaSink>,
}

/// One batch as the step takes it.
pub(crate) struct StepInput<'a> {
    pub read: SourceBatch,
    pub ctx: &'a BatchContext,
    /// The batch's offsets or chunk, for messages and the commits' operation parameters.
    pub range: &'a str,
    /// How the sink's rows go into the table (an aggregation's stream batch decides its own).
    pub change: Change,
    /// The states after the batch before: an aggregation's groups, a deduplication's keys.
    pub prior: States,
    /// The source's lanes the sink's commit records.
    pub lanes: &'a [Lane],
}

/// A query's states between batches.
#[derive(Default)]
pub(crate) struct States {
    /// An aggregation's groups.
    pub groups: Option<DataFrame>,
    /// A deduplication's keys seen.
    pub seen: Option<DataFrame>,
}

/// What [`BatchStep::run`] did.
pub(crate) struct Written {
    /// The batch's counters, minus its duration.
    pub report: BatchReport,
    /// The largest event time of the on-time rows (for the next watermark).
    pub max_event_ms: Option<i64>,
    /// The states after the batch (a stream's; a bounded run keeps none).
    pub states: States,
    /// What the sink did.
    pub commit: SinkOutcome,
}

/// The rows a batch gives its sink, before any commit: [`BatchStep::compute`].
struct Computed {
    output: DataFrame,
    /// Rows the transform was given (on time, not duplicates).
    valid: u64,
    late: DataFrame,
    max_event_ms: Option<i64>,
    /// An aggregation's mode, the groups the batch changed and the state after it.
    groups: Option<(OutputMode, DataFrame, DataFrame)>,
    /// A deduplication's dropped rows and keys seen after the batch.
    dedup: Option<(u64, DataFrame)>,
}

impl BatchStep {
    /// Waits for the sinks' background work (checkpoints) before a run returns.
    pub async fn settle(&mut self) {
        self.sink.settle().await;
        self.quarantine.settle().await;
        if let Some(late) = self.late.table.as_mut() {
            late.settle().await;
        }
    }

    /// Runs one batch: computes its rows, then commits them (quarantine, late table, then the
    /// sink). An aggregation merges the rows into the prior state and writes what its output
    /// mode says, by its own change in a stream; a bounded run writes every group of its input.
    pub async fn run(&mut self, input: StepInput<'_>) -> Result<Written> {
        let StepInput { read, ctx, range, change, prior, lanes } = input;
        let id = ctx.batch_id;
        let SourceBatch { rows, rejected, input_records } = read;
        let computed = self.compute(rows, ctx, prior).await?;
        let (deduplicated, seen) = match computed.dedup {
            Some((dropped, seen)) => (dropped, (ctx.mode == Mode::Stream).then_some(seen)),
            None => (0, None),
        };
        let (change, groups, pending) = match computed.groups {
            Some((mode, changed, state)) if ctx.mode == Mode::Stream => {
                (self.aggregation_change(id, mode, changed).await?, Some(state), None)
            }
            // A recomputation's groups left in the state are those still open.
            Some((OutputMode::Append, _, state)) => (change, None, Some(state.height() as u64)),
            _ => (change, None, None),
        };
        let output_rows = computed.output.height() as u64;
        let quarantined = rejected.len() as u64;
        if !rejected.is_empty() {
            self.quarantine_once(rejected, ctx, range, lanes).await?;
        }
        let late = computed.late.height() as u64;
        self.write_late(computed.late, ctx, range).await?;
        let commit = self.sink.add_batch(id, computed.output, range, change, lanes).await?;
        let report = BatchReport {
            batch: id,
            range: range.to_string(),
            input_records,
            output_rows,
            filtered: computed.valid.saturating_sub(output_rows),
            quarantined,
            late,
            table_version: commit.version(),
            replayed: matches!(commit, SinkOutcome::Skipped { .. }),
            duration_us: 0,
            watermark_ms: ctx.watermark_ms,
            state_rows: pending,
            state_bytes: None,
            deduplicated,
            dedup_state_rows: None,
        };
        let states = States { groups, seen };
        Ok(Written { report, max_event_ms: computed.max_event_ms, states, commit })
    }

    /// Folds one chunk of a bounded aggregation into `groups` without writing anything (the
    /// last chunk goes through [`BatchStep::run`], which writes every group). Returns the state
    /// and the rows set aside as late.
    pub async fn fold(
        &mut self,
        groups: Option<DataFrame>,
        rows: DataFrame,
        ctx: &BatchContext,
    ) -> Result<(DataFrame, u64)> {
        let aggregation = self.aggregation.clone().ok_or_else(|| {
            Error::Internal(format!("{}: a chunk folded into the state of a query without aggregation", ctx.batch_id))
        })?;
        let ctx = self.statics.read_into(ctx).await?;
        let (transform, rule) = (self.transform.clone(), self.late.rule.clone());
        crate::compute::blocking("aggregating a chunk", move || {
            let split = rule.split(rows, None)?;
            let late = split.late.height() as u64;
            let rows = transformed(transform.as_ref(), split.on_time, &ctx)?;
            Ok((aggregation.fold(groups, rows, &ctx.tables)?, late))
        })
        .await
    }

    /// The batch's output rows and new states, on the compute pool; nothing written.
    async fn compute(&mut self, rows: DataFrame, ctx: &BatchContext, prior: States) -> Result<Computed> {
        let context = self.statics.read_into(ctx).await?;
        let (transform, rule, dedup) = (self.transform.clone(), self.late.rule.clone(), self.dedup.clone());
        let aggregation = self.aggregation.clone().map(|a| match ctx.mode {
            Mode::Stream => a,
            // An append-mode recomputation given a watermark writes the groups it closes, as
            // the stream did; a bounded run's result is otherwise every group of its input.
            Mode::Batch if a.mode == OutputMode::Append && ctx.watermark_ms.is_some() => a,
            Mode::Batch => Aggregation { mode: OutputMode::Complete, ..a },
        });
        crate::compute::blocking("transform", move || {
            let mut split = rule.split(rows, context.watermark_ms)?;
            let mut rows = std::mem::take(&mut split.on_time);
            let dedup = match dedup {
                Some(dedup) => {
                    let done = dedup.apply(prior.seen, rows, context.watermark_ms)?;
                    rows = done.rows;
                    Some((done.dropped, done.state))
                }
                None => None,
            };
            let valid = rows.height() as u64;
            // The transform is row-wise; an aggregation runs over its rows.
            let rows = transformed(transform.as_ref(), rows, &context)?;
            let (output, groups) = match aggregation {
                None => (rows, None),
                Some(aggregation) => {
                    let step = aggregation.step(prior.groups, rows, context.watermark_ms, &context.tables)?;
                    (step.output, Some((aggregation.mode, step.changed, step.state)))
                }
            };
            Ok(Computed { output, valid, late: split.late, max_event_ms: split.max_event_ms, groups, dedup })
        })
        .await
    }

    /// Writes the batch's late rows to the late table, when it has one and rows are late.
    async fn write_late(&mut self, late: DataFrame, ctx: &BatchContext, range: &str) -> Result<()> {
        let id = ctx.batch_id;
        let (Some(table), Some(watermark)) = (self.late.table.as_mut(), ctx.watermark_ms) else { return Ok(()) };
        if late.height() == 0 {
            return Ok(());
        }
        let rows =
            crate::compute::blocking("the late rows", move || late_frame(late, id.get() as i64, watermark)).await?;
        table.append(id, rows, range).await?;
        Ok(())
    }

    /// Quarantines a batch's rejected records. With lanes, each lane's records at or after the
    /// offset the quarantine table records for it, and that lane's progress beside them: a record
    /// another process quarantined (it read the same offsets and died before its sink commit) is
    /// not written twice, whichever batch reads it again.
    async fn quarantine_once(
        &mut self,
        mut rejected: Vec<Rejected>,
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
        match self.quarantine.commit(ctx.batch_id, rows, range, Change::Append, &recorded_lanes).await? {
            SinkOutcome::Superseded { lane, .. } => Err(Error::Internal(format!(
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
    async fn aggregation_change(&mut self, id: BatchId, mode: OutputMode, changed: DataFrame) -> Result<Change> {
        let Output::Table(sink) = &mut self.sink else {
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
            OutputMode::Complete => replacing_everything(sink).await?,
        })
    }
}

/// The transform over `rows`, collected.
fn transformed(transform: &dyn Transform, rows: DataFrame, ctx: &BatchContext) -> Result<DataFrame> {
    transform.apply(rows.lazy(), ctx)?.collect().map_err(|source| Error::Transform { batch: ctx.batch_id, source })
}

/// The change replacing every row of the table `sink` writes (complete mode; a batch run's
/// recomputation into the table its stream wrote).
pub(crate) async fn replacing_everything(sink: &mut DeltaSink) -> Result<Change> {
    let (read_version, removes) = sink.all_files().await?;
    Ok(Change::Replace { removes, predicate: "true".into(), read_version, within: Within::Anything })
}
