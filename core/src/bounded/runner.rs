//! Runs a recorded backfill: the chunks of this worker's share that the table does not record
//! yet, `parallel` at once, each through the one batch step ([`crate::step`]) as one commit that
//! replaces its slice (or its keys) of the sink table, with retries for transient errors.
//!
//! # Invariant
//! Beside the job's live stream, a chunk reads the source up to the stream's last committed
//! batch, as of the table version its slice was read at, and commits on that version: the chunk
//! and the stream's later batches together hold every source row once.

use super::ledger::{ChunkState, ChunkStatus, Ledger};
use super::plan::{BY_SPAN, BackfillPlan, Writes, sliced};
use crate::batch::BatchReport;
use crate::checkpoint::Checkpoint;
use crate::context::{BatchContext, Mode, Tables};
use crate::error::{Error, Result, Retry};
use crate::id::BatchId;
use crate::job::Job;
use crate::location::table_url;
use crate::ops::watermark::LateRule;
use crate::scope::{Scope, SliceChunk};
use crate::sink::{Change, DeltaSink, Output, Slice, Within, WriteKind};
use crate::step::{States, StepInput};
use serde::Serialize;

/// How a backfill runs.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Chunks at once: memory holds at most this many chunks' input and output.
    pub parallel: usize,
    /// `(i, n)`: this process takes only chunks `k` with `k % n == i` (a Kubernetes Indexed Job).
    pub worker: Option<(usize, usize)>,
}

impl RunOptions {
    /// Whether chunk `k` is this worker's.
    pub fn takes(&self, k: usize) -> bool {
        self.worker.is_none_or(|(i, n)| k % n == i)
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { parallel: 1, worker: None }
    }
}

/// Attempts per chunk for transient errors (object store, commit conflicts), with backoff. A
/// conflict between chunks has a winner each round, so `parallel` chunks settle in as many.
const ATTEMPTS: u32 = 8;

/// What a `run` did.
#[derive(Clone, Debug, Serialize)]
pub struct BackfillReport {
    pub id: String,
    pub target: String,
    pub chunks_total: usize,
    /// Chunks of this worker's share committed before this run.
    pub already_done: usize,
    /// Chunks this run committed, failed or left (cancel).
    pub chunks: Vec<ChunkStatus>,
    pub cancelled: bool,
}

impl BackfillReport {
    pub fn failed(&self) -> impl Iterator<Item = &ChunkStatus> {
        self.chunks.iter().filter(|c| c.state == ChunkState::Failed)
    }
}

/// A recorded backfill of a job: run it, read its status, cancel it.
pub struct Backfill {
    job: Job,
    dir: Checkpoint,
    ledger: Ledger,
    plan: BackfillPlan,
    /// What the chunks do with late rows: nothing, unless a recomputation leaves out what the
    /// stream set aside (`tidewater verify`).
    pub(super) late: LateRule,
}

impl Backfill {
    pub(crate) fn new(job: Job, dir: Checkpoint, plan: BackfillPlan) -> Self {
        let ledger = Ledger::new(dir.clone(), job.clock.clone(), job.heartbeat);
        Backfill { job, dir, ledger, plan, late: LateRule::None }
    }

    pub fn plan(&self) -> &BackfillPlan {
        &self.plan
    }

    /// Where the plan and the ledger are.
    pub fn location(&self) -> &str {
        self.dir.url()
    }

    fn sink(&self, k: usize) -> Result<DeltaSink> {
        let url = table_url(&self.plan.target)?;
        Ok(self.job.delta_sink(url, &self.plan.app_id(k), WriteKind::Batch))
    }

    /// Which chunks the table records as committed (the truth, whatever the ledger says).
    async fn committed(&self) -> Result<Vec<bool>> {
        Ok(self.recorded().await?.unwrap_or_else(|| vec![false; self.plan.chunks.len()]))
    }

    /// Which chunks the table records; `None` when the sink table does not exist yet.
    async fn recorded(&self) -> Result<Option<Vec<bool>>> {
        let app_ids: Vec<String> = (0..self.plan.chunks.len()).map(|k| self.plan.app_id(k)).collect();
        let recorded = self.sink(0)?.recorded_versions(&app_ids).await?;
        Ok(recorded.map(|r| r.iter().map(Option::is_some).collect()))
    }

    /// Every chunk's state: done when the table records its txn, else what the ledger says.
    /// A chunk whose process has not said it is alive for three heartbeats is pending again.
    pub async fn status(&self) -> Result<Vec<ChunkStatus>> {
        self.ledger.status(&self.plan.chunks, &self.committed().await?).await
    }

    /// No new chunk of this backfill starts after this; running ones finish (or leave nothing).
    pub async fn cancel(&self) -> Result<()> {
        self.ledger.cancel().await
    }

