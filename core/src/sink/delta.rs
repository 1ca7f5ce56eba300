//! The idempotent Delta sink: one batch, one Delta commit, carrying `txn {appId, version = batch}`.
//!
//! # Invariant
//! For an app id, a batch id lands in at most one commit. Before writing, the sink knows the
//! table's recorded txn version for its app id (read from the log, or its own last commit, see
//! below) and skips any batch at or below it (Spark's `DeltaSink.addBatch` rule). The data files
//! and the txn go into the same `_delta_log` entry, so either both are visible or neither. A commit that fails because another writer recorded the
//! batch first (`ConcurrentTransaction`) is re-checked and reported as skipped.
//!
//! # Per-batch cost
//! The snapshot and the recorded txn version are read from the log once: at the first batch, and
//! again after anything fails. After that, a batch (a blind append) is written straight as the
//! version after the last one the sink knows. That log entry is put-if-absent, so it lands only
//! if no other writer committed in between: there is then nothing to conflict with, and neither
//! the txn nor the snapshot needs re-reading (delta-rs's commit would re-materialize every file of
//! the table after each commit, a cost that grows with the table). If another writer took the
//! version, the sink refreshes, re-checks its txn (a zombie of the same query may have committed
//! this very batch) and commits through delta-rs's full protocol, with its conflict checks.
//! Checkpoints are written every `delta.checkpointInterval` commits, as delta-rs would, but in
//! the background; expired log files are cleaned only then, not by listing the whole
//! `_delta_log` after every commit.

use super::files::{self, FileLayout};
use crate::batch::{Lane, SinkCommit};
use crate::bridge::arrow_schema;
use crate::contract::Sink;
use crate::crash::{CrashPoint, StepHook, pass};
use crate::error::{Error, Result};
use crate::id::BatchId;
use crate::scope::Span;
use crate::table_files::DataFile;
use async_trait::async_trait;
use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::kernel::Remove;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, StructType, Transaction};
use deltalake::logstore::CommitOrBytes;
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::table::config::TablePropertiesExt as _;
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use polars::prelude::{DataFrame, DataType, Expr, IntoLazy as _, NULL, col, lit};
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
    /// is not refreshed after them; see the per-batch cost above).
    lanes: std::collections::HashMap<String, i64>,
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
        }
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

/// The properties of a commit through delta-rs's full protocol after `snapshot`: the txn, and
/// expired log files cleaned only when that commit writes a checkpoint (delta-rs would otherwise
/// list the whole `_delta_log` after every commit, a cost that grows with the table's history).
fn checked_properties(snapshot: &DeltaTableState, txns: &[Transaction]) -> CommitProperties {
    let cleans =
        snapshot.table_config().enable_expired_log_cleanup() && checkpoint_due(snapshot, snapshot.version() + 1);
    // A commit that loses the race for a version to a fast writer beside it (a stream committing
    // many times a second beside a backfill chunk) checks the winners and tries the next one:
    // cheap, and much cheaper than recomputing the chunk when delta-rs' default 15 run out.
    CommitProperties::default()
        .with_application_transactions(txns.to_vec())
        .with_cleanup_expired_logs(Some(cleans))
        .with_max_retries(VERSION_RETRIES)
}

/// Versions a checked commit tries before it gives up (delta-rs' default: 15).
const VERSION_RETRIES: usize = 200;

#[async_trait]
impl Sink for DeltaSink {
    fn describe(&self) -> String {
        self.url().to_string()
    }

    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, range: &str) -> Result<SinkCommit> {
        self.commit(id, rows, range, Change::Append, &[]).await
    }
}

/// What a commit does to the table besides adding the batch's rows.
#[derive(Clone, Debug)]
pub enum Change {
    /// Nothing else: a blind append.
    Append,
    /// Remove these files, chosen from the table at `read_version`: the commit is built on that
    /// snapshot, so Delta's conflict check sees any commit since that touched them (a repair, a
    /// backfill chunk's slice).
    /// `read_version` is `None` when the table did not exist yet (nothing to remove).
    /// `within` says which new rows may be written, and which other rows of removed files are
    /// written again.
    Replace { removes: Vec<Remove>, predicate: String, read_version: Option<u64>, within: Within },
}

