//! The batch runner: the same transform over a bounded source, chunk by chunk, each chunk one
//! idempotent Delta commit.
//!
//! # Invariant
//! A run plans its chunks once and records the plan, with its own app id, under
//! `<checkpoint>/batch/<target>/plan.json`. Chunk k commits with `txn {app id, version k}`; chunks
//! run in order, so after a crash the table's recorded version says exactly which chunks are done.
//! Re-running resumes after it; re-running a finished run writes nothing and says so.

use crate::checkpoint::Checkpoint;
use crate::context::{BatchContext, Mode};
use crate::contract::{BoundedSource, Chunk};
use crate::engine::{BatchReport, BatchWriter, Clock};
use crate::error::{Error, Result};
use crate::id::BatchId;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// `plan.json`: a batch run's chunks and identity, written once before the first chunk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchPlan {
    pub v: u32,
    /// The Delta txn app id of every chunk commit.
    pub app_id: String,
    pub source: String,
    /// The source table version the run was asked for (`--source-version`), `None`: its latest.
    #[serde(default)]
    pub source_version: Option<u64>,
    pub target: String,
    /// The logical time of every chunk's [`BatchContext`].
    pub planned_at_ms: i64,
    pub chunks: Vec<Chunk>,
}

/// What a batch run did.
#[derive(Clone, Debug, Serialize)]
pub struct BatchRunReport {
    pub app_id: String,
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

/// Loads the recorded plan, or plans and records it.
pub(crate) async fn load_or_plan(
    state: &Checkpoint,
    source: &mut dyn BoundedSource,
    describe_source: String,
    source_version: Option<u64>,
    target: String,
    replan: bool,
    clock: &dyn Clock,
) -> Result<BatchPlan> {
    if !replan && let Some(plan) = state.get_json::<BatchPlan>("plan.json").await? {
        if plan.target != target {
            return Err(Error::Internal(format!(
                "{}/plan.json is for {} but the run targets {target}",
                state.url(),
                plan.target
            )));
        }
        // Plans before v2 did not record the version asked for.
        if plan.v >= 2 && plan.source_version != source_version {
            let show = |v: Option<u64>| v.map_or_else(|| "its latest version".to_string(), |v| format!("version {v}"));
            return Err(Error::Unsupported(format!(
                "{}/plan.json: the batch run into {target} was planned over the source at {}, and this run asks for {}; \
                 run it again as planned, or plan anew with --replan (into a new target: its rows are appended again)",
                state.url(),
                show(plan.source_version),
                show(source_version),
            )));
        }
        return Ok(plan);
    }
    let chunks = source.plan().await?;
    let plan = BatchPlan {
        v: 2,
        app_id: format!("tidewater-batch-{}", uuid::Uuid::new_v4()),
        source: describe_source,
        source_version,
        target,
        planned_at_ms: clock.now_ms(),
        chunks,
    };
    state.put_json("plan.json", &plan).await?;
    tracing::info!(chunks = plan.chunks.len(), app_id = %plan.app_id, plan = %state.url(), "planned batch run");
    Ok(plan)
}

/// Runs the plan's chunks that the table does not record yet.
pub(crate) async fn run_plan(
    plan: &BatchPlan,
    source: &mut dyn BoundedSource,
    writer: &mut BatchWriter,
    plan_url: String,
    progress: &dyn Fn(usize, usize),
) -> Result<BatchRunReport> {
    let result = run_chunks(plan, source, writer, plan_url, progress).await;
    writer.settle().await;
    result
}

async fn run_chunks(
    plan: &BatchPlan,
    source: &mut dyn BoundedSource,
    writer: &mut BatchWriter,
    plan_url: String,
    progress: &dyn Fn(usize, usize),
) -> Result<BatchRunReport> {
    let recorded = writer.sink.committed_version().await?.unwrap_or(-1);
    let done = usize::try_from(recorded + 1).unwrap_or(0).min(plan.chunks.len());
    let mut report = BatchRunReport {
        app_id: plan.app_id.clone(),
        target: plan.target.clone(),
        quarantine: writer.quarantine.url().to_string(),
        plan: plan_url,
        chunks_total: plan.chunks.len(),
        chunks_already_done: done,
        chunks: Vec::new(),
    };
    if done > 0 {
        tracing::info!(done, total = plan.chunks.len(), "resuming batch run after the chunks already committed");
    }
    for (k, chunk) in plan.chunks.iter().enumerate().skip(done) {
        let started = Instant::now();
        let id = BatchId::new(k as u64);
        let ctx = BatchContext::new(id, Mode::Batch, plan.planned_at_ms);
        let read = source.read_chunk(chunk).await?;
        let (mut chunk_report, _) = writer.write(read, &ctx, &chunk.describe, crate::sink::Change::Append).await?;
        chunk_report.duration_us = started.elapsed().as_micros() as u64;
        tracing::info!(
            chunk = k,
            of = plan.chunks.len(),
            what = %chunk.describe,
            rows_in = chunk_report.input_records,
            rows_out = chunk_report.output_rows,
            quarantined = chunk_report.quarantined,
            late = chunk_report.late,
            version = ?chunk_report.table_version,
            duration_ms = chunk_report.duration_us / 1000,
            "chunk committed"
        );
        report.chunks.push(chunk_report);
        progress(k + 1, plan.chunks.len());
    }
    Ok(report)
}
