//! The contracts users and connectors implement: [`Transform`], [`Source`], [`BoundedSource`],
//! [`SourceProvider`], [`Sink`] and [`SinkProvider`], with what callers may rely on.

use crate::context::BatchContext;
use crate::error::Result;
use crate::id::{BatchId, Offset, OffsetRange};
use async_trait::async_trait;
use polars::prelude::{DataFrame, LazyFrame};
use serde::{Deserialize, Serialize};

/// The one transformation: a pure function of a bounded piece of input and its context.
///
/// # Contract
/// - Deterministic: the same input frame and the same [`BatchContext`] give the same rows. It never
///   reads the wall clock or the environment; what it needs comes in `ctx`, which is recorded in
///   the offset log, so a replayed batch writes the same content.
/// - Row-wise (append output): `f(A ∪ B) = f(A) ∪ f(B)`, so a stream cut into any batches and one
///   batch run over the same input produce the same multiset of rows.
///
/// Closures `Fn(LazyFrame, &BatchContext) -> Result<LazyFrame>` implement it; a job file gives SQL
/// ([`crate::SqlTransform`]).
pub trait Transform: Send + Sync {
    fn apply(&self, input: LazyFrame, ctx: &BatchContext) -> Result<LazyFrame>;
}

impl<F> Transform for F
where
    F: Fn(LazyFrame, &BatchContext) -> Result<LazyFrame> + Send + Sync,
{
    fn apply(&self, input: LazyFrame, ctx: &BatchContext) -> Result<LazyFrame> {
        self(input, ctx)
    }
}

/// A record the source could not turn into a row: it goes to the quarantine table, not away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Where it came from: a file path, a topic-partition.
    pub origin: String,
    /// 1-based line number in a file, or the record's offset.
    pub position: u64,
    /// The record as it was read.
    pub raw: String,
    /// Why it was rejected, for a person to read.
    pub reason: String,
}

/// What a source read for one batch: the good rows and the rejected records.
///
/// `input_records == rows.height() + rejected.len()` always holds.
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub rows: DataFrame,
    pub rejected: Vec<Rejected>,
    pub input_records: u64,
}

/// A replayable, unbounded input, read by offset ranges (Structured Streaming's `Source`).
///
/// # Contract
/// - Reading the same `range` twice yields the same rows in the same order.
/// - `latest_offset` never moves backwards; `None` means nothing has arrived yet.
/// - Offsets a source hands out are durable before they are returned: a range logged in the offset
///   log can be read again after a crash.
/// - `commit(end)` only lets the source release data before `end`; correctness never depends on it.
#[async_trait]
pub trait Source: Send {
    /// The end of the next batch after `start`, within the source's admission limit (for example
    /// `max_files_per_trigger`) and never past `until`. Equal to `start` when nothing is new.
    /// With `until` (from [`Source::available_end`]) the source need not look for new data.
    async fn latest_offset(&mut self, start: Option<&Offset>, until: Option<&Offset>) -> Result<Option<Offset>>;

    /// The end of everything available now, ignoring admission limits (for `available-now` and
    /// `once` triggers, which freeze it at start).
    async fn available_end(&mut self) -> Result<Option<Offset>>;

    /// Reads the records in `range`.
    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch>;

    /// Tells the source what the sink did with the batch ending at `end`: committed (everything
    /// up to `end` is downstream), skipped, or superseded on a lane (another writer owns it now).
    async fn commit(&mut self, end: &Offset, outcome: &SinkCommit) -> Result<()>;

    /// The lanes a batch over `range` moves (a Kafka partition each), which the sink records in
    /// the batch's commit (see [`Lane`]). None for a source without lanes.
    fn lanes(&self, range: &OffsetRange) -> Vec<Lane> {
        let _ = range;
        Vec::new()
    }

    /// The app ids of lanes whose position the source must learn from the table before it plans
    /// a batch after `start` (partitions just assigned to this process). The engine answers with
    /// [`Source::place`].
    async fn unplaced(&mut self, start: Option<&Offset>) -> Result<Vec<String>> {
        let _ = start;
        Ok(Vec::new())
    }

