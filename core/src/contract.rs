//! The contracts users and connectors implement, traits only: [`Transform`], [`Source`] (with
//! its optional capabilities [`Lanes`] and [`History`]), [`BoundedSource`] (and
//! [`SlicedSource`]), [`SourceProvider`], [`Sink`] and [`SinkProvider`], each with what callers
//! may rely on. The data they exchange is in [`crate::batch`] and [`crate::scope`].

use crate::batch::{Lane, SinkOutcome, SourceBatch};
use crate::checkpoint::Checkpoint;
use crate::context::BatchContext;
use crate::error::Result;
use crate::id::{BatchId, Offset, OffsetRange};
use crate::scope::{Chunk, Granularity, RangeScope, Scope, SliceChunk, SlicePlan, Span};
use async_trait::async_trait;
use chrono::NaiveDate;
use polars::prelude::{DataFrame, LazyFrame};

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

/// A replayable, unbounded input, read by offset ranges (Structured Streaming's `Source`).
///
/// # Contract
/// - Reading the same `range` twice yields the same rows in the same order.
/// - `latest_offset` never moves backwards; `None` means nothing has arrived yet.
/// - Offsets a source hands out are durable before they are returned: a range logged in the offset
///   log can be read again after a crash.
/// - `acknowledge(end, …)` only lets the source release data before `end`; correctness never
///   depends on it.
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

    /// Tells the source what the sink did with the batch ending at `end`, once the batch is done:
    /// committed (everything up to `end` is downstream), skipped, or superseded on a lane
    /// (another writer owns it now). Spark calls this `commit`; here "commit" is the Delta
    /// commit only.
    async fn acknowledge(&mut self, end: &Offset, outcome: &SinkOutcome) -> Result<()>;

    /// This source's lanes, when it has them (a Kafka source's partitions): see [`Lanes`].
    fn lanes(&mut self) -> Option<&mut dyn Lanes>;

    /// This source's history as a bounded input, when it can cut it (a landing directory, a
    /// Delta table): see [`History`].
    fn history(&mut self) -> Option<&mut dyn History>;
}

/// A source whose batches move lanes (a Kafka partition each), each recorded in the sink's
/// commit as its own txn, so that whoever writes a lane's offsets writes them once.
///
/// # Contract
/// - `of(range)` names every lane a batch over `range` moves, with where it starts and ends.
/// - After [`Lanes::place`], the source plans from where the table records each lane, never from
///   an older position of its own.
#[async_trait]
pub trait Lanes: Send {
    /// The lanes a batch over `range` moves, which the sink records in the batch's commit.
    fn of(&self, range: &OffsetRange) -> Vec<Lane>;

    /// The app ids of lanes whose position the source must learn from the table before it plans
    /// a batch after `start` (partitions just assigned to this process). The engine answers with
    /// [`Lanes::place`].
    async fn unplaced(&mut self, start: Option<&Offset>) -> Result<Vec<String>>;

    /// What the table records for the lanes [`Lanes::unplaced`] named (`None`: nothing yet).
    async fn place(&mut self, recorded: Vec<(String, Option<i64>)>) -> Result<()>;
}

/// A stream whose records before one of its offsets can be read as a bounded input: what a
/// backfill beside the stream reads.
///
/// # Contract
/// - The bounded input before `end` and the stream's batches from `end` on together read every
///   record exactly once.
#[async_trait]
pub trait History: Send {
    /// The records before `end` (an offset this source handed out; `None`: before where the
    /// stream starts) as a bounded input.
    async fn bounded_before(&mut self, end: Option<&Offset>) -> Result<Box<dyn BoundedSource>>;
}

/// A bounded input: everything in a landing directory at start, a Delta snapshot.
///
/// # Contract
/// - `plan` lists the whole input once; the chunks cover it exactly, without overlap.
/// - `read_chunk` of a planned chunk yields the same rows every time, in any later process.
/// - `plan_files` plans the same chunks as `plan`, with their estimated sizes.
#[async_trait]
pub trait BoundedSource: Send {
    async fn plan(&mut self) -> Result<Vec<Chunk>>;

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch>;

