//! A Delta table as a stream, as Spark's Delta source reads one: first the snapshot at the start
//! (or from a chosen version), then every new commit's data files, in commit order.
//!
//! # Offsets
//! An offset is the position of the next data file to read: `{"version": v, "index": i}` in the
//! data files commit `v` added, or `{"version": v, "index": i, "snapshot": true}` in the files of
//! the snapshot at version `v` (path order). After the snapshot at `v` comes commit `v + 1`. A
//! range names exactly the same files however often it is read:
//! - a commit's files are the `add` actions of `_delta_log/<v>.json` with `dataChange = true`, in
//!   the order the log lists them; the log entry is read directly, one GET per commit, so the cost
//!   of a batch does not grow with the length of the log;
//! - the starting snapshot's file list is recorded once in the source's directory of the
//!   checkpoint (`sources/0/snapshot-<v>.json`), and where the stream starts in `start.json`.
//!
//! # What a commit may do
//! - Rearranging data (OPTIMIZE, Z-order: every action `dataChange = false`) adds no file to the
//!   stream, so compaction never duplicates rows.
//! - Removing data (DELETE, UPDATE, MERGE, overwrite: a `remove` with `dataChange = true`) stops
//!   the stream with an error naming the version, unless `skip_change_commits` (the whole commit
//!   is skipped) or `ignore_deletes` (a commit that only removes files, as a partition delete, is
//!   skipped; one that also adds files still stops the stream).
//! - A commit whose log entry was cleaned up (log retention after a checkpoint) or whose data
//!   files were vacuumed is a data-loss error, never a silent skip.
//! - A schema change stops the stream; restarted, it reads with the new schema.

use super::{COLUMN_MAPPING, Cut, DataFile, FileReader, TableVersion, column_mapping, deletion_vectors, open_at};
use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::kernel::StructType;
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::{BoundedSource, Error, Offset, OffsetRange, Result, Source, SourceBatch};

/// Where a Delta stream starts when its checkpoint has no offsets yet (Spark's `startingVersion`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartingVersion {
    /// Every row of the table's snapshot at start, then each new commit.
    #[default]
    Snapshot,
    /// The changes of this commit and every later one (not the snapshot before it).
    Version(u64),
    /// Only commits made after the stream starts.
    Latest,
}

/// How a Delta table is streamed.
#[derive(Clone, Debug)]
pub struct DeltaStreamOptions {
    /// At most this many data files per batch (Spark's default, 1000).
    pub max_files_per_trigger: usize,
    /// At most about this many bytes of data files per batch (a soft limit: a batch has at least
    /// one file).
    pub max_bytes_per_trigger: Option<u64>,
    pub starting_version: StartingVersion,
    /// Skip commits that remove data (DELETE, UPDATE, MERGE, overwrite) instead of stopping.
    pub skip_change_commits: bool,
    /// Skip commits that only remove data files (partition deletes) instead of stopping.
    pub ignore_deletes: bool,
}

impl Default for DeltaStreamOptions {
    fn default() -> Self {
        DeltaStreamOptions {
            max_files_per_trigger: 1000,
            max_bytes_per_trigger: None,
            starting_version: StartingVersion::default(),
            skip_change_commits: false,
            ignore_deletes: false,
        }
    }
}

/// The position of the next data file to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Position {
    version: u64,
    index: usize,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    snapshot: bool,
}

impl Position {
    fn after(version: u64) -> Self {
        Position { version: version + 1, index: 0, snapshot: false }
    }

    fn offset(self) -> Result<Offset> {
        serde_json::to_value(self).map(Offset::new).map_err(|e| Error::Internal(format!("delta offset: {e}")))
    }
}

/// `start.json`: where the stream started, decided once.
#[derive(Serialize, Deserialize)]
struct Start {
    version: u64,
    snapshot: bool,
}

/// Commits whose file lists are kept in memory; a batch rarely spans more.
const CACHED_VERSIONS: usize = 256;

