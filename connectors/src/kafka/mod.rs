//! Kafka topics as a source: streamed by offset ranges, exactly once, or read as a bounded range
//! of offsets.
//!
//! # Offsets
//! A batch's offset (in the offset log) names, for each partition the process reads, the
//! offsets `[from, to)` it reads: `{"orders": {"0": [42, 100], "1": [17, 17]}}`. A replay reads
//! exactly those messages again.
//!
//! # Lanes
//! Each partition is a lane (see [`tidewater_core::Lane`]): the batch's Delta commit records
//! `txn {appId: "tidewater-kafka:<group id>:<topic>:<partition>", version: to}` for every
//! partition it read, and lands only if the table records `from` for it (or nothing yet). A
//! partition's progress is in the table, not in a process: whoever owns a partition next (after
//! a rebalance, a killed process, a lost checkpoint) starts where the table says, and a process
//! that lost a partition mid-batch commits nothing of it.
//!
//! # Files
//! - `decode.rs`: messages into rows, by the source's format.
//! - `spec.rs`: [`KafkaSpec`], what a source is configured with, and how it names its lanes.
//! - `offsets.rs`: the offset codec, a batch's per-partition ranges in the offset log.
//! - `reader.rs`: the consumer that reads each assigned partition's queue, ahead of the batches.
//! - `client.rs`: the calls to the broker (metadata, ListOffsets) and the reads through the reader.
//! - `stream.rs`: the stream view, its partitions (all, a static split, a consumer group) and plans.
//! - `bounded.rs`: the bounded view, chunks of offsets between two times.
//! - `sink.rs`: the Kafka sink, on its own.
//!
//! Each file imports only from those listed before it.

mod bounded;
mod client;
mod decode;
mod offsets;
mod reader;
mod sink;
mod spec;
mod stream;

pub use decode::{KAFKA_COLUMNS, KafkaFormat, Message, Messages, Run, RunBuilder, decode};
pub use sink::{KafkaSinkProvider, KafkaSinkSpec};
pub use spec::{Assignment, KafkaSpec, StartingOffsets, Topics};
pub use stream::worker_of;

use async_trait::async_trait;
use bounded::KafkaBounded;
use stream::KafkaStream;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::{BoundedSource, Error, Result, Source, SourceProvider};

/// Opens a [`KafkaSpec`] as a stream or a bounded range of offsets.
pub struct KafkaSourceProvider {
    spec: KafkaSpec,
}

impl KafkaSourceProvider {
    pub fn new(spec: KafkaSpec) -> Self {
        KafkaSourceProvider { spec }
    }
}

#[async_trait]
impl SourceProvider for KafkaSourceProvider {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    async fn open_stream(&self, _state: Checkpoint) -> Result<Box<dyn Source>> {
        Ok(Box::new(KafkaStream::open(&self.spec)?))
    }

    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        if version.is_some() {
            return Err(Error::Unsupported(format!(
                "{}: a topic has no versions (use --from/--to times)",
                self.describe()
            )));
        }
        Ok(Box::new(KafkaBounded::open(&self.spec)?))
    }
}
