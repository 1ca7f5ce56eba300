//! Backfills: the job's transform over slices of the source's history, each slice replacing its
//! own slice of the sink table in one Delta commit.
//!
//! # Invariant
//! A plan is recorded once, under `<checkpoint>/backfills/<id>/plan.json`, before any chunk runs.
//! Chunk `k` commits with `txn {appId: tidewater-backfill-<id>-<k>, version: 0}`, in the same
//! commit as its removes and adds: the table itself says which chunks are committed, whatever
//! order they finish in, and a chunk replayed after a crash is skipped by the sink. The ledger
//! (`chunks/<k>.json`: running, done, failed, rows, duration, version) is for people and
//! `status`; the table is the truth.

use crate::checkpoint::Checkpoint;
use crate::contract::Chunk;
use crate::error::{Error, Result};
use crate::location::table_url;
use crate::table_files::Span;
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

/// How a date range is cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            "month" => Ok(Granularity::Month),
            other => Err(format!("unknown granularity `{other}`; expected hour, day or month")),
        }
    }
}

/// A date range over one column of the source, cut into chunks: the days `[from, to]`, both
/// inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeScope {
    /// The source's date partition column, or a date or timestamp data column (an event time:
    /// files chosen by their statistics, rows filtered); `None`: the only partition column.
    pub column: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Granularity,
}

impl RangeScope {
    /// Refuses a range that ends before it starts.
    pub fn new(column: Option<String>, from: NaiveDate, to: NaiveDate, by: Granularity) -> Result<Self> {
        if from > to {
            return Err(Error::Unsupported(format!("--from {from} is after --to {to}")));
        }
        Ok(RangeScope { column, from, to, by })
    }

    /// The chunks' half-open ranges `[start, end)`, covering the days `[from, to]` exactly.
    pub fn slices(&self) -> Vec<(NaiveDateTime, NaiveDateTime)> {
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        let end = midnight(self.to.succ_opt().unwrap_or(self.to));
        let mut out = Vec::new();
        let mut start = midnight(self.from);
        while start < end {
            let next = match self.by {
                Granularity::Hour => start + chrono::Duration::hours(1),
                Granularity::Day => start + chrono::Duration::days(1),
                Granularity::Month => {
                    let first = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap_or(start.date());
                    first.checked_add_months(Months::new(1)).map_or(end, midnight)
                }
            };
            out.push((start, next.min(end)));
            start = next;
        }
        out
    }
}

/// What a backfill reprocesses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// The days `[from, to]` of a date or timestamp column: each chunk replaces its slice.
    Range(RangeScope),
    /// The data files commits `from..=to` of a Delta source added.
    Versions { from: u64, to: u64 },
    /// Every file of the source at plan time (a landing directory's, a Delta snapshot's).
    Files,
}

impl From<RangeScope> for Scope {
    fn from(range: RangeScope) -> Self {
        Scope::Range(range)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Range(r) => {
                let column = r.column.as_deref().unwrap_or("the partition column");
                let by = match r.by {
                    Granularity::Hour => "hour",
                    Granularity::Day => "day",
                    Granularity::Month => "month",
                };
                write!(f, "{column} {}..={} by {by}", r.from, r.to)
            }
            Scope::Versions { from, to } => write!(f, "versions {from}..={to}"),
            Scope::Files => f.write_str("files"),
        }
    }
}

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

/// One planned chunk of a backfill: what to read, and its estimated size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceChunk {
    /// For people: `2024-03-02`, `2024-03-02T05:00`, `versions 10..=14, files 0..64 of 80`.
    pub range: String,
    /// The slice of the sink it replaces, in a range plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
    pub files: usize,
    /// From the Delta log's file statistics (`numRecords`), where the writer recorded them.
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
    pub read: Chunk,
}

impl SliceChunk {
    /// The chunk over `span`.
    pub fn over(span: Span, files: usize, estimated_rows: u64, estimated_bytes: u64, read: Chunk) -> Self {
        let range = describe_range(span.from, span.until);
        SliceChunk { range, span: Some(span), files, estimated_rows, estimated_bytes, read }
    }
}

/// What a source planned for a backfill.
#[derive(Clone, Debug)]
pub struct SlicePlan {
    /// The source version every chunk reads (`None`: the source has no versions).
    pub version: Option<u64>,
    /// The column a range plan is over (the scope's, or the source's partition column).
    pub column: Option<String>,
    pub chunks: Vec<SliceChunk>,
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

/// Where a chunk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    Pending,
    Running,
    Done,
    Failed,
}