/// What a replacing commit replaces, beyond its removes.
#[derive(Clone, Debug)]
pub enum Within {
    /// Any rows; the removed files, whole (a repair).
    Anything,
    /// New rows only in `span`; the rows of the `rewrite` files (among the removed) outside it
    /// are written again (copy-on-write of a slice by a data column).
    Span { span: Span, rewrite: Vec<DataFile> },
    /// New rows only with one of `keys` (in the sink's key `columns`); the files of the read
    /// version holding any of them are removed too, and their rows with other keys written
    /// again (copy-on-write by key).
    Keys { columns: Vec<String>, keys: DataFrame },
}

impl Change {
    fn predicate(&self) -> Option<String> {
        match self {
            Change::Append => None,
            Change::Replace { predicate, .. } => Some(predicate.clone()),
        }
    }
}

/// A span of a table as one version holds it (see [`DeltaSink::slice`]).
#[derive(Clone, Debug)]
pub struct Slice {
    pub version: u64,
    /// Removes of the files that may hold rows of the span.
    pub removes: Vec<Remove>,
    /// Those of them whose other rows must be written again: all of them for a span of a data
    /// column, none for a partition column.
    pub rewrite: Vec<DataFile>,
    /// The txn version the asked-for app id has at `version`.
    pub recorded: Option<i64>,
}

impl Slice {
    /// The change replacing `span` as `slice` holds it (`None`: the table does not exist yet):
    /// its removes, checked against commits since its version, its files' other rows kept, and
    /// new rows only within the span.
    pub fn replace(slice: Option<Slice>, span: Span) -> Change {
        let (removes, rewrite, read_version) =
            slice.map_or((Vec::new(), Vec::new(), None), |s| (s.removes, s.rewrite, Some(s.version)));
        Change::Replace { removes, predicate: span.predicate(), read_version, within: Within::Span { span, rewrite } }
    }
}

/// The least and greatest value of each date or timestamp column of `keys` (UTC), for pruning
/// files by their statistics; columns with nulls are left out (a null key may be in any file).
fn moment_ranges(
    keys: &DataFrame,
    columns: &[String],
) -> Result<Vec<(String, (chrono::NaiveDateTime, chrono::NaiveDateTime))>> {
    let mut out = Vec::new();
    for column in columns {
        let Ok(values) = keys.column(column) else { continue };
        if values.null_count() > 0 || values.is_empty() {
            continue;
        }
        let micros = match values.dtype() {
            DataType::Date => values.cast(&DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)),
            DataType::Datetime(..) => values.cast(&DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)),
            _ => continue,
        }
        .map_err(Error::polars("key ranges"))?;
        let physical = micros.as_materialized_series().to_physical_repr().into_owned();
        let (lo, hi) = (
            physical.min::<i64>().map_err(Error::polars("key ranges"))?,
            physical.max::<i64>().map_err(Error::polars("key ranges"))?,
        );
        let at = |us: Option<i64>| us.and_then(chrono::DateTime::from_timestamp_micros).map(|t| t.naive_utc());
        if let (Some(lo), Some(hi)) = (at(lo), at(hi)) {
            out.push((column.clone(), (lo, hi)));
        }
    }
    Ok(out)
}

/// For each key column that partitions the table (and whose type renders as Delta writes
/// partition values: strings, integers, dates, booleans), the partition values its keys have.
fn partition_values_of(
    keys: &DataFrame,
    columns: &[String],
    partitions: &[String],
) -> Result<Vec<(String, std::collections::HashSet<Option<String>>)>> {
    let mut out = Vec::new();
    for column in columns.iter().filter(|c| partitions.contains(c)) {
        let Ok(values) = keys.column(column) else { continue };
        let renders = matches!(
            values.dtype(),
            DataType::String
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Date
                | DataType::Boolean
        );
        if !renders {
            continue;
        }
        let text = values.cast(&DataType::String).map_err(Error::polars("partition values of the keys"))?;
        let text = text.str().map_err(Error::polars("partition values of the keys"))?;
        out.push((column.clone(), text.iter().map(|v| v.map(str::to_owned)).collect()));
    }
    Ok(out)
}

/// `rows` (read back from the table) in the columns and types of the rows being written: a
/// column they lack is null.
fn aligned_to(rows: DataFrame, schema: &polars::prelude::Schema) -> Result<DataFrame> {
    let columns: Vec<Expr> = schema
        .iter()
        .map(|(name, dtype)| {
            if rows.schema().contains(name) {
                col(name.clone()).cast(dtype.clone())
            } else {
                lit(NULL).cast(dtype.clone()).alias(name.clone())
            }
        })
        .collect();
    rows.lazy().select(columns).collect().map_err(Error::polars("aligning the kept rows"))
}

