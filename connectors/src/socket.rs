//! The `socket` source (Spark's): text lines read from a TCP server (`nc -lk 9999`), for demos.
//! Rows are `value` (the line) and `timestamp` (when it arrived).
//!
//! **Not replayable, so not exactly once.** Lines live only in this process's memory until
//! their batch commits: a batch replayed after a crash cannot read its lines again (it is
//! written without them, with a warning naming how many were lost), and lines sent while no
//! process is connected are never read. Use Kafka or files for anything that matters.
//!
//! # Offsets
//! `{"lines": <lines received so far>}`, counted on from where the checkpoint's last batch
//! ended. A socket has no end: it runs under a processing-time trigger only.

use async_trait::async_trait;
use polars::prelude::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::{
    BoundedSource, Error, Offset, OffsetRange, Result, SinkOutcome, Source, SourceBatch, SourceProvider,
};
use tokio::io::AsyncBufReadExt as _;

/// A configured socket source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    pub host: String,
    pub port: u16,
}

impl SocketSpec {
    fn describe(&self) -> String {
        format!("socket {}:{}", self.host, self.port)
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe(), problem: problem.to_string() }
    }
}

/// Opens a [`SocketSpec`] as a stream (it has no bounded view).
pub struct SocketSourceProvider {
    spec: SocketSpec,
}

impl SocketSourceProvider {
    pub fn new(spec: SocketSpec) -> Self {
        SocketSourceProvider { spec }
    }
}

#[async_trait]
impl SourceProvider for SocketSourceProvider {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    async fn open_stream(&self, _state: Checkpoint) -> Result<Box<dyn Source>> {
        let stream = tokio::net::TcpStream::connect((self.spec.host.as_str(), self.spec.port))
            .await
            .map_err(|e| self.spec.err(format!("cannot connect: {e}")))?;
        let received = Arc::new(Mutex::new(Received::default()));
        let (into, spec) = (received.clone(), self.spec.clone());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            loop {
                let line = lines.next_line().await;
                let Ok(mut received) = into.lock() else { return };
                match line {
                    Ok(Some(line)) => received.lines.push_back((line, chrono::Utc::now().timestamp_micros())),
                    Ok(None) => {
                        tracing::info!(source = %spec.describe(), "the server closed the connection");
                        return;
                    }
                    Err(e) => {
                        received.error = Some(e.to_string());
                        return;
                    }
                }
            }
        });
        Ok(Box::new(SocketStream { spec: self.spec.clone(), received, base: None }))
    }

    async fn open_bounded(&self, _version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        Err(Error::Unsupported(format!("{}: a socket has no history to read as a batch; stream it", self.describe())))
    }
}

/// What the reader task has received and not yet released.
#[derive(Default)]
struct Received {
    /// Lines with their arrival time (epoch µs), the first being line `base`.
    lines: VecDeque<(String, i64)>,
    error: Option<String>,
}

struct SocketStream {
    spec: SocketSpec,
    received: Arc<Mutex<Received>>,
    /// The number of the first line in `received` (where the checkpoint's last batch ended).
    base: Option<u64>,
}

fn lines_at(spec: &SocketSpec, offset: &Offset) -> Result<u64> {
    offset.value()["lines"].as_u64().ok_or_else(|| spec.err(format!("offset {offset} is not a socket source's")))
}

impl SocketStream {
    fn received(&self) -> Result<std::sync::MutexGuard<'_, Received>> {
        let received = self.received.lock().map_err(|_| Error::Internal("socket buffer poisoned".into()))?;
        if let Some(e) = &received.error {
            return Err(self.spec.err(format!("reading: {e}")));
        }
        Ok(received)
    }
}

#[async_trait]
impl Source for SocketStream {
    async fn latest_offset(&mut self, start: Option<&Offset>, _until: Option<&Offset>) -> Result<Option<Offset>> {
        let from = start.map(|s| lines_at(&self.spec, s)).transpose()?.unwrap_or(0);
        let base = *self.base.get_or_insert(from);
        let end = base + self.received()?.lines.len() as u64;
        Ok(Some(Offset::new(serde_json::json!({ "lines": end.max(from) }))))
    }

    async fn available_end(&mut self) -> Result<Option<Offset>> {
        Err(Error::Unsupported(format!(
            "{}: a socket has no end to read up to; run it with a processing-time trigger",
            self.spec.describe()
        )))
    }

    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch> {
        let to = lines_at(&self.spec, &range.end)?;
        let from = range.start.as_ref().map(|s| lines_at(&self.spec, s)).transpose()?.unwrap_or(0);
        let base = *self.base.get_or_insert(to);
        let (mut value, mut timestamp) = (Vec::new(), Vec::new());
        {
            let received = self.received()?;
            for n in from.max(base)..to {
                if let Some((line, at)) = received.lines.get((n - base) as usize) {
                    value.push(line.clone());
                    timestamp.push(*at);
                }
            }
        }
        let lost = (to - from) - value.len() as u64;
        if lost > 0 {
            tracing::warn!(source = %self.spec.describe(), lost, range = %range, "lines of a replayed batch were received by a process that is gone; a socket cannot send them again");
        }
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        let timestamp = Series::new("timestamp".into(), timestamp).cast(&utc).map_err(Error::polars("socket rows"))?;
        let rows = DataFrame::new_infer_height(vec![
            Series::new("value".into(), value).into_column(),
            timestamp.into_column(),
        ])
        .map_err(Error::polars("socket rows"))?;
        Ok(SourceBatch { input_records: rows.height() as u64, rows, rejected: Vec::new() })
    }

    async fn acknowledge(&mut self, end: &Offset, _outcome: &SinkOutcome) -> Result<()> {
        // Lines before `end` are downstream: release them.
        let end = lines_at(&self.spec, end)?;
        let Some(base) = self.base else { return Ok(()) };
        let mut received = self.received.lock().map_err(|_| Error::Internal("socket buffer poisoned".into()))?;
        let done = (end.saturating_sub(base) as usize).min(received.lines.len());
        received.lines.drain(..done);
        self.base = Some(base + done as u64);
        Ok(())
    }

    fn lanes(&mut self) -> Option<&mut dyn tidewater_core::Lanes> {
        None
    }

    fn history(&mut self) -> Option<&mut dyn tidewater_core::History> {
        None
    }
}
