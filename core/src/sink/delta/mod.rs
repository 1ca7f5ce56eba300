//! The idempotent Delta sink: one batch, one Delta commit, carrying `txn {appId, version = batch}`.
//!
//! This file is the handle, [`DeltaSink`]: the table's URL, the app id its txns carry, how its
//! commits appear in the table's history ([`WriteKind`]), the table it holds open and refreshes,
//! the txn lookups ([`DeltaSink::committed_version`], [`DeltaSink::recorded_versions`]), creating
//! the table at the first commit, and checkpoints written in the background
//! ([`DeltaSink::settle`] waits for the last one). Beside it:
//! - `commit.rs`: the commit protocol ([`DeltaSink::commit`]): the txn check, the put-if-absent
//!   fast path, the rebase of a blind append, and when a conflict is an error.
//! - `replace.rs`: copy-on-write replacement ([`Change`], [`Within`], [`Slice`]): which files a
//!   replacing commit removes and which of their rows it writes again.
//!
//! # Invariant
//! For an app id, a batch id lands in at most one commit. Before writing, the sink knows the
//! table's recorded txn version for its app id (read from the log, or its own last commit, see
//! below) and skips any batch at or below it (Spark's `DeltaSink.addBatch` rule). The data files
//! and the txn go into the same `_delta_log` entry, so either both are visible or neither. A
//! commit that fails because another writer recorded the batch first (`ConcurrentTransaction`)
//! is re-checked and reported as skipped.
//!
//! # What the handle knows without reading the log
//! The snapshot and the recorded txn version are read from the log once: at the first batch, and
//! again after anything fails (a failed commit forgets both). After that, the handle keeps the
//! txn version and the table version of its own last commit (`recorded`, `known_version`) and the
//! lanes its commits recorded since its snapshot: its snapshot is not brought up to date after
//! its own commits (delta-rs's commit would re-materialize every file of the table after each
//! one, a cost that grows with the table). Checkpoints are written every
//! `delta.checkpointInterval` commits, as delta-rs would, but in the background; expired log
//! files are cleaned only then, not by listing the whole `_delta_log` after every commit.

mod commit;
mod replace;
#[cfg(test)]
mod tests;

pub use replace::{Change, Slice, Within};

use crate::batch::SinkOutcome;
use crate::clock::{Clock, SystemClock};
use crate::crash::StepHook;
use crate::error::{Error, Result};
use crate::id::BatchId;
use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::table::config::TablePropertiesExt as _;
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableBuilder};
use polars::prelude::DataFrame;
use std::sync::Arc;
use url::Url;

/// How commits are recorded in the table history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// `STREAMING UPDATE` (queryId = app id, epochId = batch id), as Spark's streaming sink.
    Stream,
    /// `WRITE` in append mode, as a batch job with `txnAppId`/`txnVersion`.
    Batch,
}

/// The table property where the sink records the output's key columns (comma separated), read by
/// the consistency checker when it is not given a key.
pub const KEY_PROPERTY: &str = "tidewater.key";

/// A Delta table written batch by batch, idempotently.
pub struct DeltaSink {
    url: Url,
    app_id: String,
    partition_by: Vec<String>,
    key: Vec<String>,
    kind: WriteKind,
    table: Option<DeltaTable>,
    /// The txn version recorded for `app_id` at `table`'s version, when the sink knows it without
    /// reading the log: after its own commit (`Some(None)`: known to be absent).
    recorded: Option<Option<i64>>,
    /// The latest table version this sink knows every commit up to (its snapshot's, or its own
    /// last commit's); `None`: read the log first.
    known_version: Option<u64>,
    /// The checkpoint being written in the background, if any.
    checkpointing: Option<tokio::task::JoinHandle<()>>,
    hook: Option<StepHook>,
    /// The lane txn versions this sink's own commits since its snapshot recorded (the snapshot
    /// is not refreshed after them; see the module doc).
    lanes: std::collections::HashMap<String, i64>,
    /// The time its commits record (txn `lastUpdated`, data files' modification times) and log
    /// cleanup counts from.
    clock: Arc<dyn Clock>,
}

