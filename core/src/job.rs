//! [`Job`]: a [`crate::Pipeline`] once resolved: its checkpoint opened, its sink, quarantine and
//! late tables chosen. It is owned (its parts are shared handles), so a stream, a batch run or a
//! backfill holds its own and never calls back into the builder. A table's location becomes a URL
//! (and a local table's directory is made) only where a run uses it, so a run refused before it
//! writes leaves nothing behind.
//!
//! What a job knows of its own stream (its app id, the offsets of a batch it committed, the
//! watermark it ran with) is read from the checkpoint here, for the bounded runs that go beside it.

use crate::checkpoint::{Checkpoint, OffsetEntry, QueryMetadata};
use crate::clock::{Clock, Stop};
use crate::contract::{SinkProvider, Source, SourceProvider, Transform};
use crate::crash::StepHook;
use crate::error::{Error, Result};
use crate::id::Offset;
use crate::location::table_url;
use crate::ops::aggregate::Aggregation;
use crate::ops::dedup::Dedup;
use crate::ops::static_tables::StaticTables;
use crate::ops::watermark::{LateRule, Watermark};
use crate::sink::{DeltaSink, Output, WriteKind};
use crate::step::{BatchStep, LateRows};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Where a job's result rows go.
#[derive(Clone)]
pub(crate) enum JobSink {
    /// A Delta table (its location as given): every output mode, bounded runs, backfills, `verify`.
    Table(String),
    /// A sink of another kind (console, memory, Kafka): streams only.
    Rows(Arc<dyn SinkProvider>),
}

/// A pipeline resolved: what a stream, a batch run or a backfill runs.
#[derive(Clone)]
pub(crate) struct Job {
    pub name: String,
    pub source: Arc<dyn SourceProvider>,
    pub transform: Arc<dyn Transform>,
    pub sink: JobSink,
    pub partition_by: Vec<String>,
    pub key: Vec<String>,
    /// The quarantine table asked for (else [`Job::quarantine`] chooses it).
    pub quarantine: Option<String>,
    /// The table late rows go to, when the job has a watermark and one (`None`: only counted).
    pub late: Option<String>,
    pub watermark: Option<Watermark>,
    pub aggregation: Option<Aggregation>,
    pub dedup: Option<Dedup>,
    pub statics: StaticTables,
    pub checkpoint: Checkpoint,
    pub hook: Option<StepHook>,
    pub stop: Stop,
    pub clock: Arc<dyn Clock>,
    /// How often a running backfill chunk records that its process is alive.
    pub heartbeat: Duration,
}

impl Job {
    /// The job's sink table; refused for a job writing to a sink of another kind.
    pub fn table(&self) -> Result<Url> {
        match &self.sink {
            JobSink::Table(table) => table_url(table),
            JobSink::Rows(sink) => Err(Error::Unsupported(format!(
                "pipeline {} writes to {}: bounded runs, backfills and verify need a Delta table sink",
                self.name,
                sink.describe()
            ))),
        }
    }

    /// The quarantine table the job's stream writes (and its bounded runs into its own table):
    /// the one asked for, else `<table>_quarantine`, else (beside a sink of another kind)
    /// `<checkpoint>/quarantine`.
    pub fn quarantine(&self) -> Result<Url> {
        match (&self.quarantine, &self.sink) {
            (Some(q), _) => table_url(q),
            (None, JobSink::Table(_)) => Job::quarantine_beside(None, &self.table()?),
            (None, JobSink::Rows(_)) => table_url(self.checkpoint.child("quarantine").url()),
        }
    }

    /// Whether `target` (a table URL) is the job's sink table.
    pub fn is_own_table(&self, target: &str) -> Result<bool> {
        Ok(self.table()?.as_str() == target)
    }

