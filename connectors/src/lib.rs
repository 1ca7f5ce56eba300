//! # Tidewater connectors
//!
//! Sources that talk to the outside world, each a [`tidewater_core::SourceProvider`], and the
//! Kafka sink ([`kafka::KafkaSinkProvider`]):
//! - [`files`]: a landing directory of NDJSON, CSV or Parquet files, streamed file by file or read
//!   whole as a bounded input;
//! - [`delta`]: a Delta table, streamed commit by commit or read as a snapshot at a version;
//! - [`kafka`]: Kafka topics, streamed by offset ranges with each partition's progress in the
//!   table, or read as a bounded range of offsets;
//! - [`rate`]: generated rows at a steady rate, for trying a job (replayable);
//! - [`socket`]: text lines from a TCP server, for demos (not replayable);
//! - [`reconcile`]: the consistency checker over two Delta tables ([`Reconciler`]).

pub mod delta;
pub mod files;
pub mod kafka;
pub mod rate;
pub mod reconcile;
pub mod socket;

pub use delta::{
    DeltaSourceProvider, DeltaSpec, DeltaStreamOptions, StartingVersion, TableSnapshot, TableVersion, read_snapshot,
};
pub use files::{FileFormat, FileSourceProvider, FileSpec, InputSchema};
pub use reconcile::{Reconciler, RepairReport};