/// One `_delta_log/<v>.json` line, with only what the stream looks at.
#[derive(Deserialize)]
struct LogLine {
    add: Option<LogAdd>,
    remove: Option<LogRemove>,
    #[serde(rename = "metaData")]
    metadata: Option<LogMetadata>,
    #[serde(rename = "commitInfo")]
    commit_info: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogAdd {
    path: String,
    #[serde(default)]
    partition_values: HashMap<String, Option<String>>,
    #[serde(default)]
    size: u64,
    #[serde(default = "yes")]
    data_change: bool,
    #[serde(default)]
    deletion_vector: Option<serde_json::Value>,
    #[serde(default)]
    stats: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogRemove {
    path: String,
    #[serde(default = "yes")]
    data_change: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogMetadata {
    schema_string: String,
    #[serde(default)]
    configuration: HashMap<String, Option<String>>,
}

fn yes() -> bool {
    true
}

/// The data files commits `from..=to` of `table` added, in commit order, with each one's
/// (commit, index among the commit's data files) and the rows its statistics record; those
/// removed by a data change in a commit up to `latest` (DELETE, UPDATE, MERGE: their rows are
/// gone from the table) are left out, those only rearranged (OPTIMIZE) are kept. A log entry
/// cleaned up is a data-loss error.
pub(super) async fn commit_range(
    table: &DeltaTable,
    describe: &str,
    from: u64,
    to: u64,
    latest: u64,
) -> Result<(Vec<DataFile>, Vec<(u64, usize)>, Vec<u64>)> {
    let store = table.log_store().object_store(None);
    let err = |problem: String| Error::Source { source_name: describe.to_string(), problem };
    let (mut added, mut removed) = (Vec::new(), HashSet::new());
    for version in from..=latest {
        let Some(bytes) = deltalake::logstore::read_commit_entry(store.as_ref(), version)
            .await
            .map_err(Error::delta(table.table_url(), "read a commit"))?
        else {
            return Err(Error::DataLoss {
                source_name: describe.to_string(),
                problem: format!(
                    "the log entry of version {version} is gone (log retention), so the files it added are not known"
                ),
            });
        };
        let text =
            std::str::from_utf8(&bytes).map_err(|e| err(format!("version {version}: log entry is not UTF-8: {e}")))?;
        let mut index = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: LogLine =
                serde_json::from_str(line).map_err(|e| err(format!("version {version}: unreadable log entry: {e}")))?;
            if let Some(add) = line.add.filter(|a| a.data_change && version <= to) {
                if add.deletion_vector.is_some() {
                    return Err(err(format!("version {version}: {}", deletion_vectors(1))));
                }
                // Statistics are optional in Delta and the count is an estimate (a backfill's
                // plan): a file without readable ones counts no rows.
                let rows = add
                    .stats
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s.get("numRecords").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                let file = DataFile { path: add.path, partition_values: add.partition_values, size: add.size };
                added.push((file, (version, index), rows));
                index += 1;
            }
            if let Some(remove) = line.remove.filter(|r| r.data_change) {
                removed.insert(remove.path);
            }
        }
    }
    let kept: Vec<_> = added.into_iter().filter(|(f, _, _)| !removed.contains(&f.path)).collect();
    let mut files = Vec::with_capacity(kept.len());
    let mut positions = Vec::with_capacity(kept.len());
    let mut rows = Vec::with_capacity(kept.len());
    for (file, at, n) in kept {
        files.push(file);
        positions.push(at);
        rows.push(n);
    }
    Ok((files, positions, rows))
}

pub(crate) struct DeltaStream {
    table: DeltaTable,
    reader: FileReader,
    /// The schema the stream reads with (the table's at open).
    schema: StructType,
    describe: String,
    state: Checkpoint,
    options: DeltaStreamOptions,
    start: Option<Position>,
    files: BTreeMap<(u64, bool), Arc<Vec<DataFile>>>,
}

/// How far one call may go.
struct Limits {
    files: usize,
    bytes: Option<u64>,
}

impl DeltaStream {
    pub(crate) fn open(
        table: DeltaTable,
        describe: String,
        state: Checkpoint,
        options: DeltaStreamOptions,
    ) -> Result<Self> {
        let reader = FileReader::of(&table, &describe)?;
        let schema = table.snapshot().map_err(Error::delta(table.table_url(), "snapshot"))?.schema().as_ref().clone();
        Ok(DeltaStream { table, reader, schema, describe, state, options, start: None, files: BTreeMap::new() })
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe.clone(), problem: problem.to_string() }
    }

    fn position(&self, offset: &Offset) -> Result<Position> {
        serde_json::from_value(offset.value().clone()).map_err(|e| {
            self.err(format!(
                "offset {offset} is not a Delta source offset ({e}): was the checkpoint written by another source?"
            ))
        })
    }

    fn latest_loaded(&self) -> u64 {
        self.table.version().unwrap_or_default()
    }

    /// Where the stream starts: recorded in `start.json`, or decided now from `starting_version`
    /// and recorded before any offset is handed out.
    async fn start(&mut self) -> Result<Position> {
        if let Some(start) = self.start {
            return Ok(start);
        }
        let start = match self.state.get_json::<Start>("start.json").await? {
            Some(Start { version, snapshot }) => Position { version, index: 0, snapshot },
            None => {
                let latest = self.latest_loaded();
                let start = match self.options.starting_version {
                    StartingVersion::Snapshot => Position { version: latest, index: 0, snapshot: true },
                    StartingVersion::Latest => Position::after(latest),
                    StartingVersion::Version(v) if v > latest => {
                        return Err(Error::Unsupported(format!(
                            "{}: starting_version = {v}, but the table's latest version is {latest}; use a version up to {latest}, or \"latest\" for only new commits",
                            self.describe
                        )));
                    }
                    StartingVersion::Version(v) => Position { version: v, index: 0, snapshot: false },
                };
                let record = Start { version: start.version, snapshot: start.snapshot };
                self.state.create_json("start.json", &record).await?;
                tracing::info!(source = %self.describe, version = start.version, snapshot = start.snapshot, "Delta stream starts");
                start
            }
        };
        self.start = Some(start);
        Ok(start)
    }

    /// The data files at `at` (the snapshot's or a commit's), `None` when that commit is not
    /// written yet.
    async fn files_at(&mut self, at: Position) -> Result<Option<Arc<Vec<DataFile>>>> {
        let key = (at.version, at.snapshot);
        if let Some(files) = self.files.get(&key) {
            return Ok(Some(files.clone()));
        }
        let files = if at.snapshot {
            self.snapshot_files(at.version).await?
        } else {
            match self.commit_files(at.version).await? {
                Some(files) => files,
                None => return Ok(None),
            }
        };
        let files = Arc::new(files);
        if self.files.len() >= CACHED_VERSIONS {
            self.files.pop_first();
        }
        self.files.insert(key, files.clone());
        Ok(Some(files))
    }

    /// The snapshot's data files at `version`, in path order: recorded in the checkpoint the
    /// first time, so a replay reads the same files even after the log moved on.
    async fn snapshot_files(&self, version: u64) -> Result<Vec<DataFile>> {
        let name = format!("snapshot-{version}.json");
        if let Some(files) = self.state.get_json::<Vec<DataFile>>(&name).await? {
            return Ok(files);
        }
        let url = self.table.table_url().clone();
        let table = open_at(&url, TableVersion::Version(version), &self.describe).await?;
        let snapshot = super::DeltaSnapshotSource::new(table, self.describe.clone(), usize::MAX);
        let files: Vec<DataFile> = snapshot.files()?.into_iter().map(|(f, _)| f).collect();
        self.state.put_json(&name, &files).await?;
        tracing::info!(source = %self.describe, version, files = files.len(), "recorded the starting snapshot's files");
        Ok(files)
    }

    /// The data files commit `version` adds to the stream, `None` when it is not written yet.
    async fn commit_files(&self, version: u64) -> Result<Option<Vec<DataFile>>> {
        let store = self.table.log_store().object_store(None);
        let Some(bytes) = deltalake::logstore::read_commit_entry(store.as_ref(), version)
            .await
            .map_err(Error::delta(self.table.table_url(), "read a commit"))?
        else {
            return self.missing(version).await.map(|()| None);
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| self.err(format!("version {version}: log entry is not UTF-8: {e}")))?;
        let (mut adds, mut removes, mut operation) = (Vec::new(), 0usize, None);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: LogLine = serde_json::from_str(line)
                .map_err(|e| self.err(format!("version {version}: unreadable log entry: {e}")))?;
            if let Some(add) = line.add.filter(|a| a.data_change) {
                if add.deletion_vector.is_some() {
                    return Err(self.err(format!("version {version}: {}", deletion_vectors(1))));
                }
                adds.push(DataFile { path: add.path, partition_values: add.partition_values, size: add.size });
            }
            removes += usize::from(line.remove.is_some_and(|r| r.data_change));
            if let Some(metadata) = line.metadata {
                self.check_metadata(version, &metadata)?;
            }
            if let Some(info) = line.commit_info {
                operation = info.get("operation").and_then(|o| o.as_str()).map(String::from);
            }
        }
        if removes == 0 {
            return Ok(Some(adds));
        }
        let operation = operation.unwrap_or_else(|| "an unnamed operation".into());
        if self.options.skip_change_commits {
            tracing::info!(source = %self.describe, version, %operation, removed = removes, added = adds.len(), "skipping a commit that changes data (skip_change_commits)");
            return Ok(Some(Vec::new()));
        }
        if self.options.ignore_deletes && adds.is_empty() {
            tracing::info!(source = %self.describe, version, %operation, removed = removes, "skipping a commit that deletes data files (ignore_deletes)");
            return Ok(Some(Vec::new()));
        }
        let hint = if adds.is_empty() {
            "set `skip_change_commits = true` to skip commits that change or delete data, or `ignore_deletes = true` to skip commits that only delete files (such as a partition delete)"
        } else {
            "it rewrote rows, which a stream of appends cannot carry: set `skip_change_commits = true` to skip such commits (their new rows are not streamed)"
        };
        Err(self.err(format!(
            "version {version} ({operation}) removes {removes} data files and adds {}: the stream reads appended data only; {hint}, or restart from a new checkpoint with a later starting_version",
            adds.len()
        )))
    }