    /// The job's sink into `table` under `app_id`, with its partitioning, key and crash hook.
    pub fn delta_sink(&self, table: Url, app_id: &str, kind: WriteKind) -> DeltaSink {
        DeltaSink::new(table, app_id, kind)
            .with_partition_by(self.partition_by.clone())
            .with_key(self.key.clone())
            .with_hook(self.hook.clone())
            .with_clock(self.clock.clone())
    }

    /// The step that runs the job's batches into `sink`, with `quarantine` and `late` keyed by the
    /// same app id and kind.
    pub fn step(
        &self,
        sink: Output,
        app_id: &str,
        kind: WriteKind,
        quarantine: Url,
        late: LateRule,
    ) -> Result<BatchStep> {
        let late_table = match (&late, &self.late) {
            (LateRule::Watermark(_), Some(table)) => {
                Some(DeltaSink::new(table_url(table)?, app_id, kind).with_clock(self.clock.clone()))
            }
            _ => None,
        };
        Ok(BatchStep {
            transform: self.transform.clone(),
            sink,
            quarantine: DeltaSink::new(quarantine, app_id, kind).with_clock(self.clock.clone()),
            late: LateRows { rule: late, table: late_table },
            aggregation: self.aggregation.clone(),
            dedup: self.dedup.clone(),
            statics: self.statics.clone(),
        })
    }

    /// What the job's stream sets aside as late: rows behind its watermark, if it has one.
    pub fn late_rule(&self) -> LateRule {
        self.watermark.clone().map_or(LateRule::None, LateRule::Watermark)
    }

    /// The Delta txn app id of the job's stream, once it has started (its checkpoint has query
    /// metadata); `None` when the job has never streamed.
    pub async fn stream_app_id(&self) -> Result<Option<String>> {
        let meta = self.checkpoint.get_json::<QueryMetadata>("metadata").await?;
        Ok(meta.map(|m| m.id.app_id()))
    }

    /// The version of the job's sink table holding its stream's latest batch (`None`: the
    /// stream has not written there).
    pub async fn stream_has_written(&self) -> Result<Option<i64>> {
        let Some(app_id) = self.stream_app_id().await? else {
            return Ok(None);
        };
        DeltaSink::new(self.table()?, &app_id, WriteKind::Stream).committed_version().await
    }

    /// The watermark the job's stream's latest batch ran with (its offset log), `None` before
    /// it ran or without a watermark.
    pub async fn stream_watermark(&self) -> Result<Option<i64>> {
        Ok(self.checkpoint.latest_offsets().await?.and_then(|(_, entry)| entry.context.watermark_ms))
    }

    /// Where the job's stream's batch `batch` ended, from its offset log.
    pub async fn stream_end(&self, batch: i64) -> Result<Offset> {
        let rel = format!("offsets/{batch}.json");
        let entry = self.checkpoint.get_json::<OffsetEntry>(&rel).await?.ok_or_else(|| {
            Error::Internal(format!(
                "{}/{rel}: the sink table records batch {batch} of the job's stream, but the checkpoint has no offsets for it",
                self.checkpoint.url()
            ))
        })?;
        Ok(entry.range.end)
    }

    /// The job's stream's source, on its own state in the checkpoint.
    pub async fn open_stream_source(&self) -> Result<Box<dyn Source>> {
        self.source.open_stream(self.checkpoint.child("sources/0")).await
    }

    /// The quarantine table for `table`: `explicit`, or `<table>_quarantine`.
    pub fn quarantine_beside(explicit: Option<&str>, table: &Url) -> Result<Url> {
        match explicit {
            Some(q) => table_url(q),
            None => table_url(&default_quarantine(table.as_str())),
        }
    }
}

/// The quarantine table beside `table` when none is configured: `<table>_quarantine`.
pub fn default_quarantine(table: &str) -> String {
    format!("{}_quarantine", table.trim_end_matches('/'))
}

/// The late table beside `table` when none is configured: `<table>_late`.
pub fn default_late(table: &str) -> String {
    format!("{}_late", table.trim_end_matches('/'))
}