impl std::fmt::Display for ChunkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkState::Pending => "pending",
            ChunkState::Running => "running",
            ChunkState::Done => "done",
            ChunkState::Failed => "failed",
        })
    }
}

/// `chunks/<k>.json`, and a line of `backfill status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkStatus {
    pub chunk: usize,
    pub range: String,
    pub state: ChunkState,
    pub rows: Option<u64>,
    pub duration_ms: Option<u64>,
    /// The sink table version the chunk committed.
    pub version: Option<u64>,
    pub attempts: u32,
    pub error: Option<String>,
    /// While running: when its process last said it is alive (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<i64>,
    /// How often that process says so (its `TIDEWATER_HEARTBEAT_MS`, else 10 s): another
    /// process reading the status judges staleness by the writer's interval, not its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_every_ms: Option<u64>,
    /// What the chunk's commit did (records in, rows out, filtered, quarantined, late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::engine::BatchReport>,
}

/// Where a job's backfills live in its checkpoint.
pub fn backfills_dir(checkpoint: &Checkpoint) -> Checkpoint {
    checkpoint.child("backfills")
}

/// The chunk's range as people read it: `2024-01-01` for a day, `2024-01-01T05:00` for an hour,
/// `2024-01-01..2024-02-01`.
pub fn describe_range(from: NaiveDateTime, until: NaiveDateTime) -> String {
    let text = |t: NaiveDateTime| {
        if t.time() == NaiveTime::MIN { t.date().to_string() } else { t.format("%Y-%m-%dT%H:%M").to_string() }
    };
    if from.time() == NaiveTime::MIN && until == from + chrono::Duration::days(1) {
        from.date().to_string()
    } else if until == from + chrono::Duration::hours(1) {
        from.format("%Y-%m-%dT%H:%M").to_string()
    } else {
        format!("{}..{}", text(from), text(until))
    }
}

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

