//! The recovery rule at each crash point, against an in-memory source and the memory sink: a
//! query killed (a panic in its crash hook ends its task where a killed process would stop) and
//! run again on the same checkpoint delivers every batch once, and its stateful operator (a
//! deduplication) ends with the state a run without a crash has. Milliseconds, no binary.

use crate::batch::{SinkOutcome, SourceBatch};
use crate::checkpoint::Checkpoint;
use crate::contract::{BoundedSource, History, Lanes, Source, SourceProvider};
use crate::crash::{CrashPoint, StepHook};
use crate::engine::Trigger;
use crate::error::{Error, Result};
use crate::id::{BatchId, Offset, OffsetRange};
use crate::pipeline::Pipeline;
use crate::sink::MemorySink;
use async_trait::async_trait;
use polars::prelude::*;
use std::sync::Arc;

/// `values`, read `per_batch` at a time; offsets are row counts.
#[derive(Clone)]
struct VecSource {
    values: Arc<Vec<i64>>,
    per_batch: usize,
}

fn position(offset: Option<&Offset>) -> usize {
    offset.and_then(|o| o.value().as_u64()).unwrap_or(0) as usize
}

#[async_trait]
impl Source for VecSource {
    async fn latest_offset(&mut self, start: Option<&Offset>, until: Option<&Offset>) -> Result<Option<Offset>> {
        let limit = until.map_or(self.values.len(), |u| position(Some(u)));
        let end = (position(start) + self.per_batch).min(limit);
        Ok(Some(Offset::new(serde_json::json!(end))))
    }

    async fn available_end(&mut self) -> Result<Option<Offset>> {
        Ok(Some(Offset::new(serde_json::json!(self.values.len()))))
    }

    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch> {
        let rows = &self.values[position(range.start.as_ref())..position(Some(&range.end))];
        let frame = df!("n" => rows).map_err(Error::polars("test rows"))?;
        Ok(SourceBatch { input_records: rows.len() as u64, rows: frame, rejected: Vec::new() })
    }

    async fn acknowledge(&mut self, _end: &Offset, _outcome: &SinkOutcome) -> Result<()> {
        Ok(())
    }

    fn lanes(&mut self) -> Option<&mut dyn Lanes> {
        None
    }

    fn history(&mut self) -> Option<&mut dyn History> {
        None
    }
}

#[async_trait]
impl SourceProvider for VecSource {
    fn describe(&self) -> String {
        "test values".into()
    }

    async fn open_stream(&self, _state: Checkpoint) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.clone()))
    }

    async fn open_bounded(&self, _version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        Err(Error::Unsupported("test values are streamed only".into()))
    }
}

/// 0..40 with every value three times, read 7 at a time (18 batches, duplicates across them).
fn source() -> VecSource {
    VecSource { values: Arc::new((0..120).map(|i| i % 40).collect()), per_batch: 7 }
}

fn pipeline(checkpoint: &std::path::Path, sink: &MemorySink) -> Pipeline {
    Pipeline::new("recovery", source())
        .with_sink(sink.clone())
        .with_dedup(["n"])
        .with_checkpoint(checkpoint.to_string_lossy())
}

/// Every value the sink received, sorted.
fn delivered(sink: &MemorySink) -> Vec<i64> {
    let rows = sink.rows().unwrap();
    let mut values: Vec<i64> = rows.column("n").unwrap().i64().unwrap().into_no_null_iter().collect();
    values.sort_unstable();
    values
}

/// Runs the query until it dies at `point` of batch 2, then again to the end.
async fn crash_then_restart(point: CrashPoint) {
    let dir = tempfile::tempdir().unwrap();
    let sink = MemorySink::new();
    let hook: StepHook = Arc::new(move |at, batch| {
        if at == point && batch == BatchId::new(2) {
            panic!("killed at {at} of {batch}");
        }
    });
    let crashing = pipeline(dir.path(), &sink).with_hook(hook);
    let died = tokio::spawn(async move { crashing.run(Trigger::AvailableNow).await }).await;
    assert!(died.is_err_and(|e| e.is_panic()), "the query must die at {point}");
    let restarted = pipeline(dir.path(), &sink).run(Trigger::AvailableNow).await.unwrap();
    assert!(!restarted.batches.is_empty(), "the restart runs the batches left");
    assert_eq!(delivered(&sink), (0..40).collect::<Vec<_>>(), "after {point}: each value once");
    let ids: Vec<u64> = sink.batches().iter().map(|(id, _)| id.get()).collect();
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>(), "after {point}: each batch delivered once, in order");
    // The log agrees: the last batch is done, and nothing is left to replay.
    let checkpoint = Checkpoint::open(&dir.path().to_string_lossy()).unwrap();
    let (last, _) = checkpoint.latest_offsets().await.unwrap().unwrap();
    let (done, _) = checkpoint.latest_done().await.unwrap().unwrap();
    assert_eq!(last, done, "after {point}: the latest logged batch is done");
    let again = pipeline(dir.path(), &sink).run(Trigger::AvailableNow).await.unwrap();
    assert!(again.batches.is_empty(), "after {point}: a third run has nothing to do");
}

#[tokio::test]
async fn a_query_killed_after_its_offset_log_entry_runs_that_batch_once() {
    crash_then_restart(CrashPoint::AfterOffsetLog).await;
}

#[tokio::test]
async fn a_query_killed_after_its_sink_delivery_does_not_deliver_again() {
    crash_then_restart(CrashPoint::AfterSinkDelivery).await;
}

#[tokio::test]
async fn a_query_killed_after_its_state_write_goes_on_from_the_state_before() {
    crash_then_restart(CrashPoint::AfterStateWrite).await;
}

#[tokio::test]
async fn a_query_killed_after_its_done_entry_starts_at_the_next_batch() {
    crash_then_restart(CrashPoint::AfterCommitLog).await;
}

#[tokio::test]
async fn without_a_crash_the_same_values_arrive_in_eighteen_batches() {
    let dir = tempfile::tempdir().unwrap();
    let sink = MemorySink::new();
    let report = pipeline(dir.path(), &sink).run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(report.batches.len(), 18, "120 rows, 7 per batch");
    assert_eq!(delivered(&sink), (0..40).collect::<Vec<_>>());
    assert_eq!(report.batches.iter().map(|b| b.deduplicated).sum::<u64>(), 80, "two of every three dropped");
}