    /// What the table records for the lanes [`Source::unplaced`] named (`None`: nothing yet).
    async fn place(&mut self, recorded: Vec<(String, Option<i64>)>) -> Result<()> {
        let _ = recorded;
        Ok(())
    }

    /// The records before `end` (an offset this source handed out; `None`: before where the
    /// stream starts) as a bounded input: what a backfill beside the stream reads, so that the
    /// backfill and the stream's later batches together read every record exactly once.
    async fn bounded_before(&mut self, end: Option<&Offset>) -> Result<Box<dyn BoundedSource>> {
        let _ = end;
        Err(crate::Error::Unsupported(
            "a backfill beside the job's stream needs a Delta source (this source cannot bound its stream)".into(),
        ))
    }
}

/// One piece of a bounded input, as planned once by [`BoundedSource::plan`] and recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// For people: `files 0..10 of 42`, `version 12, files 20..40`.
    pub describe: String,
    /// For the source: what to read, in its own JSON shape.
    pub spec: serde_json::Value,
}

/// A bounded input: everything in a landing directory at start, a Delta snapshot.
///
/// # Contract
/// - `plan` lists the whole input once; the chunks cover it exactly, without overlap.
/// - `read_chunk` of a planned chunk yields the same rows every time, in any later process.
#[async_trait]
pub trait BoundedSource: Send {
    async fn plan(&mut self) -> Result<Vec<Chunk>>;
    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch>;

    /// Plans a backfill over `scope`: one chunk per slice (none left out, `files: 0` where the
    /// slice holds no data), each reading only its slice, with estimated rows and bytes; and the
    /// source version the chunks read. A source
    /// that cannot select by range says so with [`crate::Error::Unsupported`].
    /// The first and last date of `column` (`None`: the source's date partition column) that
    /// hold data, with the column's name; `None` when the source is empty. What a backfill of
    /// everything plans over.
    async fn date_range(
        &mut self,
        column: Option<&str>,
    ) -> Result<Option<(String, chrono::NaiveDate, chrono::NaiveDate)>> {
        let _ = column;
        Err(crate::Error::Unsupported(
            "this source cannot be sliced by date (a Delta source partitioned by a date column can)".into(),
        ))
    }

    async fn plan_slices(&mut self, scope: &crate::backfill::RangeScope) -> Result<crate::backfill::SlicePlan> {
        let _ = scope;
        Err(crate::Error::Unsupported(
            "planning a backfill by date range needs a Delta source (a landing directory's --files plan is not available yet)"
                .into(),
        ))
    }

    /// Plans a backfill of the data files commits `from..=to` added (a Delta source), in commit
    /// order: files since removed by a data change (DELETE, UPDATE, MERGE) are left out, files
    /// only rearranged since (OPTIMIZE) are kept. Each chunk's files carry their commit and index
    /// in it, so a stream's cut ([`Source::bounded_before`]) can leave out what it has not read.
    async fn plan_versions(&mut self, from: u64, to: u64) -> Result<crate::backfill::SlicePlan> {
        let _ = (from, to);
        Err(crate::Error::Unsupported("--versions plans over the commits of a Delta source".into()))
    }

    /// What a backfill of everything replacing by key plans over: every commit of a source
    /// with a log ([`crate::backfill::Scope::Versions`], which a stream beside it reads in the
    /// same order), else every file ([`crate::backfill::Scope::Files`]).
    fn everything(&self) -> crate::backfill::Scope {
        crate::backfill::Scope::Files
    }

    /// Plans a backfill of every file of the source as it is now (a landing directory), in the
    /// chunks [`BoundedSource::plan`] would run.
    async fn plan_files(&mut self) -> Result<crate::backfill::SlicePlan> {
        Err(crate::Error::Unsupported(
            "--files plans over the files of a landing directory; plan a Delta source with --from and --to, or --versions A..B"
                .into(),
        ))
    }