/// Times a blind append is committed again after a conflict with a commit that removed files.
const REBASES: u32 = 10;

impl DeltaSink {
    /// Commits `rows` with the txn (app id, `id`) and `change`, in one commit; skipped, like a
    /// batch, when the table already records `id` for the app id. A replacing commit is recorded
    /// as an overwrite with its predicate. `lanes` are recorded in the same commit, which is
    /// [`SinkCommit::Superseded`] (nothing written) if another writer moved one of them.
    pub async fn commit(
        &mut self,
        id: BatchId,
        rows: DataFrame,
        range: &str,
        change: Change,
        lanes: &[Lane],
    ) -> Result<SinkCommit> {
        let result = self.try_write_commit(id, rows, range, change, lanes).await;
        if result.is_err() {
            // Whatever failed, the next attempt starts from the log.
            (self.recorded, self.known_version) = (None, None);
        }
        result
    }

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

    /// Every file of the table's latest version, as removes, and that version; `(None, [])`
    /// when the table does not exist yet.
    pub async fn all_files(&mut self) -> Result<(Option<u64>, Vec<Remove>)> {
        let url = self.url.clone();
        let Some(table) = self.refreshed().await? else {
            return Ok((None, Vec::new()));
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let removes = snapshot.snapshot().log_data().iter().map(|f| f.remove_action(true)).collect();
        Ok((Some(snapshot.version()), removes))
    }

    /// The files that may hold rows of `span` in the table's latest version (by partition value
    /// when the table is partitioned by its column, else by the files' statistics, files
    /// without them included), and what `app_id` has committed there (one snapshot: a stream's
    /// files beside a backfill are exactly those of its batches up to `recorded`). `None` when
    /// the table does not exist yet.
    /// Without a span, no file: the version and the txn alone.
    pub async fn slice(&mut self, span: Option<&Span>, app_id: Option<&str>) -> Result<Option<Slice>> {
        let url = self.url.clone();
        let Some(table) = self.refreshed().await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let (mut removes, mut rewrite) = (Vec::new(), Vec::new());
        if let Some(span) = span {
            let by_partition = snapshot.metadata().partition_columns().contains(&span.column);
            if !by_partition && snapshot.schema().field(&span.column).is_none() {
                return Err(Error::Unsupported(format!(
                    "table {url}: a backfill replaces the rows of `{}`, and the table has no such column",
                    span.column
                )));
            }
            for f in snapshot.snapshot().log_data().iter() {
                let values = f.partition_values_map();
                let holds = if by_partition {
                    values.get(&span.column).cloned().flatten().and_then(|v| span.holds_partition_value(&v))
                        == Some(true)
                } else {
                    crate::table_files::column_bounds(&f, &span.column).is_none_or(|(min, max)| span.overlaps(min, max))
                };
                if holds {
                    removes.push(f.remove_action(true));
                    if !by_partition {
                        let size = u64::try_from(f.size()).unwrap_or_default();
                        rewrite.push(DataFile { path: f.path().into_owned(), partition_values: values, size });
                    }
                }
            }
        }
        let recorded = match app_id {
            Some(app_id) => snapshot
                .transaction_version(table.log_store().as_ref(), app_id)
                .await
                .map_err(Error::delta(&url, "read txn"))?,
            None => None,
        };
        Ok(Some(Slice { version: snapshot.version(), removes, rewrite, recorded }))
    }

    /// `rows` after checking that each is in `span`, with the rows of `rewrite` outside it.
    async fn with_kept_rows(
        &self,
        rows: DataFrame,
        span: &Span,
        rewrite: &[DataFile],
        range: &str,
    ) -> Result<DataFrame> {
        let Some(dtype) = rows.schema().get(&span.column).cloned() else {
            return Err(Error::Unsupported(format!(
                "table {}: {range} has no column `{}`, which the backfill slices by",
                self.url, span.column
            )));
        };
        let in_span = span.rows(&dtype)?;
        let (written, column) = (rows.clone(), span.column.clone());
        let outside = crate::compute::blocking("checking the rows' span", move || {
            written
                .lazy()
                .filter(in_span.not())
                .select([col(column.as_str())])
                .limit(1)
                .collect()
                .map_err(Error::polars("checking the rows' span"))
        })
        .await?;
        if outside.height() > 0 {
            let value = outside.column(&span.column).ok().and_then(|c| c.get(0).ok()).map(|v| v.to_string());
            return Err(Error::Unsupported(format!(
                "table {}: {range} writes a row with {} = {}, outside the slice {} it replaces; a backfill's transform must keep the value of the column the plan is over",
                self.url,
                span.column,
                value.unwrap_or_default(),
                span.predicate()
            )));
        }
        if rewrite.is_empty() {
            return Ok(rows);
        }
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table not open".into()))?;
        let reader = crate::table_files::FileReader::of(table, &format!("table {}", self.url))?;
        let kept = reader.read(rewrite).await?.rows;
        let kept_dtype = kept.schema().get(&span.column).cloned().unwrap_or(DataType::Null);
        let (outside, schema) = (span.rows(&kept_dtype)?.not(), rows.schema().clone());
        let kept = crate::compute::blocking("keeping the rewritten files' other rows", move || {
            let kept = kept
                .lazy()
                .filter(outside)
                .collect()
                .map_err(Error::polars("keeping the rewritten files' other rows"))?;
            aligned_to(kept, &schema)
        })
        .await?;
        tracing::info!(table = %self.url, files = rewrite.len(), kept = kept.height(), "rewriting the files of the slice with their rows outside it");
        let mut rows = rows;
        rows.vstack_mut_owned(kept).map_err(Error::polars("stacking the kept rows"))?;
        Ok(rows)
    }

    /// `rows` after checking that each has one of `keys`, with the rows of the table's files
    /// holding any of `keys` that have other keys; and the removes of those files. The table is
    /// at the version the commit is built on.
    async fn replace_keys(
        &self,
        rows: DataFrame,
        columns: &[String],
        keys: &DataFrame,
        range: &str,
    ) -> Result<(DataFrame, Vec<Remove>)> {
        if let Some(missing) = columns.iter().find(|c| !rows.schema().contains(c)) {
            return Err(Error::Unsupported(format!(
                "table {}: {range} has no column `{missing}` of the key [{}] its rows are replaced by",
                self.url,
                columns.join(", ")
            )));
        }
        let (wanted, columns) = (keys.clone(), columns.to_vec());
        let checked = rows.clone();
        let (cols, url, what) = (columns.clone(), self.url.to_string(), range.to_string());
        crate::compute::blocking("checking the rows' keys", move || {
            let (_, strangers) = crate::reconcile::split_by_keys(checked, &wanted, &cols)?;
            match strangers.height() {
                0 => Ok(()),
                n => Err(Error::Unsupported(format!(
                    "table {url}: {what} writes {n} rows whose key [{}] is not the key of any source row it read; a transform reprocessed by key must keep the key",
                    cols.join(", ")
                ))),
            }
        })
        .await?;
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table not open".into()))?;
        let snapshot = table.snapshot().map_err(Error::delta(&self.url, "snapshot"))?;
        let reader = crate::table_files::FileReader::of(table, &format!("table {}", self.url))?;
        let mut kept = rows;
        let mut removes = Vec::new();
        // The keys' range in each date or timestamp key column: a file whose statistics lie
        // outside it holds none of them (a window's start, a day).
        let ranges = moment_ranges(keys, &columns)?;
        let files: Vec<(DataFile, Remove)> = snapshot
            .snapshot()
            .log_data()
            .iter()
            .filter(|f| {
                ranges.iter().all(|(column, (lo, hi))| {
                    // A millisecond of slack: writers that truncate timestamp statistics
                    // (delta-rs, Spark) record a max up to 1 ms below the true one.
                    crate::table_files::column_bounds(f, column)
                        .is_none_or(|(min, max)| max + chrono::Duration::milliseconds(1) >= *lo && min <= *hi)
                })
            })
            .map(|f| {
                let size = u64::try_from(f.size()).unwrap_or_default();
                (
                    DataFile { path: f.path().into_owned(), partition_values: f.partition_values_map(), size },
                    f.remove_action(true),
                )
            })
            .collect();
        let partitions = snapshot.metadata().partition_columns().to_vec();
        let by_partition = partition_values_of(keys, &columns, &partitions)?;
        for (file, remove) in files {
            // A file of a partition no key is in holds none of them: not read at all.
            let elsewhere = by_partition
                .iter()
                .any(|(column, values)| file.partition_values.get(column).is_some_and(|value| !values.contains(value)));
            if elsewhere {
                continue;
            }
            // The key columns first; the whole file only when it holds one of the keys.
            // Polars work goes to the blocking pool (it must not run on an async worker).
            let file_keys = reader.read_columns(std::slice::from_ref(&file), &columns).await?.rows;
            let (wanted, by) = (keys.clone(), columns.clone());
            let hits = crate::compute::blocking("finding the replaced keys", move || {
                Ok(crate::reconcile::split_by_keys(file_keys, &wanted, &by)?.0.height())
            })
            .await?;
            if hits == 0 {
                continue;
            }
            let all = reader.read(std::slice::from_ref(&file)).await?.rows;
            let (wanted, by, schema) = (keys.clone(), columns.clone(), kept.schema().clone());
            let aligned = crate::compute::blocking("keeping the other rows", move || {
                aligned_to(crate::reconcile::split_by_keys(all, &wanted, &by)?.1, &schema)
            })
            .await?;
            kept.vstack_mut_owned(aligned).map_err(Error::polars("stacking the kept rows"))?;
            removes.push(remove);
        }
        tracing::info!(table = %self.url, files = removes.len(), keys = keys.height(), "rewriting the files holding the replaced keys");
        Ok((kept, removes))
    }

    /// The first of `lanes` that another writer moved: the table (at the latest version the sink
    /// knows, with its own commits since its snapshot) records neither nothing nor the lane's
    /// `from` for it.
    async fn moved_lane(&mut self, lanes: &[Lane]) -> Result<Option<SinkCommit>> {
        let Some(table) = self.table.as_ref().filter(|t| t.version().is_some()) else { return Ok(None) };
        let url = self.url.to_string();
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        for lane in lanes {
            let recorded = match self.lanes.get(&lane.app_id) {
                Some(&ours) => Some(ours),
                None => snapshot
                    .transaction_version(table.log_store().as_ref(), &lane.app_id)
                    .await
                    .map_err(Error::delta(&url, "read txn"))?,
            };
            if let Some(recorded) = recorded
                && Some(recorded) != lane.from
            {
                tracing::warn!(table = %self.url, lane = %lane.origin, recorded, expected = ?lane.from, "another writer committed this lane's offsets first; nothing written");
                return Ok(Some(SinkCommit::Superseded { lane: lane.origin.clone(), recorded, expected: lane.from }));
            }
        }
        Ok(None)
    }

    async fn try_write_commit(
        &mut self,
        id: BatchId,
        mut rows: DataFrame,
        range: &str,
        change: Change,
        lanes: &[Lane],
    ) -> Result<SinkCommit> {
        let predicate = change.predicate();
        let blind_append = predicate.is_none();
        // The snapshot a replace's removes were chosen from, if the sink holds it: the txn
        // check below brings the table to its latest version, and the commit goes back to this.
        let at_read = match &change {
            Change::Replace { read_version: Some(v), .. } => {
                self.table.as_ref().filter(|t| t.version() == Some(*v)).cloned()
            }
            _ => None,
        };
        // A replace reads the log: it must conflict-check against the table as it is now.
        let mut recorded = match self.recorded.take() {
            Some(known) if blind_append => known,
            // The sink's own last commit is the latest version: what it recorded still holds,
            // and the refresh brings its snapshot to that version, without reading the txn.
            Some(known) if self.known_version.is_some() => {
                let ours = self.known_version;
                self.refreshed().await?;
                if self.known_version == ours { known } else { self.committed_version().await? }
            }
            _ => self.committed_version().await?,
        };
        if self.table.as_ref().and_then(DeltaTable::version).is_none() {
            let schema = arrow_schema(&rows)?;
            self.create(&schema).await?;
            if self.known_version != Some(0) {
                // Someone else created the table first (a zombie of this query?): read its txn.
                recorded = self.committed_version().await?;
            }
        }
        if let Some(recorded) = recorded
            && recorded >= id.txn_version()
        {
            tracing::info!(table = %self.url, %id, recorded, "already committed; skipped");
            self.recorded = Some(Some(recorded));
            return Ok(SinkCommit::Skipped { recorded });
        }
        if let Some(moved) = self.moved_lane(lanes).await? {
            return Ok(moved);
        }
        let removes = match change {
            Change::Append => Vec::new(),
            Change::Replace { mut removes, read_version, within, .. } => {
                // Back to the snapshot the removes were chosen from (the txn check above read
                // the latest): the conflict check covers every commit since.
                if let Some(at_read) = at_read {
                    self.table = Some(at_read);
                }
                let table = self.table.as_mut().ok_or_else(|| Error::Internal("table vanished".into()))?;
                if let Some(read_version) = read_version
                    && table.version() != Some(read_version)
                {
                    table.load_version(read_version).await.map_err(Error::delta(&self.url, "load the version read"))?;
                }
                match &within {
                    Within::Anything => {}
                    Within::Span { span, rewrite } => rows = self.with_kept_rows(rows, span, rewrite, range).await?,
                    Within::Keys { columns, keys } => {
                        let (with_kept, rewritten) = self.replace_keys(rows, columns, keys, range).await?;
                        rows = with_kept;
                        removes.extend(rewritten);
                    }
                }
                removes
            }
        };
        let url = self.url.to_string();
        let commit_err = |source| Error::DeltaCommit {
            table: url.clone(),
            batch: id,
            range: range.to_string(),
            source: Box::new(source),
        };
        let operation = match predicate {
            None => self.operation(id),
            Some(predicate) => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: self.partition_columns().filter(|p| !p.is_empty()),
                predicate: Some(predicate),
            },
        };
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table vanished".into()))?;
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        let layout = Arc::new(FileLayout::of(snapshot, &url)?);
        let row_count = rows.height() as u64;
        let adds = files::write(table.object_store(), layout, rows).await?;
        let files = adds.len() as u64;
        pass(&self.hook, CrashPoint::AfterDataFiles, id);

        let now = Some(chrono::Utc::now().timestamp_millis());
        let txns: Vec<Transaction> =
            std::iter::once(Transaction::new_with_last_update(&self.app_id, id.txn_version(), now))
                .chain(lanes.iter().map(|lane| Transaction::new_with_last_update(&lane.app_id, lane.to, now)))
                .collect();
        let actions: Vec<Action> =
            adds.into_iter().map(Action::Add).chain(removes.into_iter().map(Action::Remove)).collect();
        let mut version = None;
        // A replace whose removes were chosen from the latest version the sink knows takes the
        // same put-if-absent path: if it lands, no commit came between, so none conflicts.
        // If it does not, the full protocol checks it against that same snapshot.
        let read_latest = !blind_append
            && self.known_version.is_some()
            && self.table.as_ref().and_then(DeltaTable::version) == self.known_version;
        if (blind_append || read_latest)
            && let Some(known) = self.known_version
        {
            version = self.append_after(known, &actions, &operation, &txns).await.map_err(commit_err)?;
            if version.is_none() && blind_append {
                // Another writer took the version: back to the log, and Delta's conflict check.
                tracing::info!(table = %self.url, %id, "the table moved on; refreshing before the commit");
                let written_for = self.layout()?;
                if let Some(recorded) = self.committed_version().await?
                    && recorded >= id.txn_version()
                {
                    tracing::warn!(%id, recorded, "batch committed by a concurrent writer of the same app id; skipped");
                    return Ok(SinkCommit::Skipped { recorded });
                }
                if let Some(moved) = self.moved_lane(lanes).await? {
                    return Ok(moved);
                }
                if self.layout()? != written_for {
                    // The files were written for the table as it was: committing them under a
                    // new schema, partitioning or protocol would be wrong (Spark fails the query
                    // the same way). The batch is replayed on restart against the new table.
                    return Err(Error::SchemaMismatch {
                        table: self.url.to_string(),
                        problem: format!(
                            "another writer changed the table's schema, partitioning or protocol while batch {id} was being written; restart the query to write it against the new table"
                        ),
                    });
                }
            }
        }
        let version = match version {
            Some(version) => version,
            None => {
                let (mut rebased, written_for) = (0, self.layout()?);
                loop {
                    match self.commit_checked(actions.clone(), operation.clone(), &txns).await {
                        Ok(version) => break version,
                        Err(source) => {
                            // Another writer may have committed this batch (a zombie of ours):
                            // re-check (this also refreshes the table to its latest version).
                            if let Some(recorded) = self.committed_version().await?
                                && recorded >= id.txn_version()
                            {
                                tracing::warn!(%id, recorded, "commit lost to a concurrent writer of the same batch; skipped");
                                return Ok(SinkCommit::Skipped { recorded });
                            }
                            // A writer of the same lanes won (Delta's checker saw their txns).
                            if let Some(moved) = self.moved_lane(lanes).await? {
                                return Ok(moved);
                            }
                            // A blind append read nothing, so a conflict with a commit that
                            // removed files (a backfill chunk, a repair beside the stream) is
                            // not one: commit again on the latest version, as Spark does. Without
                            // delta-rs' datafusion feature its checker counts every file as read.
                            if blind_append
                                && rebased < REBASES
                                && self.layout()? == written_for
                                && matches!(
                                    source,
                                    DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) }
                                )
                            {
                                rebased += 1;
                                tracing::info!(table = %self.url, %id, "a concurrent commit removed files; committing the append again on the latest version: {source}");
                                continue;
                            }
                            return Err(commit_err(source));
                        }
                    }
                }
            }
        };
        (self.recorded, self.known_version) = (Some(Some(id.txn_version())), Some(version));
        self.lanes.extend(lanes.iter().map(|lane| (lane.app_id.clone(), lane.to)));
        pass(&self.hook, CrashPoint::AfterDeltaCommit, id);
        Ok(SinkCommit::Committed { version, rows: row_count, files })
    }

    /// What the data files are written for: the schema, partition columns and protocol of the
    /// sink's snapshot.
    fn layout(&self) -> Result<(StructType, Vec<String>, deltalake::kernel::Protocol)> {
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table not open".into()))?;
        let snapshot = table.snapshot().map_err(Error::delta(&self.url, "snapshot"))?;
        let schema = snapshot.schema().as_ref().clone();
        Ok((schema, snapshot.metadata().partition_columns().to_vec(), snapshot.protocol().clone()))
    }

    /// A blind append written as version `known + 1`, where `known` is the latest version this
    /// sink has seen (every commit up to it is known: its own, or in its snapshot). If the put
    /// succeeds, no other writer committed in between, so there is nothing to conflict with and
    /// the snapshot need not be brought up to date (delta-rs would re-materialize every file of
    /// the table after each commit, a cost that grows with the table). `None`: another writer took
    /// the version.
    async fn append_after(
        &mut self,
        known: u64,
        actions: &[Action],
        operation: &DeltaOperation,
        txns: &[Transaction],
    ) -> std::result::Result<Option<u64>, DeltaTableError> {
        let Some(table) = self.table.as_ref() else {
            return Err(DeltaTableError::Generic("table not open".into()));
        };
        let snapshot = table.snapshot()?;
        // No post-commit hook runs on this path: the properties are the txn alone.
        let prepared = CommitBuilder::from(CommitProperties::default().with_application_transactions(txns.to_vec()))
            .with_actions(actions.to_vec())
            .build(Some(snapshot), table.log_store(), operation.clone())
            .into_prepared_commit_future()
            .await?;
        let entry = prepared.commit_or_bytes().clone();
        drop(prepared);
        let version = known + 1;
        let (log_store, operation_id) = (table.log_store(), uuid::Uuid::new_v4());
        if !matches!(entry, CommitOrBytes::LogBytes(_)) {
            // A log store that commits by renaming a temporary file has no put-if-absent of the
            // entry itself: use the full protocol.
            log_store.abort_commit_entry(version, entry, operation_id).await?;
            return Ok(None);
        }
        match log_store.write_commit_entry(version, entry, operation_id).await {
            Ok(()) => {}
            Err(TransactionError::VersionAlreadyExists(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if checkpoint_due(snapshot, version) {
            self.checkpoint_in_background(version).await;
        }
        Ok(Some(version))
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
            config.enable_expired_log_cleanup().then(|| chrono::Utc::now().timestamp_millis() - retention)
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

    /// A commit through delta-rs's full protocol: conflict checks against commits since the
    /// snapshot, retries, the post-commit hook (checkpoint, log cleanup) and a refreshed snapshot.
    async fn commit_checked(
        &mut self,
        actions: Vec<Action>,
        operation: DeltaOperation,
        txns: &[Transaction],
    ) -> std::result::Result<u64, DeltaTableError> {
        let Some(table) = self.table.as_mut() else {
            return Err(DeltaTableError::Generic("table not open".into()));
        };
        let snapshot = table.snapshot()?;
        let done = CommitBuilder::from(checked_properties(snapshot, txns))
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await?;
        table.state = Some(done.snapshot());
        Ok(done.version())
    }
}