impl DeltaSink {
    pub fn new(url: Url, app_id: impl Into<String>, kind: WriteKind) -> Self {
        DeltaSink {
            url,
            app_id: app_id.into(),
            partition_by: Vec::new(),
            key: Vec::new(),
            kind,
            table: None,
            recorded: None,
            known_version: None,
            checkpointing: None,
            hook: None,
            lanes: Default::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock its commits' times come from (the job's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Partition columns used when the sink creates the table.
    pub fn with_partition_by(mut self, columns: Vec<String>) -> Self {
        self.partition_by = columns;
        self
    }

    /// Key columns recorded in the table property [`KEY_PROPERTY`] when the sink creates the table.
    pub fn with_key(mut self, columns: Vec<String>) -> Self {
        self.key = columns;
        self
    }

    /// Called at the data-files and Delta-commit crash points (fault injection).
    pub fn with_hook(mut self, hook: Option<StepHook>) -> Self {
        self.hook = hook;
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn kind(&self) -> WriteKind {
        self.kind
    }

    /// Opens the table, refreshed to its latest version; `None` if it does not exist yet.
    async fn refreshed(&mut self) -> Result<Option<&mut DeltaTable>> {
        let url = self.url.clone();
        let delta = |op| Error::delta(&url, op);
        if self.table.is_none() {
            // Built without loading: loading a location that is not a table yet makes delta-rs
            // log an error, and a table that does not exist yet is the normal first run.
            let table = DeltaTableBuilder::from_url(self.url.clone()).and_then(|b| b.build()).map_err(delta("open"))?;
            self.table = Some(table);
        }
        let Some(table) = self.table.as_mut() else {
            return Ok(None);
        };
        self.lanes.clear();
        if table.version().is_some() {
            table.update_state().await.map_err(delta("refresh"))?;
        } else if table.log_store().is_delta_table_location().await.map_err(delta("look for _delta_log"))? {
            table.load().await.map_err(delta("load"))?;
        } else {
            return Ok(None);
        }
        self.known_version = table.version();
        Ok(Some(table))
    }

    /// The txn version the table records for this sink's app id (`None`: nothing committed yet),
    /// read from the table's latest version.
    pub async fn committed_version(&mut self) -> Result<Option<i64>> {
        self.recorded = None;
        let app_id = self.app_id.clone();
        let url = self.url.to_string();
        let Some(table) = self.refreshed().await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let recorded = snapshot
            .transaction_version(table.log_store().as_ref(), &app_id)
            .await
            .map_err(Error::delta(&url, "read txn"))?;
        self.recorded = Some(recorded);
        Ok(recorded)
    }

    async fn create(&mut self, schema: &ArrowSchema) -> Result<()> {
        for (role, column) in
            self.partition_by.iter().map(|c| ("partition", c)).chain(self.key.iter().map(|c| ("key", c)))
        {
            if schema.field_with_name(column).is_err() {
                return Err(Error::SchemaMismatch {
                    table: self.url.to_string(),
                    problem: format!("{role} column `{column}` is not in the output"),
                });
            }
        }
        let key = (!self.key.is_empty()).then(|| self.key.join(","));
        let kernel: StructType = schema.try_into_kernel().map_err(|e| Error::SchemaMismatch {
            table: self.url.to_string(),
            problem: format!("output schema has no Delta equivalent: {e}"),
        })?;
        let table = DeltaTableBuilder::from_url(self.url.clone())
            .and_then(|b| b.build())
            .map_err(Error::delta(&self.url, "open"))?;
        let created = table
            .create()
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(self.partition_by.clone())
            .with_configuration([(KEY_PROPERTY, key)])
            .with_raise_if_key_not_exists(false)
            .with_save_mode(SaveMode::Ignore)
            .await
            .map_err(Error::delta(&self.url, "create"))?;
        tracing::info!(table = %self.url, "created Delta table");
        self.known_version = created.version();
        self.table = Some(created);
        Ok(())
    }

    fn operation(&self, id: BatchId) -> DeltaOperation {
        match self.kind {
            WriteKind::Stream => DeltaOperation::StreamingUpdate {
                output_mode: OutputMode::Append,
                query_id: self.app_id.clone(),
                epoch_id: id.txn_version(),
            },
            WriteKind::Batch => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: self.partition_columns().filter(|p| !p.is_empty()),
                predicate: None,
            },
        }
    }

    fn partition_columns(&self) -> Option<Vec<String>> {
        Some(self.table.as_ref()?.snapshot().ok()?.metadata().partition_columns().to_vec())
    }
}

/// Writes the checkpoint of `version` from a lazy kernel snapshot (one replay of the log, where
/// loading a `DeltaTable` first would materialize every file of the table), then, if `cleanup`
/// gives the cut-off time, deletes the log files expired before it; returns how many.
async fn checkpoint_at(
    log_store: deltalake::logstore::LogStoreRef,
    version: u64,
    cleanup: Option<i64>,
) -> std::result::Result<usize, String> {
    // A store of its own (for S3, its own HTTP client): connections opened on the checkpoint's
    // runtime must not be left in the pool of the store the batches use once that runtime ends.
    let config = log_store.config();
    let own = deltalake::logstore::logstore_for(config.location(), config.options().clone())
        .map_err(|e| format!("cannot open the table's store for the checkpoint: {e}"))?;
    let store = own.root_object_store(None);
    let root = own.transaction_url(None).map_err(|e| e.to_string())?;
    // A thread of its own at the lowest CPU priority (Linux keeps a nice value per thread), so
    // the checkpoint yields the cores to the batches; it ends with the checkpoint, so no pool
    // thread is left at that priority. Its engine runs the reads and the write of the checkpoint
    // on a runtime of its own, started from that thread (so at that priority too), not on the
    // process's runtime where delta-rs's engine would run them beside the batches.
    let (done, written) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("tidewater-checkpoint".into())
        .spawn(move || {
            // SAFETY: a plain syscall on this thread's own id.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
            let engine = delta_kernel_default_engine::DefaultEngineBuilder::new(store).build();
            let write = || {
                let snapshot = delta_kernel::Snapshot::builder_for(root).at_version(version).build(&engine)?;
                snapshot.checkpoint(&engine, None).map(|_| ())
            };
            let _ = done.send(write().map_err(|e| e.to_string()));
        })
        .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
    written.await.map_err(|_| "the checkpoint thread ended without a result".to_string())??;
    let Some(cutoff_ms) = cleanup else { return Ok(0) };
    deltalake::checkpoints::cleanup_expired_logs_for(version, log_store.as_ref(), cutoff_ms, None)
        .await
        .map_err(|e| e.to_string())
}

/// Whether a checkpoint is due at `version` (delta-rs's and Spark's rule: every
/// `delta.checkpointInterval` versions, counting from version 0).
fn checkpoint_due(snapshot: &DeltaTableState, version: u64) -> bool {
    (version + 1).is_multiple_of(snapshot.table_config().checkpoint_interval().get())
}

impl DeltaSink {
    /// Appends `rows` as batch `id`: one commit with its txn, skipped when the table records it
    /// (a late table's rows, a generated table's). The engine's own batches go through
    /// [`DeltaSink::commit`] with their change and lanes.
    pub async fn append(&mut self, id: BatchId, rows: DataFrame, range: &str) -> Result<SinkOutcome> {
        self.commit(id, rows, range, Change::Append, &[]).await
    }
}

impl DeltaSink {
    /// The txn versions the table records for each of `app_ids` (`None`: not committed), read
    /// from its latest version; `None` when the table does not exist yet.
    pub async fn recorded_versions(&mut self, app_ids: &[String]) -> Result<Option<Vec<Option<i64>>>> {
        let url = self.url.to_string();
        let Some(table) = self.refreshed().await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let mut out = Vec::with_capacity(app_ids.len());
        for app_id in app_ids {
            out.push(
                snapshot
                    .transaction_version(table.log_store().as_ref(), app_id)
                    .await
                    .map_err(Error::delta(&url, "read txn"))?,
            );
        }
        Ok(Some(out))
    }

    /// Waits for the checkpoint being written in the background, if any: called when a run ends,
    /// so the process does not exit in the middle of it.
    pub async fn settle(&mut self) {
        if let Some(task) = self.checkpointing.take()
            && let Err(e) = task.await
        {
            tracing::warn!(table = %self.url, "checkpoint task failed: {e}");
        }
    }

    /// Writes a checkpoint at `version` (and cleans expired log files, as the table's properties
    /// say) off the hot path, as delta-rs's post-commit hook would after the commit. One runs at a
    /// time: a checkpoint still running from the previous interval is waited for first. A
    /// checkpoint is put whole or not at all, so one cut short by a crash costs nothing but a
    /// longer log replay.
    async fn checkpoint_in_background(&mut self, version: u64) {
        self.settle().await;
        let Some(table) = self.table.as_ref() else { return };
        let (url, log_store) = (self.url.clone(), table.log_store());
        let cleanup = table.snapshot().ok().map(DeltaTableState::table_config).and_then(|config| {
            let retention = config.log_retention_duration().as_millis() as i64;
            config.enable_expired_log_cleanup().then(|| self.clock.now_ms() - retention)
        });
        self.checkpointing = Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            match checkpoint_at(log_store, version, cleanup).await {
                Ok(cleaned) => tracing::debug!(
                    table = %url,
                    version,
                    cleaned,
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint written"
                ),
                Err(e) => tracing::warn!(table = %url, version, "checkpoint not written: {e}"),
            }
        }));
    }
}