    /// The chunk reading `span` alone, as [`BoundedSource::plan_slices`] would plan it (`by`: the
    /// plan's granularity, checked against the column's type): a chunk re-planned on the source
    /// as a live stream had read it.
    async fn plan_span(
        &mut self,
        span: &crate::table_files::Span,
        by: crate::backfill::Granularity,
    ) -> Result<crate::backfill::SliceChunk> {
        let _ = (span, by);
        Err(crate::Error::Unsupported("planning a backfill by date range needs a Delta source".into()))
    }
}

/// Opens a configured input either as a stream or as a bounded input.
///
/// # Contract
/// - Both views see the same records: streaming all of a bounded input's data and reading its
///   chunks give the same multiset of records.
/// - A provider that cannot stream (or cannot bound) says so with [`crate::Error::Unsupported`].
#[async_trait]
pub trait SourceProvider: Send + Sync {
    /// A name for messages, such as `files /data/landing/events`.
    fn describe(&self) -> String;
    /// The stream view. `state` is the source's own directory in the query's checkpoint.
    async fn open_stream(&self, state: crate::checkpoint::Checkpoint) -> Result<Box<dyn Source>>;
    /// The bounded view; `version` selects a snapshot where the source has versions.
    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>>;
}

/// One lane of a batch's source (a Kafka partition) whose progress the commit records beside
/// the batch, as the txn `{app_id, version = to}`: the commit lands only if the table records
/// `from` for it, or nothing yet. So the rows of a lane's offsets `from..to` are committed once
/// whoever writes them, whatever process, checkpoint or batch id (kafka-delta-ingest's rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    pub app_id: String,
    /// For messages: `orders/2`.
    pub origin: String,
    pub from: Option<i64>,
    pub to: i64,
}

/// What a sink did with one batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SinkCommit {
    /// Committed as this table version.
    Committed { version: u64, rows: u64, files: u64 },
    /// Delivered by a sink that is not a table (console, memory, Kafka).
    Delivered { rows: u64 },
    /// The table already records this batch for this app id: nothing written.
    Skipped { recorded: i64 },
    /// Another writer recorded progress on one of the batch's lanes (a Kafka partition) since the
    /// batch was planned: its rows are that writer's to write, nothing written.
    Superseded { lane: String, recorded: i64, expected: Option<i64> },
}

impl SinkCommit {
    pub fn version(&self) -> Option<u64> {
        match self {
            SinkCommit::Committed { version, .. } => Some(*version),
            SinkCommit::Delivered { .. } | SinkCommit::Skipped { .. } | SinkCommit::Superseded { .. } => None,
        }
    }
}

/// A batch sink, Spark's `foreachBatch`: where a query's result rows go. The engine's own sink is
/// a Delta table ([`crate::sink::DeltaSink`]: a txn per batch, exactly once, every output mode,
/// lanes, bounded runs); a [`Sink`] given by [`SinkProvider`] (console, memory, Kafka) gets each
/// batch's result rows and nothing else.
///
/// # Contract
/// - `add_batch(id, …)` is called once per batch, in increasing ids, after the batch's offsets are
///   logged and before its commit-log entry: when it returns, the rows are delivered. A crash in
///   between replays the batch with the same id and the same rows.
/// - A sink that can tell a replayed id writes nothing and returns [`SinkCommit::Skipped`]
///   (exactly once); one that cannot writes the rows again (at least once). Its documentation
///   says which.
/// - In an aggregation's update mode `rows` are the groups the batch changed; in complete mode
///   every group; in append mode the groups the watermark closed (Spark's output modes).
#[async_trait]
pub trait Sink: Send {
    /// What the sink writes to, for messages and reports (`console`, `kafka host:port topic t`).
    fn describe(&self) -> String;

    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, range: &str) -> Result<SinkCommit>;
}

/// Opens a [`Sink`] for one run of a query.
#[async_trait]
pub trait SinkProvider: Send + Sync {
    fn describe(&self) -> String;

    async fn open(&self) -> Result<Box<dyn Sink>>;
}