/// How often a running chunk records that its process is alive: `TIDEWATER_HEARTBEAT_MS`
/// (for tests), else 10 s.
fn heartbeat() -> std::time::Duration {
    let ms = std::env::var("TIDEWATER_HEARTBEAT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    std::time::Duration::from_millis(ms)
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

/// A recorded backfill of a pipeline: run it, read its status, cancel it.
pub struct Backfill<'a> {
    pub(crate) pipeline: &'a crate::Pipeline,
    pub(crate) dir: Checkpoint,
    pub(crate) plan: BackfillPlan,
    /// What the chunks do with late rows: nothing, unless a recomputation leaves out what the
    /// stream set aside (`tidewater verify`).
    pub(crate) late: crate::LateRule,
}

impl Backfill<'_> {
    pub fn plan(&self) -> &BackfillPlan {
        &self.plan
    }

    /// Where the plan and the ledger are.
    pub fn location(&self) -> &str {
        self.dir.url()
    }

    fn sink(&self, k: usize) -> Result<crate::sink::DeltaSink> {
        let url = table_url(&self.plan.target)?;
        Ok(self.pipeline.sink(url, &self.plan.app_id(k), crate::sink::WriteKind::Batch))
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
        let committed = self.committed().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut out = Vec::new();
        for (k, chunk) in self.plan.chunks.iter().enumerate() {
            let ledger = self.dir.get_json::<ChunkStatus>(&format!("chunks/{k}.json")).await?;
            let mut status = ledger.unwrap_or_else(|| self.pending(k, chunk));
            if committed[k] {
                status.state = ChunkState::Done;
                status.error = None;
            } else if status.state == ChunkState::Done {
                // A ledger that says done without the commit: the commit was lost or the table
                // replaced; the table is the truth.
                status.state = ChunkState::Pending;
            } else if status.state == ChunkState::Running
                && let Some(seen) = status.heartbeat_ms
                && now - seen > 3 * status.heartbeat_every_ms.unwrap_or(heartbeat().as_millis() as u64) as i64
            {
                // Its process stopped (killed, its pod evicted) without a word.
                status.state = ChunkState::Pending;
                status.error = Some(format!(
                    "interrupted: its process stopped (no sign of life since {}); the next `backfill run` runs it again",
                    chrono::DateTime::from_timestamp_millis(seen).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ")
                ));
            }
            out.push(status);
        }
        Ok(out)
    }

    fn pending(&self, k: usize, chunk: &SliceChunk) -> ChunkStatus {
        ChunkStatus {
            chunk: k,
            range: chunk.range.clone(),
            state: ChunkState::Pending,
            rows: None,
            duration_ms: None,
            version: None,
            attempts: 0,
            error: None,
            heartbeat_ms: None,
            heartbeat_every_ms: None,
            report: None,
        }
    }

    /// No new chunk of this backfill starts after this; running ones finish (or leave nothing).
    pub async fn cancel(&self) -> Result<()> {
        self.dir
            .put_json("cancel", &serde_json::json!({"cancelled_at_ms": chrono::Utc::now().timestamp_millis()}))
            .await
    }

    async fn is_cancelled(&self) -> Result<bool> {
        Ok(self.dir.get_json::<serde_json::Value>("cancel").await?.is_some())
    }

    /// What each chunk of this worker's share would read and replace: its status and the sink
    /// files it would remove now (`None`: found by key when it runs, or none: an append);
    /// commits nothing.
    pub async fn dry_run(&self, options: &RunOptions) -> Result<Vec<(ChunkStatus, Option<usize>)>> {
        let committed = self.committed().await?;
        let mut sink = self.sink(0)?;
        let mut out = Vec::new();
        for (k, chunk) in self.plan.chunks.iter().enumerate().filter(|(k, _)| options.takes(*k)) {
            let mut status = self.pending(k, chunk);
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
        if self.is_cancelled().await? {
            return Ok(None);
        }
        let chunk = &self.plan.chunks[k];
        let mut status = self.pending(k, chunk);
        let started = std::time::Instant::now();
        loop {
            status.attempts += 1;
            status.state = ChunkState::Running;
            status.heartbeat_ms = Some(chrono::Utc::now().timestamp_millis());
            status.heartbeat_every_ms = Some(heartbeat().as_millis() as u64);
            self.dir.put_json(&format!("chunks/{k}.json"), &status).await?;
            // Its own task, so that a chunk busy computing cannot starve it; stopped (not
            // aborted) before the chunk's final status is written, which it must not overwrite.
            let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
            let alive = tokio::spawn({
                let (dir, mut status, id) = (self.dir.clone(), status.clone(), self.plan.id.clone());
                async move {
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(heartbeat()) => {}
                            _ = &mut stopped => return,
                        }
                        status.heartbeat_ms = Some(chrono::Utc::now().timestamp_millis());
                        if let Err(e) = dir.put_json(&format!("chunks/{k}.json"), &status).await {
                            tracing::warn!(backfill = %id, chunk = k, "could not record the chunk's heartbeat: {e}");
                        }
                    }
                }
            });
            let attempt = self.attempt(k, chunk).await;
            let _ = stop.send(());
            if let Err(e) = alive.await {
                tracing::warn!(backfill = %self.plan.id, chunk = k, "the chunk's heartbeat task ended badly: {e}");
            }
            (status.heartbeat_ms, status.heartbeat_every_ms) = (None, None);
            match attempt {
                Ok(report) => {
                    status.state = ChunkState::Done;
                    status.rows = Some(report.output_rows);
                    status.version = report.table_version;
                    status.error = None;
                    status.report = Some(report);
                    break;
                }
                Err(e) if e.retry() == crate::Retry::Yes && status.attempts < ATTEMPTS => {
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
        self.dir.put_json(&format!("chunks/{k}.json"), &status).await?;
        if status.state == ChunkState::Done {
            tracing::info!(backfill = %self.plan.id, chunk = k, range = %status.range, rows = ?status.rows, version = ?status.version, "chunk committed");
        }
        Ok(Some(status))
    }

    /// One try at chunk `k`: the sink's slice and the job's stream's last batch from one table
    /// version; the source read up to that batch's end (all of the plan's version when the job
    /// has no stream); one commit replacing the slice, checked against commits since.
    async fn attempt(&self, k: usize, chunk: &SliceChunk) -> Result<crate::engine::BatchReport> {
        let span = chunk.span.clone();
        // A chunk replacing rows of the job's own sink pairs them with the stream's batches
        // there; an appended chunk, or one into another table, reads the source as planned.
        let stream = match self.plan.writes {
            Writes::Append => None,
            _ if !self.pipeline.is_own_table(&self.plan.target)? => None,
            _ => self.pipeline.stream_app_id().await?,
        };
        // The chunk's commit is written by this sink, on the snapshot its slice was read from.
        let mut sink = self.sink(k)?;
        let slice = sink.slice(span.as_ref(), stream.as_deref()).await?;
        let read = match &stream {
            None => {
                let mut source = self.pipeline.source.open_bounded(self.plan.source_version).await?;
                source.read_chunk(&chunk.read).await?
            }
            Some(app_id) => {
                let batch = slice.as_ref().and_then(|s| s.recorded);
                let end = match batch {
                    Some(batch) => Some(self.pipeline.stream_end(batch).await?),
                    None => None,
                };
                tracing::info!(backfill = %self.plan.id, chunk = k, stream = %app_id, batch = ?batch, "reading the source up to the stream's last committed batch");
                let mut source = self.pipeline.open_stream_source().await?.bounded_before(end.as_ref()).await?;
                let mut read = match (&span, &self.plan.scope) {
                    (Some(span), Scope::Range(range)) => {
                        let planned = source.plan_span(span, range.by).await?;
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
            (Writes::Slice, Some(span)) => crate::sink::Slice::replace(slice, span),
            (Writes::Keys(columns), _) => {
                let (rows, by, source) = (read.rows.clone(), columns.clone(), self.pipeline.source.describe());
                let keys =
                    crate::compute::blocking("the chunk's keys", move || source_keys(&rows, &by, &source)).await?;
                crate::sink::Change::Replace {
                    removes: Vec::new(),
                    predicate: format!("[{}] in the keys of {}", columns.join(", "), chunk.range),
                    read_version: slice.map(|s| s.version),
                    within: crate::sink::Within::Keys { columns: columns.clone(), keys },
                }
            }
            (Writes::Append, _) => crate::sink::Change::Append,
            (Writes::Slice, None) => {
                return Err(Error::Internal(format!(
                    "backfill {} chunk {k}: a slice chunk without a span",
                    self.plan.id
                )));
            }
        };
        let quarantine = table_url(&self.plan.quarantine)?;
        let mut writer = self.pipeline.backfill_writer(sink, quarantine, self.late.clone())?;
        let mut ctx =
            crate::BatchContext::new(crate::BatchId::new(k as u64), crate::Mode::Batch, self.plan.planned_at_ms);
        ctx.tables = crate::context::Tables::new(self.plan.tables.clone(), Default::default());
        let result = writer.write(read, &ctx, &chunk.read.describe, change, None, None, &[]).await;
        writer.settle().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn slices_cover_the_range_exactly() {
        let days = RangeScope::new(Some("date".into()), d("2024-01-30"), d("2024-02-02"), Granularity::Day).unwrap();
        assert_eq!(days.slices().len(), 4);
        assert_eq!(days.slices()[3], (t("2024-02-02 00:00"), t("2024-02-03 00:00")));
        let months =
            RangeScope::new(Some("date".into()), d("2024-01-15"), d("2024-03-31"), Granularity::Month).unwrap();
        assert_eq!(
            months.slices(),
            vec![
                (t("2024-01-15 00:00"), t("2024-02-01 00:00")),
                (t("2024-02-01 00:00"), t("2024-03-01 00:00")),
                (t("2024-03-01 00:00"), t("2024-04-01 00:00"))
            ]
        );
        let hours = RangeScope::new(Some("ts".into()), d("2024-03-02"), d("2024-03-02"), Granularity::Hour).unwrap();
        assert_eq!(hours.slices().len(), 24);
        assert_eq!(hours.slices()[23], (t("2024-03-02 23:00"), t("2024-03-03 00:00")));
        let e = RangeScope::new(Some("date".into()), d("2024-03-01"), d("2024-01-01"), Granularity::Day).unwrap_err();
        assert_eq!(e.to_string(), "--from 2024-03-01 is after --to 2024-01-01");
        assert!("week".parse::<Granularity>().unwrap_err().contains("expected hour, day or month"));
    }

    #[test]
    fn ranges_read_as_people_write_them() {
        assert_eq!(describe_range(t("2024-03-02 00:00"), t("2024-03-03 00:00")), "2024-03-02");
        assert_eq!(describe_range(t("2024-03-02 05:00"), t("2024-03-02 06:00")), "2024-03-02T05:00");
        assert_eq!(describe_range(t("2024-01-15 00:00"), t("2024-02-01 00:00")), "2024-01-15..2024-02-01");
    }
}
