//! # Tidewater core
//!
//! One transformation, run either over an unbounded source (a stream of micro-batches) or over a
//! bounded one (a batch run in chunks), writing the same Delta table idempotently, commit by commit.
//!
//! ```text
//!                 Pipeline (builder) ──► Job (resolved: tables, checkpoint)
//!                                         │                       │
//!            engine::StreamQuery ◄────────┘                       └────────► bounded::{batch, runner}
//!  Source ─► offsets/N ─► read ─┐                                  ┌─ read chunk k ◄─ plan.json ◄─ BoundedSource
//!                               ▼                                  ▼
//!                   step::BatchStep: late split ─► dedup ─► Transform ─► aggregation
//!                               │   quarantine ─► late table ─► sink: one Delta commit, txn (app id, N)
//!                               ▼                                  ▼
//!              state/N ─► commits/N ─► acknowledge         chunks/<k>.json (ledger)
//! ```
//!
//! Read from the bottom up, each module uses only those below it:
//!
//! - [`id`], [`error`]: batch ids, offsets, query ids; the one error type.
//! - [`clock`], [`context`], [`crash`], [`location`], [`compute`], [`bridge`]: time and stop
//!   signals (injected), what a transform knows of its batch, crash points, where tables live,
//!   the compute pool, the Arrow ⇄ Polars bridge.
//! - [`batch`]: what a batch carries and reports; [`scope`]: what a bounded run covers.
//! - [`contract`]: the traits users and connectors implement, each with its `# Contract`.
//! - [`transform`], [`ops`]: SQL transforms; the watermark, deduplication, static tables and
//!   streaming aggregations.
//! - [`table_files`], [`frame`]: a Delta table's data files as frames; frame helpers.
//! - [`checkpoint`]: the checkpoint's layout, its logs and the recovery rule.
//! - [`sink`]: the idempotent Delta sink (one commit per batch, with its `txn`), quarantine, the
//!   development sinks.
//! - [`step`]: one micro-batch from read rows to commit, shared by the stream, `batch` and backfill
//!   chunks.
//! - [`job`]: a pipeline resolved. [`engine`]: the stream's loop. [`bounded`]: backfills and
//!   `tidewater batch`.
//! - [`pipeline`]: the builder users call, from Rust or through the `tidewater` command.
//! - [`reconcile`]: the checker's algorithms, a leaf nothing above uses.
//!
//! IO happens only at the edges: sources (connectors crate), the sink, and the checkpoint, all
//! through `object_store` and delta-rs. Transforms are pure: their time comes from
//! [`BatchContext`], recorded in the offset log, so a replayed batch writes the same rows.

pub mod batch;
pub mod bounded;
pub mod bridge;
pub mod checkpoint;
pub mod clock;
pub mod compute;
pub mod context;
pub mod contract;
pub mod crash;
pub mod engine;
pub mod error;
pub mod frame;
pub mod id;
pub(crate) mod job;
pub mod location;
pub mod ops;
pub mod pipeline;
pub mod reconcile;
pub mod scope;
pub mod sink;
pub(crate) mod step;
pub mod table_files;
pub mod transform;

pub use batch::{BatchReport, Lane, Rejected, RunReport, SinkOutcome, SourceBatch};
pub use bounded::{
    Backfill, BackfillPlan, BackfillReport, BatchOptions, BatchRunReport, ChunkState, ChunkStatus, RunOptions, Writes,
};
pub use checkpoint::Checkpoint;
pub use clock::{Clock, Stop, SystemClock};
pub use context::{BatchContext, Mode, Tables};
pub use contract::{
    BoundedSource, History, Lanes, Sink, SinkProvider, SlicedSource, Source, SourceProvider, Transform,
};
pub use crash::{CrashPoint, StepHook};
pub use engine::Trigger;
pub use error::{Error, Result, Retry};
pub use id::{BatchId, Offset, OffsetRange, QueryId};
pub use job::{default_late, default_quarantine};
pub use ops::static_tables::StaticTable;
pub use ops::watermark::{LateRule, Watermark};
pub use pipeline::Pipeline;
pub use scope::{Chunk, Granularity, RangeScope, Scope, SliceChunk, SlicePlan, Span};
pub use transform::SqlTransform;
