//! Bounded runs: the job's transform over a bounded view of its source, planned once into
//! chunks and recorded, each chunk one idempotent Delta commit through the one batch step.
//! Backfills of a slice of history beside the live stream, and `tidewater batch`, the backfill of
//! everything.
//!
//! ```text
//!  Scope ─► BoundedSource plans ─► plan.json (chunks, once) ─► runner: chunk k ─► BatchStep ─► commit
//!                                                              (parallel, --worker I/N)   txn tidewater-backfill-<id>-<k>
//!                                   chunks/<k>.json (ledger: state, heartbeat, for people)
//! ```
//!
//! - [`plan`]: the recorded plan; `backfills`: planning one and finding those a job has; [`ledger`]: each chunk's state and
//!   heartbeat; [`runner`]: running a plan's chunks; [`batch`]: `tidewater batch`.
//!
//! # Invariant
//! Chunk `k` commits with `txn {appId: tidewater-backfill-<id>-<k>, version: 0}`, in the same
//! commit as its removes and adds: the table itself says which chunks are committed, whatever
//! order they finish in, and a chunk replayed after a crash is skipped by the sink. The ledger is
//! for people and `status`; the table is the truth.

mod backfills;
pub mod batch;
pub mod ledger;
pub mod plan;
pub mod runner;

pub use batch::{BatchOptions, BatchRunReport};
pub use ledger::{ChunkState, ChunkStatus};
pub use plan::{BackfillPlan, Writes, backfills_dir};
pub use runner::{Backfill, BackfillReport, RunOptions};
