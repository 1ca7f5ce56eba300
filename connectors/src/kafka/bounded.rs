//! The bounded view (`tidewater batch`): each partition's offsets from the earliest (or the first
//! at `--from`) to its end at planning (or the first at `--to`), in chunks of at most
//! [`CHUNK_OFFSETS`] offsets. A chunk's spec is an offset of the offset codec, so reading a chunk
//! again reads the same messages.

use super::client::Client;
use super::decode::decode;
use super::offsets::{Ranges, ranges_of, ranges_offset};
use super::spec::KafkaSpec;
use async_trait::async_trait;
use std::time::Duration;
use tidewater_core::{BoundedSource, Chunk, Offset, Result, SourceBatch};

/// The bounded view: each partition's offsets from the earliest (or the first at `--from`) to
/// its end at planning (or the first at `--to`), in chunks.
pub(super) struct KafkaBounded {
    client: Client,
    /// The message times `[from, to)` read (epoch milliseconds), each end open when `None`.
    times: (Option<i64>, Option<i64>),
}

impl KafkaBounded {
    pub(super) fn open(spec: &KafkaSpec) -> Result<Self> {
        Ok(KafkaBounded { client: Client::open(spec)?, times: spec.bounded_ms })
    }
}

/// Offsets per chunk of a bounded read.
const CHUNK_OFFSETS: i64 = 1_000_000;

#[async_trait]
impl BoundedSource for KafkaBounded {
    async fn plan(&mut self) -> Result<Vec<Chunk>> {
        let tps = self.client.partitions().await?;
        let marks = self.client.probe(tps.clone()).await?;
        let starts = match self.times.0 {
            Some(ms) => self.client.offsets_at(tps.clone(), ms).await?,
            None => marks.iter().map(|(tp, (low, _))| (tp.clone(), *low)).collect(),
        };
        let ends = match self.times.1 {
            Some(ms) => self.client.offsets_at(tps.clone(), ms).await?,
            None => marks.iter().map(|(tp, (_, high))| (tp.clone(), *high)).collect(),
        };
        let mut chunks = Vec::new();
        for tp in tps {
            let (mut from, to) = (starts[&tp], ends[&tp]);
            while from < to {
                let end = (from + CHUNK_OFFSETS).min(to);
                chunks.push(Chunk {
                    describe: format!("{}/{} offsets {from}..{end}", tp.0, tp.1),
                    spec: ranges_offset(&Ranges::from([(tp.clone(), (from, end))])).value().clone(),
                });
                from = end;
            }
        }
        Ok(chunks)
    }

    async fn plan_files(&mut self) -> Result<tidewater_core::scope::SlicePlan> {
        let chunks = self
            .plan()
            .await?
            .into_iter()
            .map(|read| tidewater_core::scope::SliceChunk {
                range: read.describe.clone(),
                span: None,
                files: 0,
                estimated_rows: 0,
                estimated_bytes: 0,
                read,
            })
            .collect();
        Ok(tidewater_core::scope::SlicePlan { version: None, column: None, chunks })
    }

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch> {
        let ranges = ranges_of(&self.client.spec, &Offset::new(chunk.spec.clone()))?;
        let messages = self.client.fetch(ranges, Duration::ZERO).await?;
        let format = self.client.spec.format.clone();
        tidewater_core::compute::blocking("decoding kafka messages", move || decode(messages, &format)).await
    }

    fn everything(&self) -> tidewater_core::Scope {
        tidewater_core::Scope::Files
    }

    fn sliced(&mut self) -> Option<&mut dyn tidewater_core::SlicedSource> {
        None
    }
}