    /// A commit the log does not hold: not written yet, or cleaned up (log retention keeps only
    /// versions after a checkpoint; any checkpoint at or after `version` proves it was there).
    async fn missing(&self, version: u64) -> Result<()> {
        let store = self.table.log_store().object_store(None);
        let last = match store.get(&object_store::path::Path::from("_delta_log/_last_checkpoint")).await {
            Ok(got) => got.bytes().await.map(Some).map_err(|e| e.to_string()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        let last = last.and_then(|bytes| {
            bytes.map(|b| serde_json::from_slice::<serde_json::Value>(&b)).transpose().map_err(|e| e.to_string())
        });
        // A `_last_checkpoint` that cannot be read proves nothing: the version is taken as not
        // written yet (asked for again at the next batch), and the failure is logged.
        let last = last.unwrap_or_else(|e| {
            tracing::warn!(
                source = %self.describe,
                "_delta_log/_last_checkpoint is unreadable ({e}); version {version} is taken as not written yet"
            );
            None
        });
        let checkpoint = last.and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
        match checkpoint {
            Some(c) if c >= version => Err(Error::DataLoss {
                source_name: self.describe.clone(),
                problem: format!(
                    "the log entry of version {version} was removed (log retention; the table has a checkpoint at version {c}), so the rows it added cannot be streamed"
                ),
            }),
            _ => Ok(()),
        }
    }

    fn check_metadata(&self, version: u64, metadata: &LogMetadata) -> Result<()> {
        if let Some(problem) = column_mapping(metadata.configuration.get(COLUMN_MAPPING).cloned().flatten().as_deref())
        {
            return Err(self.err(format!("version {version}: {problem}")));
        }
        let schema: StructType = serde_json::from_str(&metadata.schema_string)
            .map_err(|e| self.err(format!("version {version}: unreadable schema: {e}")))?;
        if schema != self.schema {
            return Err(self.err(format!(
                "version {version} changes the table's schema; restart the job to read on with the new schema"
            )));
        }
        Ok(())
    }

    /// Walks from `from` over the data files, within `limits` and not past `until`, and returns
    /// where it stopped and the files passed.
    async fn walk(
        &mut self,
        from: Position,
        limits: Option<Limits>,
        until: Option<Position>,
    ) -> Result<(Position, Vec<DataFile>)> {
        let (mut at, mut taken, mut bytes) = (from, Vec::new(), 0u64);
        let full = |taken: &Vec<DataFile>, bytes: u64, next: u64| {
            limits.as_ref().is_some_and(|l| {
                !taken.is_empty() && (taken.len() >= l.files || l.bytes.is_some_and(|max| bytes + next > max))
            })
        };
        loop {
            if until.is_some_and(|u| at >= u) || full(&taken, bytes, 0) {
                return Ok((at, taken));
            }
            let Some(files) = self.files_at(at).await? else {
                return Ok((at, taken));
            };
            while let Some(file) = files.get(at.index) {
                if until.is_some_and(|u| at >= u) || full(&taken, bytes, file.size) {
                    return Ok((at, taken));
                }
                bytes += file.size;
                taken.push(file.clone());
                at.index += 1;
            }
            at = Position::after(at.version);
        }
    }
}

#[async_trait]
impl Source for DeltaStream {
    async fn latest_offset(&mut self, start: Option<&Offset>, until: Option<&Offset>) -> Result<Option<Offset>> {
        let from = match start {
            Some(offset) => self.position(offset)?,
            None => self.start().await?,
        };
        let until = until.map(|u| self.position(u)).transpose()?;
        let limits = Limits { files: self.options.max_files_per_trigger, bytes: self.options.max_bytes_per_trigger };
        let (end, files) = self.walk(from, Some(limits), until).await?;
        if files.is_empty() {
            // Commits that add nothing to the stream (compactions, skipped changes) are walked
            // over again with the next data, from the cache: no batch without rows.
            return Ok(start.cloned());
        }
        end.offset().map(Some)
    }

    async fn available_end(&mut self) -> Result<Option<Offset>> {
        let start = self.start().await?;
        let latest = self
            .table
            .get_latest_version()
            .await
            .map_err(Error::delta(self.table.table_url(), "find the latest version"))?;
        let end = Position::after(latest).max(start);
        if end == start {
            return Ok(None);
        }
        end.offset().map(Some)
    }

    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch> {
        let from = match &range.start {
            Some(offset) => self.position(offset)?,
            None => self.start().await?,
        };
        let to = self.position(&range.end)?;
        let (reached, files) = self.walk(from, None, Some(to)).await?;
        if reached < to {
            return Err(Error::DataLoss {
                source_name: self.describe.clone(),
                problem: format!(
                    "{range} was planned, but version {} is no longer in the table's log",
                    reached.version
                ),
            });
        }
        self.reader.read(&files).await
    }

    async fn acknowledge(&mut self, end: &Offset, _outcome: &tidewater_core::SinkOutcome) -> Result<()> {
        // Commits before the one being read are not needed again.
        let at = self.position(end)?;
        self.files.retain(|(version, _), _| *version >= at.version);
        Ok(())
    }

    fn lanes(&mut self) -> Option<&mut dyn tidewater_core::Lanes> {
        None
    }

    fn history(&mut self) -> Option<&mut dyn tidewater_core::History> {
        Some(self)
    }
}

#[async_trait]
impl tidewater_core::History for DeltaStream {
    async fn bounded_before(&mut self, end: Option<&Offset>) -> Result<Box<dyn BoundedSource>> {
        let at = match end {
            Some(offset) => self.position(offset)?,
            None => self.start().await?,
        };
        let url = self.table.table_url().clone();
        // The snapshot holding every file before `at`, and the files of it at or after `at`. A
        // commit the stream is inside of only adds files (one that removes stops the stream or
        // is skipped whole), so the snapshot after it less its untaken files is the table as the
        // stream has read it.
        let (version, beyond, cut) = match at {
            Position { snapshot: true, .. } => {
                let files = self.files_at(at).await?.unwrap_or_default();
                let beyond = files.get(at.index..).unwrap_or_default().iter().map(|f| f.path.clone()).collect();
                (at.version, beyond, Cut::InSnapshot { version: at.version })
            }
            Position { version, index: 0, .. } if version > 0 => {
                (version - 1, HashSet::new(), Cut::At { version, index: 0 })
            }
            Position { version, index, .. } => {
                let files = self.files_at(at).await?.ok_or_else(|| {
                    self.err(format!("version {version} was read by the stream but is not in the table's log"))
                })?;
                let beyond = files.get(index..).unwrap_or_default().iter().map(|f| f.path.clone()).collect();
                (version, beyond, Cut::At { version, index })
            }
        };
        let table = open_at(&url, TableVersion::Version(version), &self.describe).await?;
        tracing::info!(source = %self.describe, version, left_out = beyond.len(), "the stream's cut, as a snapshot");
        Ok(Box::new(super::DeltaSnapshotSource::new(table, self.describe.clone(), usize::MAX).cut_at(cut, beyond)))
    }
}
