//! The idempotent Delta sink: one batch, one Delta commit, carrying `txn {appId, version = batch}`.
//!
//! # Invariant
//! For an app id, a batch id lands in at most one commit. Before writing, the sink reads the
//! table's recorded txn version for its app id and skips any batch at or below it (Spark's
//! `DeltaSink.addBatch` rule). The data files and the txn go into the same `_delta_log` entry, so
//! either both are visible or neither. A commit that fails because another writer recorded the
//! batch first (`ConcurrentTransaction`) is re-checked and reported as skipped.

use crate::bridge::{arrow_schema, to_record_batches};
use crate::contract::{Sink, SinkCommit};
use crate::crash::{CrashPoint, StepHook, pass};
use crate::error::{Error, Result};
use crate::id::BatchId;
use crate::reconcile::fingerprint;
use async_trait::async_trait;
use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, StructType, Transaction};
use deltalake::kernel::{Add, Remove};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder};
use polars::prelude::DataFrame;
use std::collections::BTreeMap;
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
    hook: Option<StepHook>,
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
            hook: None,
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
        if table.version().is_some() {
            table.update_state().await.map_err(delta("refresh"))?;
        } else if table.log_store().is_delta_table_location().await.map_err(delta("look for _delta_log"))? {
            table.load().await.map_err(delta("load"))?;
        } else {
            return Ok(None);
        }
        Ok(Some(table))
    }

    /// The txn version the table records for this sink's app id (`None`: nothing committed yet).
    pub async fn committed_version(&mut self) -> Result<Option<i64>> {
        let app_id = self.app_id.clone();
        let url = self.url.to_string();
        let Some(table) = self.refreshed().await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
        snapshot.transaction_version(table.log_store().as_ref(), &app_id).await.map_err(Error::delta(&url, "read txn"))
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

impl DeltaSink {
    /// Starts computing the batch's per-partition fingerprints on the blocking pool, concurrently
    /// with the Parquet write; `None` when a partition column's type cannot be matched to Delta's
    /// rendering of partition values (the files are then written untagged).
    fn start_fingerprints(&self, rows: &DataFrame) -> Option<tokio::task::JoinHandle<Result<Fingerprints>>> {
        let partition_by: Vec<String> = self.table.as_ref()?.snapshot().ok()?.metadata().partition_columns().to_vec();
        let supported = partition_by
            .iter()
            .all(|p| rows.schema().get(p.as_str()).is_some_and(fingerprint::partition_type_supported));
        if !supported {
            return None;
        }
        let rows = rows.clone();
        Some(tokio::task::spawn_blocking(move || fingerprint::partition_fingerprints(&rows, &partition_by)))
    }
}

type Fingerprints = BTreeMap<fingerprint::PartitionValues, fingerprint::Fingerprint>;

/// Records each data file's fingerprint in its `add.tags`, where the file is its partition's only
/// one in this commit (so the partition's fingerprint is the file's).
fn tag_fingerprints(adds: &mut [Add], fingerprints: std::result::Result<Result<Fingerprints>, tokio::task::JoinError>) {
    let fingerprints = match fingerprints {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return tracing::warn!("files written without fingerprints: {e}"),
        Err(e) => return tracing::warn!("files written without fingerprints: {e}"),
    };
    let key = |add: &Add| -> fingerprint::PartitionValues {
        add.partition_values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut per_partition: BTreeMap<fingerprint::PartitionValues, usize> = BTreeMap::new();
    for add in adds.iter() {
        *per_partition.entry(key(add)).or_default() += 1;
    }
    for add in adds.iter_mut() {
        let k = key(add);
        if per_partition.get(&k) == Some(&1)
            && let Some(fp) = fingerprints.get(&k)
        {
            add.tags.get_or_insert_with(Default::default).extend(fp.to_tags());
        }
    }
}

#[async_trait]
impl Sink for DeltaSink {
    async fn add_batch(&mut self, id: BatchId, rows: DataFrame, range: &str) -> Result<SinkCommit> {
        self.write_commit(id, rows, range, Vec::new(), None).await
    }
}

impl DeltaSink {
    /// Replaces rows in one commit: removes `files` and adds `rows`, with the txn (app id, `id`),
    /// recorded as an overwrite with `predicate` (a repair). Skipped, like a batch, when the table
    /// already records `id` for the app id.
    pub async fn replace(
        &mut self,
        id: BatchId,
        rows: DataFrame,
        files: Vec<Remove>,
        predicate: String,
    ) -> Result<SinkCommit> {
        let what = format!("replace where {predicate}");
        self.write_commit(id, rows, &what, files, Some(predicate)).await
    }

    async fn write_commit(
        &mut self,
        id: BatchId,
        mut rows: DataFrame,
        range: &str,
        removes: Vec<Remove>,
        predicate: Option<String>,
    ) -> Result<SinkCommit> {
        if let Some(recorded) = self.committed_version().await?
            && recorded >= id.txn_version()
        {
            tracing::info!(table = %self.url, %id, recorded, "already committed; skipped");
            return Ok(SinkCommit::Skipped { recorded });
        }
        if self.table.as_ref().and_then(DeltaTable::version).is_none() {
            let schema = arrow_schema(&rows)?;
            self.create(&schema).await?;
        }
        let fingerprints = self.start_fingerprints(&rows);
        let batches = to_record_batches(&mut rows)?;
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
        let table = self.table.as_mut().ok_or_else(|| Error::Internal("table vanished".into()))?;

        let mut writer = RecordBatchWriter::for_table(table).map_err(commit_err)?;
        let mut row_count = 0u64;
        for batch in batches {
            row_count += batch.num_rows() as u64;
            if batch.num_rows() > 0 {
                writer.write(batch).await.map_err(|source| match source {
                    deltalake::DeltaTableError::SchemaMismatch { msg } => {
                        Error::SchemaMismatch { table: url.clone(), problem: msg }
                    }
                    source => commit_err(source),
                })?;
            }
        }
        let mut adds = writer.flush().await.map_err(commit_err)?;
        if let Some(fingerprints) = fingerprints {
            tag_fingerprints(&mut adds, fingerprints.await);
        }
        let files = adds.len() as u64;
        pass(&self.hook, CrashPoint::AfterDataFiles, id);

        let txn = Transaction::new_with_last_update(
            &self.app_id,
            id.txn_version(),
            Some(chrono::Utc::now().timestamp_millis()),
        );
        let snapshot = table.snapshot().map_err(commit_err)?;
        let committed = CommitBuilder::from(CommitProperties::default().with_application_transaction(txn))
            .with_actions(adds.into_iter().map(Action::Add).chain(removes.into_iter().map(Action::Remove)).collect())
            .build(Some(snapshot), table.log_store(), operation)
            .await;
        match committed {
            Ok(done) => {
                let version = done.version();
                table.state = Some(done.snapshot());
                pass(&self.hook, CrashPoint::AfterDeltaCommit, id);
                Ok(SinkCommit::Committed { version, rows: row_count, files })
            }
            Err(source) => {
                // Another writer may have committed this batch (a zombie of ours): re-check.
                if let Some(recorded) = self.committed_version().await?
                    && recorded >= id.txn_version()
                {
                    tracing::warn!(%id, recorded, "commit lost to a concurrent writer of the same batch; skipped");
                    return Ok(SinkCommit::Skipped { recorded });
                }
                Err(commit_err(source))
            }
        }
    }
}
