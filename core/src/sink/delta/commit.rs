//! The commit protocol: how one batch's rows become one Delta commit that carries the txn
//! `(app id, batch id)` and its lanes' txns.
//!
//! [`DeltaSink::commit`] runs these steps; `try_write_commit` reads them top-down:
//! 1. The txn check: the batch is `Skipped` when the table records it (or a later one) for the
//!    app id, `Superseded` when another writer moved one of its lanes; the first commit creates
//!    the table.
//! 2. The rows and removes: an append's rows; a replace's, completed on its read version
//!    (`replace.rs`).
//! 3. The data files, written for the sink's snapshot (crash point `AfterDataFiles`).
//! 4. The commit: the fast path, else delta-rs's checked protocol with the rebase.
//! 5. What the sink now knows without reading the log (crash point `AfterDeltaCommit`).
//!
//! # The fast path
//! A blind append, and a replace whose removes were chosen from the latest version the sink
//! knows, is written straight as the version after that one (`append_after`). The log entry is
//! put-if-absent, so it lands only if no other writer committed in between: there is then
//! nothing to conflict with, and neither the txn nor the snapshot needs re-reading.
//!
//! # The rebase
//! If another writer took the version, a blind append refreshes the table and re-checks its txn
//! (a zombie of the same query may have committed this very batch: the commit is lost, and the
//! batch `Skipped`) and its lanes, then commits through delta-rs's full protocol
//! (`commit_checked`: conflict checks against every commit since its snapshot, up to
//! `VERSION_RETRIES` versions tried). A blind append read nothing, so a `CommitConflict` with a
//! commit that removed files (a backfill chunk, a repair beside the stream) is not a real one:
//! the append is committed again on the latest version, up to `REBASES` times, as Spark does.
//!
//! # When a conflict is an error
//! A failed commit is first re-checked against the log: lost to the same app id's same batch,
//! it is `Skipped`; a lane moved by another writer, `Superseded`; neither is an error. Otherwise
//! it is a [`Error::DeltaCommit`] (retryable: the batch is idempotent) when
//! - the commit replaces: it was built on its read version, and a commit since then touched what
//!   it read; it is never rebased (the caller replans it on the table as it is now);
//! - a blind append's conflict is not a `CommitConflict`, or its rebases ran out;
//!
//! and a [`Error::SchemaMismatch`] when the table's schema, partitioning or protocol changed
//! after the data files were written for it (Spark fails the query the same way).
//!
//! # What delta-rs' conflict checker does and does not see
//! Built without delta-rs' `datafusion` feature, its checker counts every file of the commit's
//! snapshot as read and evaluates no predicate. It sees a commit since the snapshot that records
//! a txn for one of this commit's app ids (`ConcurrentTransaction`: the batch's, or a lane's),
//! changes the metadata or the protocol, or removes with `dataChange = true` a file of the
//! snapshot (`ConcurrentDeleteRead`) or one this commit removes (`ConcurrentDeleteDelete`). It does
//! not see files added since (appends never conflict: rows appended into a replaced span or key
//! after the read stay beside the replacement), and it skips removes with `dataChange = false`:
//! a compaction by another engine (`OPTIMIZE`) that rewrote the files a replacing commit removes
//! goes unseen, the replace lands, and every row it replaced is then in the table twice
//! (notes/delta-rs-and-spark-semantics.md, section 9). This module does not guard against that
//! yet: a later issue adds Tidewater's own check here (each file a replace removes still live at
//! the version it lands on, and no file added since in its span or keys).
//!
//! # Invariant
//! For an app id, a batch lands in at most one commit, whose one log entry holds its data files,
//! its removes, its txn and its lanes' txns. `Committed` names the version that holds them;
//! `Skipped` and `Superseded` put nothing in the log (data files already written stay
//! unreferenced); after any error the sink forgets what it knew and reads the log again.

