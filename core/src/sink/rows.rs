//! Sinks for development: [`ConsoleSink`] prints each batch (Spark's console sink), and
//! [`MemorySink`] keeps each batch in memory for a test to look at (Spark's memory sink).

use crate::batch::SinkOutcome;
use crate::contract::{Sink, SinkProvider};
use crate::error::{Error, Result};
use crate::id::BatchId;
use async_trait::async_trait;
use polars::prelude::DataFrame;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

/// Prints each batch to stdout: a `Batch: N` header, its first `num_rows` rows as a table, and
/// how many there were. At least once: a batch replayed after a crash is printed again.
///
/// Polars elides tables longer than `POLARS_FMT_MAX_ROWS` rows (default 10): call
/// [`show_whole_batches`] at the start of `main` to see all `num_rows` (`tidewater run` does).
#[derive(Clone, Debug)]
pub struct ConsoleSink {
    num_rows: usize,
}

impl ConsoleSink {
    /// Spark's default: 20 rows of each batch.
    pub const DEFAULT_ROWS: usize = 20;

    pub fn new(num_rows: usize) -> Self {
        ConsoleSink { num_rows }
    }
}

impl Default for ConsoleSink {
    fn default() -> Self {
        ConsoleSink::new(Self::DEFAULT_ROWS)
    }
}

/// Lets Polars print tables of any length (`POLARS_FMT_MAX_ROWS=-1`) unless the environment says
/// otherwise. Call it before the process starts other threads: it changes the environment.
pub fn show_whole_batches() {
    const MAX_ROWS: &str = "POLARS_FMT_MAX_ROWS";
    if std::env::var_os(MAX_ROWS).is_none() {
        // SAFETY: the caller runs this before any other thread exists, so nothing reads the
        // environment while it changes.
        unsafe { std::env::set_var(MAX_ROWS, "-1") }
    }
}

#[async_trait]
impl Sink for ConsoleSink {
    fn describe(&self) -> String {
        "console".into()
    }

    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, range: &str) -> Result<SinkOutcome> {
        let shown = rows.head(Some(self.num_rows));
        let text = format!(
            "-------------------------------------------\nBatch: {} ({range})\n-------------------------------------------\n{shown}\n{}\n",
            id.get(),
            if shown.height() < rows.height() {
                format!("showing the first {} of {} rows", shown.height(), rows.height())
            } else {
                format!("{} rows", rows.height())
            }
        );
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::Internal(format!("console sink: writing batch {id} to stdout: {e}")))?;
        Ok(SinkOutcome::Delivered { rows: rows.height() as u64 })
    }
}

#[async_trait]
impl SinkProvider for ConsoleSink {
    fn describe(&self) -> String {
        "console".into()
    }

    async fn open(&self) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

/// Keeps each batch's rows in memory, by batch id, for a test (or a notebook) to read back with
/// [`MemorySink::batches`] or [`MemorySink::rows`]. Clones share the batches, so keep one clone
/// and give the pipeline another. Exactly once within the process: a batch id it holds already
/// is skipped. Nothing survives the process.
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    batches: Arc<Mutex<Vec<(BatchId, DataFrame)>>>,
}

impl MemorySink {
    pub fn new() -> Self {
        MemorySink::default()
    }

    /// The batches received, in order, with their ids.
    pub fn batches(&self) -> Vec<(BatchId, DataFrame)> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Every row received, the batches one after another.
    pub fn rows(&self) -> Result<DataFrame> {
        let batches = self.batches();
        let mut frames = batches.into_iter().map(|(_, rows)| rows);
        let Some(mut all) = frames.next() else { return Ok(DataFrame::empty()) };
        for rows in frames {
            all.vstack_mut(&rows).map_err(Error::polars("memory sink: stacking its batches"))?;
        }
        Ok(all)
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, _range: &str) -> Result<SinkOutcome> {
        let mut batches = self.batches.lock().map_err(|_| Error::Internal("memory sink poisoned".into()))?;
        if let Some((last, _)) = batches.last()
            && *last >= id
        {
            return Ok(SinkOutcome::Skipped { recorded: last.get() as i64 });
        }
        let height = rows.height() as u64;
        batches.push((id, rows));
        Ok(SinkOutcome::Delivered { rows: height })
    }
}

#[async_trait]
impl SinkProvider for MemorySink {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn open(&self) -> Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

/// A query's sink: its Delta table, or a [`Sink`] of another kind.
pub(crate) enum Output {
    Table(Box<super::DeltaSink>),
    Rows(Box<dyn Sink>),
}

impl Output {
    pub fn describe(&self) -> String {
        match self {
            Output::Table(sink) => sink.url().to_string(),
            Output::Rows(sink) => sink.describe(),
        }
    }

    /// The table, for what only a table does (bounded runs, replacing changes).
    pub fn table(&mut self) -> Result<&mut super::DeltaSink> {
        match self {
            Output::Table(sink) => Ok(sink),
            Output::Rows(sink) => Err(Error::Unsupported(format!(
                "the query writes to {}: only a Delta table sink takes this write",
                sink.describe()
            ))),
        }
    }

    pub async fn settle(&mut self) {
        if let Output::Table(sink) = self {
            sink.settle().await;
        }
    }

    /// Writes a batch: to the table as one commit with its change and lanes, or the rows to the
    /// sink.
    pub async fn add_batch(
        &mut self,
        id: BatchId,
        rows: DataFrame,
        range: &str,
        change: super::Change,
        lanes: &[crate::batch::Lane],
    ) -> Result<SinkOutcome> {
        match self {
            Output::Table(sink) => sink.commit(id, rows, range, change, lanes).await,
            Output::Rows(sink) => sink.add_batch(id, rows, range).await,
        }
    }

    /// What the table records for these lanes (`None`: no table, or nothing recorded).
    pub async fn recorded_versions(&mut self, app_ids: &[String]) -> Result<Option<Vec<Option<i64>>>> {
        match self {
            Output::Table(sink) => sink.recorded_versions(app_ids).await,
            Output::Rows(_) => Ok(None),
        }
    }
}