    /// What each chunk of this worker's share would read and replace: its status and the sink
    /// files it would remove now (`None`: found by key when it runs, or none: an append);
    /// commits nothing.
    pub async fn dry_run(&self, options: &RunOptions) -> Result<Vec<(ChunkStatus, Option<usize>)>> {
        let committed = self.committed().await?;
        let mut sink = self.sink(0)?;
        let mut out = Vec::new();
        for (k, chunk) in self.plan.chunks.iter().enumerate().filter(|(k, _)| options.takes(*k)) {
            let mut status = ChunkStatus::pending(k, chunk);
            if committed[k] {
                status.state = ChunkState::Done;
            }
            let removes = match &chunk.span {
                Some(span) => Some(sink.slice(Some(span), None).await?.map_or(0, |s| s.removes.len())),
                None => None,
            };
            out.push((status, removes));
        }
        Ok(out)
    }

    /// Runs the chunks of this worker's share that the table does not record yet, `parallel` at
    /// once. A chunk that fails for good is recorded as failed and the others go on;
    /// `progress` hears of every chunk that ends.
    pub async fn run(&self, options: &RunOptions, progress: &(dyn Fn(&ChunkStatus) + Sync)) -> Result<BackfillReport> {
        use futures::StreamExt as _;
        let recorded = self.recorded().await?;
        let committed = recorded.clone().unwrap_or_else(|| vec![false; self.plan.chunks.len()]);
        let share: Vec<usize> = (0..self.plan.chunks.len()).filter(|k| options.takes(*k)).collect();
        let pending: Vec<usize> = share.iter().copied().filter(|k| !committed[*k]).collect();
        let mut report = BackfillReport {
            id: self.plan.id.clone(),
            target: self.plan.target.clone(),
            chunks_total: self.plan.chunks.len(),
            already_done: share.len() - pending.len(),
            chunks: Vec::new(),
            cancelled: false,
        };
        // Chunks that find no sink table all create it, and all but one then lose their commit
        // to the creation and start again: the first chunk creates it alone.
        let alone = usize::from(recorded.is_none()).min(pending.len());
        let first = futures::stream::iter(pending[..alone].to_vec()).map(|k| self.run_chunk(k)).buffered(1);
        let rest = futures::stream::iter(pending[alone..].to_vec())
            .map(|k| self.run_chunk(k))
            .buffer_unordered(options.parallel.max(1));
        let mut runs = first.chain(rest);
        while let Some(status) = runs.next().await {
            match status? {
                Some(status) => {
                    progress(&status);
                    report.chunks.push(status);
                }
                None => report.cancelled = true,
            }
        }
        report.chunks.sort_by_key(|c| c.chunk);
        Ok(report)
    }

    /// One chunk, with retries; `None` when the backfill was cancelled before it started.
    async fn run_chunk(&self, k: usize) -> Result<Option<ChunkStatus>> {
        if self.ledger.is_cancelled().await? {
            return Ok(None);
        }
        let chunk = &self.plan.chunks[k];
        let mut status = ChunkStatus::pending(k, chunk);
        let started = std::time::Instant::now();
        loop {
            status.attempts += 1;
            self.ledger.running(&mut status).await?;
            let attempt = self.attempt_alive(k, chunk, &status).await;
            (status.heartbeat_ms, status.heartbeat_every_ms) = (None, None);
            match attempt {
                Ok(report) => {
                    status.done(report);
                    break;
                }
                Err(e) if e.retry() == Retry::Yes && status.attempts < ATTEMPTS => {
                    let wait = std::time::Duration::from_millis((250u64 << status.attempts).min(8_000));
                    tracing::warn!(backfill = %self.plan.id, chunk = k, range = %status.range, attempt = status.attempts, "chunk failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    status.state = ChunkState::Failed;
                    let chain = crate::error::error_chain(&e, ": ");
                    tracing::error!(backfill = %self.plan.id, chunk = k, range = %status.range, "chunk failed: {chain}");
                    status.error = Some(chain);
                    break;
                }
            }
        }
        status.duration_ms = Some(started.elapsed().as_millis() as u64);
        self.ledger.write(&status).await?;
        if status.state == ChunkState::Done {
            tracing::info!(backfill = %self.plan.id, chunk = k, range = %status.range, rows = ?status.rows, version = ?status.version, "chunk committed");
        }
        Ok(Some(status))
    }

    /// One try at chunk `k`, its heartbeat recorded meanwhile on its own task (so that a chunk
    /// busy computing cannot starve it), stopped before the chunk's final status is written.
    async fn attempt_alive(&self, k: usize, chunk: &SliceChunk, status: &ChunkStatus) -> Result<BatchReport> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let alive = tokio::spawn({
            let (ledger, status, id) = (self.ledger.clone(), status.clone(), self.plan.id.clone());
            async move {
                ledger
                    .beat(status, &id, async move {
                        // A dropped sender ends the beat as a sent stop does.
                        let _ = stopped.await;
                    })
                    .await;
            }
        });
        let attempt = self.attempt(k, chunk).await;
        if stop.send(()).is_err() {
            tracing::warn!(backfill = %self.plan.id, chunk = k, "the chunk's heartbeat task had ended early");
        }
        if let Err(e) = alive.await {
            tracing::warn!(backfill = %self.plan.id, chunk = k, "the chunk's heartbeat task ended badly: {e}");
        }
        attempt
    }