    /// Plans a backfill of every file of the source as it is now, in the chunks
    /// [`BoundedSource::plan`] would run.
    async fn plan_files(&mut self) -> Result<SlicePlan>;

    /// What a backfill of everything replacing by key plans over: every commit of a source
    /// with a log ([`Scope::Versions`], which a stream beside it reads in the same order), else
    /// every file ([`Scope::Files`]).
    fn everything(&self) -> Scope;

    /// This input sliced by date and by commits, when it can be (a Delta source).
    fn sliced(&mut self) -> Option<&mut dyn SlicedSource>;
}

/// A bounded input that selects by date range and by commit range (a Delta table): what
/// backfills of a slice of history plan over.
///
/// # Contract
/// - `plan_slices` plans one chunk per slice of the scope (none left out, `files: 0` where the
///   slice holds no data), each reading only its slice, and the source version they read.
/// - `plan_span` of a span plans the chunk `plan_slices` would have planned for it.
#[async_trait]
pub trait SlicedSource: Send {
    /// The first and last date of `column` (`None`: the source's date partition column) that
    /// hold data, with the column's name; `None` when the source is empty. What a backfill of
    /// everything plans over. [`crate::Error::Unsupported`] when the source has no such column.
    async fn date_range(&mut self, column: Option<&str>) -> Result<Option<(String, NaiveDate, NaiveDate)>>;

    /// Plans a backfill over `scope`, with estimated rows and bytes per chunk.
    async fn plan_slices(&mut self, scope: &RangeScope) -> Result<SlicePlan>;

    /// Plans a backfill of the data files commits `from..=to` added, in commit order: files since
    /// removed by a data change (DELETE, UPDATE, MERGE) are left out, files only rearranged since
    /// (OPTIMIZE) are kept. Each chunk's files carry their commit and index in it, so a stream's
    /// cut ([`History::bounded_before`]) can leave out what it has not read.
    async fn plan_versions(&mut self, from: u64, to: u64) -> Result<SlicePlan>;

    /// The chunk reading `span` alone, as [`SlicedSource::plan_slices`] would plan it (`by`: the
    /// plan's granularity, checked against the column's type): a chunk re-planned on the source
    /// as a live stream had read it.
    async fn plan_span(&mut self, span: &Span, by: Granularity) -> Result<SliceChunk>;
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
    async fn open_stream(&self, state: Checkpoint) -> Result<Box<dyn Source>>;
    /// The bounded view; `version` selects a snapshot where the source has versions.
    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>>;
}

/// A batch sink of another kind than the job's Delta table, Spark's `foreachBatch`: console,
/// memory, Kafka. It gets each batch's result rows and nothing else. (The engine's own sink is a
/// Delta table, [`crate::sink::DeltaSink`], which it drives itself: a txn per batch, exactly once,
/// every output mode's change, lanes, bounded runs.)
///
/// # Contract
/// - `add_batch(id, …)` is called once per batch, in increasing ids, after the batch's offsets are
///   logged and before its done entry: when it returns, the rows are delivered. A crash in
///   between replays the batch with the same id and the same rows.
/// - A sink that can tell a replayed id writes nothing and returns [`SinkOutcome::Skipped`]
///   (exactly once); one that cannot writes the rows again (at least once). Its documentation
///   says which.
/// - In an aggregation's update mode `rows` are the groups the batch changed; in complete mode
///   every group; in append mode the groups the watermark closed (Spark's output modes).
#[async_trait]
pub trait Sink: Send {
    /// What the sink writes to, for messages and reports (`console`, `kafka host:port topic t`).
    fn describe(&self) -> String;

    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, range: &str) -> Result<SinkOutcome>;
}

/// Opens a [`Sink`] for one run of a query.
#[async_trait]
pub trait SinkProvider: Send + Sync {
    fn describe(&self) -> String;

    async fn open(&self) -> Result<Box<dyn Sink>>;
}
