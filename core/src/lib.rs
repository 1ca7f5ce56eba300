//! # Tidewater core
//!
//! One transformation, run either over an unbounded source (a stream of micro-batches) or over a
//! bounded one (a batch run in chunks), writing the same Delta table idempotently, commit by commit.
//!
//! ```text
//!             ┌───────────── StreamQuery::run(trigger) ─────────────┐
//!  Source ──► │ offsets/N ─► read ─► Transform ─► DeltaSink ─► commits/N │ ──► Delta table
//!             └─────────────────────────────────────────────────────┘      (txn appId = query id,
//!  BoundedSource ─► plan.json ─► chunk k ─► Transform ─► DeltaSink ──────►   version = batch id)
//!                                                   └─► quarantine table (same txn key)
//! ```
//!
//! - [`contract`]: [`Transform`], [`Source`], [`BoundedSource`], [`SourceProvider`], [`Sink`] and
//!   what each must guarantee.
//! - [`engine`]: the micro-batch loop and its triggers; [`checkpoint`]: the offset and commit logs
//!   and the recovery rule; [`backfill`]: the bounded runner, slices of history (or the whole
//!   source, `tidewater batch`) written chunk by chunk.
//! - [`sink`]: the idempotent Delta sink (one commit per batch, with its `txn`) and the quarantine.
//! - [`Pipeline`]: the builder users call, from Rust or through the `tidewater` command.
//!
//! IO happens only at the edges: sources (connectors crate), the sink, and the checkpoint, all
//! through `object_store` and delta-rs. Transforms are pure: their time comes from
//! [`BatchContext`], recorded in the offset log, so a replayed batch writes the same rows.

pub mod aggregate;
pub mod backfill;
pub mod bridge;
pub mod checkpoint;
pub mod compute;
pub mod context;
pub mod contract;
pub mod crash;
pub mod dedup;
pub mod engine;
pub mod error;
pub mod frame;
pub mod id;
pub mod location;
pub mod pipeline;
pub mod reconcile;
pub mod sink;
pub mod static_tables;
pub mod table_files;
pub mod transform;
pub mod watermark;

pub use backfill::{
    Backfill, BackfillPlan, BackfillReport, ChunkState, ChunkStatus, Granularity, RangeScope, RunOptions, Scope, Writes,
};
pub use checkpoint::Checkpoint;
pub use context::{BatchContext, Mode, Tables};
pub use contract::{
    BoundedSource, Chunk, Lane, Rejected, Sink, SinkCommit, SinkProvider, Source, SourceBatch, SourceProvider,
    Transform,
};
pub use crash::{CrashPoint, StepHook};
pub use engine::{BatchReport, Clock, RunReport, Stop, SystemClock, Trigger};
pub use error::{Error, Result, Retry};
pub use id::{BatchId, Offset, OffsetRange, QueryId};
pub use pipeline::{BatchOptions, BatchRunReport, Pipeline};
pub use static_tables::StaticTable;
pub use transform::SqlTransform;
pub use watermark::{LateRule, Watermark};