    /// One try at chunk `k`: the sink's slice and the job's stream's last batch from one table
    /// version; the source read up to that batch's end (all of the plan's version when the job
    /// has no stream); one commit replacing the slice, checked against commits since.
    async fn attempt(&self, k: usize, chunk: &SliceChunk) -> Result<BatchReport> {
        let span = chunk.span.clone();
        // A chunk replacing rows of the job's own sink pairs them with the stream's batches
        // there; an appended chunk, or one into another table, reads the source as planned.
        let stream = match self.plan.writes {
            Writes::Append => None,
            _ if !self.job.is_own_table(&self.plan.target)? => None,
            _ => self.job.stream_app_id().await?,
        };
        // The chunk's commit is written by this sink, on the snapshot its slice was read from.
        let mut sink = self.sink(k)?;
        let slice = sink.slice(span.as_ref(), stream.as_deref()).await?;
        let read = match &stream {
            None => {
                let mut source = self.job.source.open_bounded(self.plan.source_version).await?;
                source.read_chunk(&chunk.read).await?
            }
            Some(app_id) => {
                let batch = slice.as_ref().and_then(|s| s.recorded);
                let end = match batch {
                    Some(batch) => Some(self.job.stream_end(batch).await?),
                    None => None,
                };
                tracing::info!(backfill = %self.plan.id, chunk = k, stream = %app_id, batch = ?batch, "reading the source up to the stream's last committed batch");
                let mut stream = self.job.open_stream_source().await?;
                let history = stream.history().ok_or_else(|| {
                    Error::Unsupported(
                        "a backfill beside the job's stream needs a Delta source (this source cannot bound its stream)"
                            .into(),
                    )
                })?;
                let mut source = history.bounded_before(end.as_ref()).await?;
                let mut read = match (&span, &self.plan.scope) {
                    (Some(span), Scope::Range(range)) => {
                        let planned = sliced(source.as_mut(), BY_SPAN)?.plan_span(span, range.by).await?;
                        source.read_chunk(&planned.read).await?
                    }
                    _ => source.read_chunk(&chunk.read).await?,
                };
                // The stream read every record before its cut, and quarantined the bad ones.
                if !read.rejected.is_empty() {
                    tracing::info!(backfill = %self.plan.id, chunk = k, records = read.rejected.len(), "invalid records the stream quarantined already: not quarantined again");
                    read.input_records -= read.rejected.len() as u64;
                    read.rejected.clear();
                }
                read
            }
        };
        let change = match (&self.plan.writes, span) {
            (Writes::Slice, Some(span)) => Slice::replace(slice, span),
            (Writes::Keys(columns), _) => {
                let (rows, by, source) = (read.rows.clone(), columns.clone(), self.job.source.describe());
                let keys =
                    crate::compute::blocking("the chunk's keys", move || source_keys(&rows, &by, &source)).await?;
                Change::Replace {
                    removes: Vec::new(),
                    predicate: format!("[{}] in the keys of {}", columns.join(", "), chunk.range),
                    read_version: slice.map(|s| s.version),
                    within: Within::Keys { columns: columns.clone(), keys },
                }
            }
            (Writes::Append, _) => Change::Append,
            (Writes::Slice, None) => {
                return Err(Error::Internal(format!(
                    "backfill {} chunk {k}: a slice chunk without a span",
                    self.plan.id
                )));
            }
        };
        let quarantine = table_url(&self.plan.quarantine)?;
        let app_id = sink.app_id().to_string();
        let mut step =
            self.job.step(Output::Table(Box::new(sink)), &app_id, WriteKind::Batch, quarantine, self.late.clone())?;
        let mut ctx = BatchContext::new(BatchId::new(k as u64), Mode::Batch, self.plan.planned_at_ms);
        ctx.tables = Tables::new(self.plan.tables.clone(), Default::default());
        let input =
            StepInput { read, ctx: &ctx, range: &chunk.read.describe, change, prior: States::default(), lanes: &[] };
        let result = step.run(input).await;
        step.settle().await;
        Ok(result?.report)
    }
}

/// The distinct values of the key `columns` in a chunk's source rows: the rows of the sink it
/// replaces.
fn source_keys(
    rows: &polars::prelude::DataFrame,
    columns: &[String],
    source: &str,
) -> Result<polars::prelude::DataFrame> {
    use polars::prelude::*;
    if let Some(missing) = columns.iter().find(|c| !rows.schema().contains(c)) {
        return Err(Error::Unsupported(format!(
            "{source} has no column `{missing}`: a backfill by commits or files replaces the sink's rows by its key [{}], which must be columns of the source too",
            columns.join(", ")
        )));
    }
    rows.clone()
        .lazy()
        .select(columns.iter().map(|c| col(c.as_str())).collect::<Vec<_>>())
        .unique(None, UniqueKeepStrategy::Any)
        .collect()
        .map_err(Error::polars("the chunk's keys"))
}