use super::{Change, DeltaSink, checkpoint_due};
use crate::batch::{Lane, SinkOutcome};
use crate::bridge::arrow_schema;
use crate::crash::{CrashPoint, pass};
use crate::error::{Error, Result};
use crate::id::BatchId;
use crate::sink::files::{self, FileLayout};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake::logstore::CommitOrBytes;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt as _;
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableError};
use polars::prelude::DataFrame;
use std::sync::Arc;

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

/// Times a blind append is committed again after a conflict with a commit that removed files.
const REBASES: u32 = 10;

/// A commit whose data files are written: what it adds and removes, how the history records
/// it, and the txns it carries. Every attempt to land it commits these same actions.
struct Prepared<'a> {
    id: BatchId,
    range: &'a str,
    lanes: &'a [Lane],
    /// The change is an append: it read nothing of the table, so it may be rebased.
    blind_append: bool,
    actions: Vec<Action>,
    operation: DeltaOperation,
    txns: Vec<Transaction>,
    rows: u64,
    files: u64,
}

impl Prepared<'_> {
    fn error(&self, table: &url::Url, source: DeltaTableError) -> Error {
        Error::DeltaCommit {
            table: table.to_string(),
            batch: self.id,
            range: self.range.to_string(),
            source: Box::new(source),
        }
    }
}

/// How an attempt to land a commit ended, when it did not fail.
enum Landing {
    /// Committed as this table version.
    Landed(u64),
    /// Not committed, rightly: another writer committed the batch (`Skipped`) or moved one of
    /// its lanes (`Superseded`).
    Settled(SinkOutcome),
}

impl DeltaSink {
    /// Commits `rows` with the txn (app id, `id`) and `change`, in one commit; skipped, like a
    /// batch, when the table already records `id` for the app id. A replacing commit is recorded
    /// as an overwrite with its predicate. `lanes` are recorded in the same commit, which is
    /// [`SinkOutcome::Superseded`] (nothing written) if another writer moved one of them.
    pub async fn commit(
        &mut self,
        id: BatchId,
        rows: DataFrame,
        range: &str,
        change: Change,
        lanes: &[Lane],
    ) -> Result<SinkOutcome> {
        let result = self.try_write_commit(id, rows, range, change, lanes).await;
        if result.is_err() {
            // Whatever failed, the next attempt starts from the log.
            (self.recorded, self.known_version) = (None, None);
        }
        result
    }

    /// The protocol of the module doc, one step a line.
    async fn try_write_commit(
        &mut self,
        id: BatchId,
        rows: DataFrame,
        range: &str,
        change: Change,
        lanes: &[Lane],
    ) -> Result<SinkOutcome> {
        let (blind_append, predicate) = (matches!(change, Change::Append), change.predicate());
        let at_read = self.read_snapshot(&change); // before the txn check moves the table on
        if let Some(settled) = self.txn_check(id, &rows, blind_append, lanes).await? {
            return Ok(settled); // 1. skipped or superseded: nothing written
        }
        let (rows, removes) = self.rows_and_removes(rows, change, at_read, range).await?; // 2.
        let operation = self.operation_for(id, predicate);
        let row_count = rows.height() as u64;
        let adds = self.write_data_files(rows).await?; // 3.
        pass(&self.hook, CrashPoint::AfterDataFiles, id);
        let files = adds.len() as u64;
        let (actions, txns) = self.actions(id, adds, removes, lanes);
        let prepared = Prepared { id, range, lanes, blind_append, actions, operation, txns, rows: row_count, files };
        let landing = match self.land_fast(&prepared).await? {
            Some(landing) => landing, // 4. landed, or lost for good
            None => self.land_checked(&prepared).await?,
        };
        let version = match landing {
            Landing::Landed(version) => version,
            Landing::Settled(outcome) => return Ok(outcome),
        };
        (self.recorded, self.known_version) = (Some(Some(id.txn_version())), Some(version)); // 5.
        self.lanes.extend(lanes.iter().map(|lane| (lane.app_id.clone(), lane.to)));
        pass(&self.hook, CrashPoint::AfterDeltaCommit, id);
        Ok(SinkOutcome::Committed { version, rows: prepared.rows, files: prepared.files })
    }

    /// Step 1, the txn check: `Skipped` when the table records batch `id` (or a later one) for
    /// the app id, `Superseded` when another writer moved one of `lanes`; `None`: write it.
    /// Creates the table from `rows`' schema when it does not exist yet. A blind append trusts
    /// what the sink knows from its own last commit; a replace reads the log, to be checked
    /// against the table as it is now.
    async fn txn_check(
        &mut self,
        id: BatchId,
        rows: &DataFrame,
        blind_append: bool,
        lanes: &[Lane],
    ) -> Result<Option<SinkOutcome>> {
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
            let schema = arrow_schema(rows)?;
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
            return Ok(Some(SinkOutcome::Skipped { recorded }));
        }
        self.moved_lane(lanes).await
    }

    /// How the commit is recorded in the table's history: a replace as an overwrite with its
    /// predicate.
    fn operation_for(&self, id: BatchId, predicate: Option<String>) -> DeltaOperation {
        match predicate {
            None => self.operation(id),
            Some(predicate) => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: self.partition_columns().filter(|p| !p.is_empty()),
                predicate: Some(predicate),
            },
        }
    }

    /// Step 3: `rows` written as data files for the sink's snapshot (its schema, partitioning
    /// and protocol), not yet referenced by the log.
    async fn write_data_files(&self, rows: DataFrame) -> Result<Vec<Add>> {
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table vanished".into()))?;
        let snapshot = table.snapshot().map_err(Error::delta(&self.url, "snapshot"))?;
        let layout = Arc::new(FileLayout::of(snapshot, self.url.as_str())?);
        files::write(table.object_store(), layout, rows, self.clock.now_ms()).await
    }

    /// The commit's actions (the adds, then the removes) and txns (the app id's for batch `id`,
    /// then each lane's).
    fn actions(
        &self,
        id: BatchId,
        adds: Vec<Add>,
        removes: Vec<Remove>,
        lanes: &[Lane],
    ) -> (Vec<Action>, Vec<Transaction>) {
        let now = Some(self.clock.now_ms());
        let txns = std::iter::once(Transaction::new_with_last_update(&self.app_id, id.txn_version(), now))
            .chain(lanes.iter().map(|lane| Transaction::new_with_last_update(&lane.app_id, lane.to, now)))
            .collect();
        let actions = adds.into_iter().map(Action::Add).chain(removes.into_iter().map(Action::Remove)).collect();
        (actions, txns)
    }

    /// Step 4, the fast path (module doc): `None` when it does not apply or missed, and the
    /// checked protocol is next. A blind append that missed has refreshed and re-checked its txn
    /// and lanes; a replace that missed is checked against the snapshot it was built on.
    async fn land_fast(&mut self, commit: &Prepared<'_>) -> Result<Option<Landing>> {
        // A replace whose removes were chosen from the latest version the sink knows takes the
        // same put-if-absent path: if it lands, no commit came between, so none conflicts.
        let read_latest = !commit.blind_append
            && self.known_version.is_some()
            && self.table.as_ref().and_then(DeltaTable::version) == self.known_version;
        let Some(known) = self.known_version.filter(|_| commit.blind_append || read_latest) else {
            return Ok(None);
        };
        let landed = self
            .append_after(known, &commit.actions, &commit.operation, &commit.txns)
            .await
            .map_err(|source| commit.error(&self.url, source))?;
        if let Some(version) = landed {
            return Ok(Some(Landing::Landed(version)));
        }
        if !commit.blind_append {
            return Ok(None);
        }
        // Another writer took the version: back to the log, and Delta's conflict check.
        tracing::info!(table = %self.url, id = %commit.id, "the table moved on; refreshing before the commit");
        let written_for = self.layout()?;
        if let Some(settled) =
            self.lost_to_another(commit, "batch committed by a concurrent writer of the same app id").await?
        {
            return Ok(Some(Landing::Settled(settled)));
        }
        if self.layout()? != written_for {
            // The files were written for the table as it was: committing them under a new
            // schema, partitioning or protocol would be wrong (Spark fails the query the same
            // way). The batch is replayed on restart against the new table.
            return Err(Error::SchemaMismatch {
                table: self.url.to_string(),
                problem: format!(
                    "another writer changed the table's schema, partitioning or protocol while batch {} was being written; restart the query to write it against the new table",
                    commit.id
                ),
            });
        }
        Ok(None)
    }

    /// Step 4, the checked protocol with the rebase (module doc): each failure is re-checked
    /// against the log before it is an error.
    async fn land_checked(&mut self, commit: &Prepared<'_>) -> Result<Landing> {
        let (mut rebased, written_for) = (0, self.layout()?);
        loop {
            let source = match self.commit_checked(commit.actions.clone(), commit.operation.clone(), &commit.txns).await
            {
                Ok(version) => return Ok(Landing::Landed(version)),
                Err(source) => source,
            };
            if let Some(settled) =
                self.lost_to_another(commit, "commit lost to a concurrent writer of the same batch").await?
            {
                return Ok(Landing::Settled(settled));
            }
            // A blind append read nothing, so a conflict with a commit that removed files (a
            // backfill chunk, a repair beside the stream) is not one: commit again on the latest
            // version, as Spark does. Without delta-rs' datafusion feature its checker counts
            // every file as read.
            if commit.blind_append
                && rebased < REBASES
                && self.layout()? == written_for
                && matches!(source, DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) })
            {
                rebased += 1;
                tracing::info!(table = %self.url, id = %commit.id, "a concurrent commit removed files; committing the append again on the latest version: {source}");
                continue;
            }
            return Err(commit.error(&self.url, source));
        }
    }

    /// A lost commit: whether another writer committed this batch for the app id (a zombie of
    /// the same query: `Skipped`; this also refreshes the table to its latest version) or moved
    /// one of its lanes (`Superseded`: Delta's checker saw their txns). `why` is logged.
    async fn lost_to_another(&mut self, commit: &Prepared<'_>, why: &str) -> Result<Option<SinkOutcome>> {
        if let Some(recorded) = self.committed_version().await?
            && recorded >= commit.id.txn_version()
        {
            tracing::warn!(id = %commit.id, recorded, "{why}; skipped");
            return Ok(Some(SinkOutcome::Skipped { recorded }));
        }
        self.moved_lane(commit.lanes).await
    }

    /// The first of `lanes` that another writer moved: the table (at the latest version the sink
    /// knows, with its own commits since its snapshot) records neither nothing nor the lane's
    /// `from` for it.
    async fn moved_lane(&mut self, lanes: &[Lane]) -> Result<Option<SinkOutcome>> {
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
                return Ok(Some(SinkOutcome::Superseded { lane: lane.origin.clone(), recorded, expected: lane.from }));
            }
        }
        Ok(None)
    }

    /// What the data files are written for: the schema, partition columns and protocol of the
    /// sink's snapshot.
    fn layout(&self) -> Result<(StructType, Vec<String>, deltalake::kernel::Protocol)> {
        let table = self.table.as_ref().ok_or_else(|| Error::Internal("table not open".into()))?;
        let snapshot = table.snapshot().map_err(Error::delta(&self.url, "snapshot"))?;
        let schema = snapshot.schema().as_ref().clone();
        Ok((schema, snapshot.metadata().partition_columns().to_vec(), snapshot.protocol().clone()))
    }

    /// The commit (a blind append, or a replace built on version `known`) written as version
    /// `known + 1`, where `known` is the latest version this sink has seen (every commit up to it
    /// is known: its own, or in its snapshot). If the put succeeds, no other writer committed in
    /// between, so there is nothing to conflict with and the snapshot need not be brought up to
    /// date (delta-rs would re-materialize every file of the table after each commit, a cost
    /// that grows with the table). `None`: another writer took the version.
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
