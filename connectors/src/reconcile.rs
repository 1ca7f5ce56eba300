//! The consistency checker over Delta tables: [`Reconciler`] reads two snapshots and compares
//! them with [`tidewater_core::reconcile::diff`].
//!
//! ```no_run
//! # async fn check() -> tidewater_core::Result<()> {
//! use tidewater_connectors::Reconciler;
//! let report = Reconciler::new("/data/tables/events", "/data/tables/events_batch")
//!     .key(["event_id"])
//!     .tolerance(1e-9, 0.0)
//!     .run()
//!     .await?;
//! assert!(report.is_identical(), "{report}");
//! # Ok(()) }
//! ```

use crate::delta::{DataFile, DeltaSnapshotSource, TableVersion, open_snapshot};
use polars::prelude::Schema;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use tidewater_core::compute::blocking;
use tidewater_core::reconcile::fingerprint::{Fingerprint, PartitionValues};
use tidewater_core::reconcile::spill::{EXPANSION, Side, Spill, buckets_for, differing_buckets};
use tidewater_core::reconcile::{
    DiffOptions, Report, compared_columns, diff, differing_keys, filter_rows, partition_name, split_by_keys,
};
use tidewater_core::sink::{DeltaSink, WriteKind};
use tidewater_core::{BatchId, Error, Result};

/// Key-hash buckets of an in-memory comparison: only buckets whose fingerprints differ are joined.
const IN_MEMORY_BUCKETS: u32 = 256;

/// Memory the comparison aims to stay under unless told otherwise: 1 GiB.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// Compares two Delta tables.
#[derive(Clone, Debug)]
pub struct Reconciler {
    left: (String, TableVersion),
    right: (String, TableVersion),
    options: DiffOptions,
    filter: Option<String>,
    memory: u64,
    spill_dir: Option<PathBuf>,
    use_recorded_key: bool,
}

impl Reconciler {
    pub fn new(left: impl Into<String>, right: impl Into<String>) -> Self {
        Reconciler {
            left: (left.into(), TableVersion::Latest),
            right: (right.into(), TableVersion::Latest),
            options: DiffOptions::default(),
            filter: None,
            memory: DEFAULT_MEMORY,
            spill_dir: None,
            use_recorded_key: true,
        }
    }

    /// Reads the tables at these versions instead of their latest.
    pub fn at(mut self, left: TableVersion, right: TableVersion) -> Self {
        self.left.1 = left;
        self.right.1 = right;
        self
    }

    /// Key columns. Without one, the key recorded in LEFT's (else RIGHT's) table property
    /// `tidewater.key` (a job's `sink.key`); with neither, the tables are compared as multisets.
    pub fn key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.options.key = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Whether, without [`Reconciler::key`], the key recorded in the tables is used (default
    /// true); false compares them as multisets.
    pub fn use_recorded_key(mut self, yes: bool) -> Self {
        self.use_recorded_key = yes;
        self
    }

    /// Compare only these columns (and the key).
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.options.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    pub fn ignore<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.options.ignore = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Absolute and relative tolerance for floating-point values.
    pub fn tolerance(mut self, abs: f64, rel: f64) -> Self {
        self.options.abs_tolerance = abs;
        self.options.rel_tolerance = rel;
        self
    }

    /// Compare only rows matching this SQL condition.
    pub fn filter(mut self, condition: impl Into<String>) -> Self {
        self.filter = Some(condition.into());
        self
    }

    pub fn samples(mut self, n: usize) -> Self {
        self.options.samples = n;
        self
    }

    /// The memory the comparison aims to stay under, in bytes (default [`DEFAULT_MEMORY`]).
    /// When the data to compare would not fit, its rows are spilled to disk in key-hash buckets
    /// and compared one bucket at a time.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Where to spill (default: the system's temporary directory). The spill is deleted at the end.
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Compares the tables: schemas first; then, without column selection or a row filter,
    /// partitions whose fingerprints (recorded by the writer in the Delta log) agree on both
    /// sides are settled from the logs. The other partitions' files are read: in memory when they
    /// fit the memory limit, else spilled to disk by key-hash bucket, each bucket pair compared by
    /// fingerprint and joined row by row only when the fingerprints differ.
    pub async fn run(self) -> Result<Report> {
        let (left, right) =
            tokio::try_join!(open_snapshot(&self.left.0, self.left.1), open_snapshot(&self.right.0, self.right.1))?;
        let names = (format!("{}@{}", left.url(), left.version()), format!("{}@{}", right.url(), right.version()));
        let (left_by, right_by) = (left.partition_by()?, right.partition_by()?);
        let mut options = self.options.clone();
        if options.key.is_empty() && self.use_recorded_key {
            // The key the writer recorded (a job's sink.key): LEFT's, else RIGHT's.
            let (left_key, right_key) = (left.recorded_key()?, right.recorded_key()?);
            if !left_key.is_empty() && !right_key.is_empty() && left_key != right_key {
                tracing::warn!(left = %left_key.join(","), right = %right_key.join(","), "the tables record different keys (tidewater.key); comparing by LEFT's");
            }
            options.key = if left_key.is_empty() { right_key } else { left_key };
            if !options.key.is_empty() {
                tracing::info!(key = %options.key.join(","), "comparing by the key recorded in the table (tidewater.key)");
            }
        }
        options.partition_by = left_by.clone();
        options.partition_by.extend(right_by.iter().filter(|p| !left_by.contains(p)).cloned());
        let (left_schema, right_schema) = (left.polars_schema()?, right.polars_schema()?);
        let (l, r) = (left.empty_frame()?, right.empty_frame()?);
        let (n, o) = (names.clone(), options.clone());
        let schemas = blocking("reconcile", move || diff(l, r, (&n.0, &n.1), &o)).await?;
        if !schemas.schema.is_empty() {
            return Ok(schemas);
        }
        let by_fingerprint = options.columns.is_none()
            && options.ignore.is_empty()
            && self.filter.is_none()
            && left_by == right_by
            && left_schema == right_schema;
        let (left_files, right_files) = (left.files()?, right.files()?);
        let (mut matched, mut matched_rows) = (0u64, 0u64);
        let (mut left_read, mut right_read) = (Vec::new(), Vec::new());
        if by_fingerprint {
            let (left_parts, right_parts) = (partitions(left_files), partitions(right_files));
            let mut keys: Vec<&PartitionValues> = left_parts.keys().chain(right_parts.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let (l, r) = (left_parts.get(key), right_parts.get(key));
                match (l.and_then(|p| p.1), r.and_then(|p| p.1)) {
                    (Some(a), Some(b)) if a == b => {
                        matched += 1;
                        matched_rows += a.rows;
                    }
                    _ => {
                        left_read.extend(l.map(|p| p.0.clone()).unwrap_or_default());
                        right_read.extend(r.map(|p| p.0.clone()).unwrap_or_default());
                    }
                }
            }
        } else {
            left_read = left_files.into_iter().map(|(f, _)| f).collect();
            right_read = right_files.into_iter().map(|(f, _)| f).collect();
        }
        let bytes: u64 = left_read.iter().chain(&right_read).map(|f| f.size).sum();
        let buckets = buckets_for(bytes, self.memory);
        let sides = [(&left, left_read), (&right, right_read)];
        let mut report = if buckets <= 1 {
            self.compare_in_memory(sides, names, options).await?
        } else {
            self.compare_in_buckets(sides, buckets, (left_schema, right_schema), names, options).await?
        };
        report.partitions_matched_by_fingerprint = matched;
        report.left_rows += matched_rows;
        report.right_rows += matched_rows;
        Ok(report)
    }

    async fn compare_in_memory(
        &self,
        [(left, left_files), (right, right_files)]: [(&DeltaSnapshotSource, Vec<DataFile>); 2],
        names: (String, String),
        options: DiffOptions,
    ) -> Result<Report> {
        let (l, r) = tokio::try_join!(left.read_files(&left_files), right.read_files(&right_files))?;
        let filter = self.filter.clone();
        blocking("reconcile", move || {
            let (mut l, mut r) = (l.rows, r.rows);
            if let Some(condition) = &filter {
                l = filter_rows(l, condition)?;
                r = filter_rows(r, condition)?;
            }
            // Fingerprinted on read: rows hashed by key into buckets; only the buckets whose
            // fingerprints differ are joined.
            let (rows_l, rows_r) = (l.height() as u64, r.height() as u64);
            if rows_l + rows_r == 0 {
                return diff(l, r, (&names.0, &names.1), &options);
            }
            let columns = compared_columns(l.schema(), r.schema(), &options);
            let (l, r, equal) = differing_buckets(l, r, &bucket_key(&options, &columns), &columns, IN_MEMORY_BUCKETS)?;
            let mut report = diff(l, r, (&names.0, &names.1), &options)?;
            report.left_rows = rows_l;
            report.right_rows = rows_r;
            report.rows_read = rows_l + rows_r;
            report.buckets = u64::from(IN_MEMORY_BUCKETS);
            report.buckets_matched_by_fingerprint = u64::from(equal);
            Ok(report)
        })
        .await
    }

    async fn compare_in_buckets(
        &self,
        sides: [(&DeltaSnapshotSource, Vec<DataFile>); 2],
        buckets: u32,
        schemas: (Schema, Schema),
        names: (String, String),
        options: DiffOptions,
    ) -> Result<Report> {
        let parent = self.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent).map_err(Error::io(&parent, "create spill directory"))?;
        let dir = tempfile::Builder::new()
            .prefix("tidewater-reconcile-")
            .tempdir_in(&parent)
            .map_err(Error::io(&parent, "create spill directory"))?;
        let columns = compared_columns(&schemas.0, &schemas.1, &options);
        let mut spill = Spill::new(dir.path(), buckets, bucket_key(&options, &columns));
        tracing::info!(buckets, spill = %dir.path().display(), "reconcile: the rows to compare exceed the memory limit; spilling by key hash");
        // Read files in groups of about a quarter of the memory limit (in memory), spill each.
        let group_bytes = (self.memory / (4 * EXPANSION)).max(1);
        for ((snapshot, files), side) in sides.into_iter().zip([Side::Left, Side::Right]) {
            let mut start = 0;
            while start < files.len() {
                let mut end = start + 1;
                let mut size = files[start].size;
                while end < files.len() && size + files[end].size <= group_bytes {
                    size += files[end].size;
                    end += 1;
                }
                let rows = snapshot.read_files(&files[start..end]).await?.rows;
                let filter = self.filter.clone();
                spill = blocking("reconcile spill", move || {
                    let rows = match &filter {
                        Some(condition) => filter_rows(rows, condition)?,
                        None => rows,
                    };
                    spill.add(side, &rows)?;
                    drop(rows);
                    tidewater_core::compute::release_memory();
                    Ok(spill)
                })
                .await?;
                start = end;
            }
        }
        let spill = Arc::new(spill);
        let mut report = Report {
            left: names.0.clone(),
            right: names.1.clone(),
            key: options.key.clone(),
            columns_compared: columns.clone(),
            buckets: u64::from(buckets),
            spilled: true,
            ..Report::default()
        };
        let key = bucket_key(&options, &columns);
        for bucket in 0..buckets {
            let (spill, names, opts, columns, schemas, key) =
                (spill.clone(), names.clone(), options.clone(), columns.clone(), schemas.clone(), key.clone());
            let (part, equal) = blocking("reconcile bucket", move || {
                let (l, r) =
                    (spill.read(Side::Left, bucket, &schemas.0)?, spill.read(Side::Right, bucket, &schemas.1)?);
                spill.drop_bucket(bucket);
                // Whatever the last bucket's join left in the allocator goes back first.
                tidewater_core::compute::release_memory();
                let (rows_l, rows_r) = (l.height() as u64, r.height() as u64);
                // Within the bucket, as in memory: its rows fall into IN_MEMORY_BUCKETS finer
                // key-hash buckets of their own (the finer count is a multiple of the spilled
                // one), and only those whose fingerprints differ are joined.
                let finer = IN_MEMORY_BUCKETS.saturating_mul(buckets);
                let (l, r, _) = differing_buckets(l, r, &key, &columns, finer)?;
                if l.height() + r.height() == 0 {
                    // Equal rows: identical under any tolerance; no join needed.
                    let equal = Report {
                        left_rows: rows_l,
                        right_rows: rows_r,
                        rows_read: rows_l + rows_r,
                        ..Report::default()
                    };
                    return Ok((equal, true));
                }
                let mut part = diff(l, r, (&names.0, &names.1), &opts)?;
                (part.left_rows, part.right_rows, part.rows_read) = (rows_l, rows_r, rows_l + rows_r);
                Ok((part, false))
            })
            .await?;
            report.buckets_matched_by_fingerprint += u64::from(equal);
            report.absorb(part, options.samples);
        }
        Ok(report)
    }
}

/// What a repair did (or, dry, would do).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RepairReport {
    /// The comparison before the repair.
    pub before: Report,
    /// Partitions replaced in the target (`["*"]`: the whole unpartitioned table; empty for a
    /// repair by key).
    pub partitions: Vec<String>,
    /// Keys whose rows were replaced (an unpartitioned table compared by key), `None` otherwise.
    pub keys: Option<u64>,
    pub files_removed: usize,
    pub rows_written: u64,
    /// The target's version holding the repair; `None` for a dry run, an identical table, or a
    /// repeat the table already records.
    pub committed_version: Option<u64>,
    /// The comparison after the repair (`None` for a dry run or when nothing was to repair).
    pub after: Option<Report>,
}

impl Reconciler {
    /// Makes RIGHT equal to LEFT (the source of truth): replaces exactly the partitions that
    /// differ with LEFT's rows (an unpartitioned table compared by key: exactly the differing
    /// keys' rows, rewriting only the files that hold them; without a key, the whole table), in
    /// one Delta commit
    /// carrying txn {app id: `tidewater-repair-<left+right>`, version: LEFT's version}, then
    /// compares again. A repeated repair finds the tables identical, or the txn already recorded,
    /// and commits nothing.
    pub async fn repair(mut self, dry_run: bool) -> Result<RepairReport> {
        let before = self.clone().run().await?;
        // The comparison's key, which may be the one recorded in the tables.
        self.options.key = before.key.clone();
        let mut report = RepairReport {
            before,
            partitions: Vec::new(),
            keys: None,
            files_removed: 0,
            rows_written: 0,
            committed_version: None,
            after: None,
        };
        if report.before.is_identical() {
            return Ok(report);
        }
        if !report.before.schema.is_empty() {
            return Err(tidewater_core::Error::Unsupported(format!(
                "{}: schemas differ; a repair replaces rows, not schemas",
                report.before.right
            )));
        }
        let (truth, target) =
            tokio::try_join!(open_snapshot(&self.left.0, self.left.1), open_snapshot(&self.right.0, self.right.1))?;
        let partition_by = target.partition_by()?;
        if partition_by != truth.partition_by()? {
            return Err(tidewater_core::Error::Unsupported(
                "the tables are partitioned differently; a repair replaces whole partitions".into(),
            ));
        }
        let (rows, removes, predicate) = if partition_by.is_empty() && !self.options.key.is_empty() {
            self.by_key(&truth, &target, &mut report).await?
        } else {
            let names: BTreeSet<String> = report.before.by_partition.keys().cloned().collect();
            report.partitions =
                if partition_by.is_empty() { vec!["*".into()] } else { names.iter().cloned().collect() };
            let removes = target.removes(&|_, values| {
                partition_by.is_empty() || names.contains(&partition_name(&partition_by, values))
            })?;
            let wanted: Vec<DataFile> = truth
                .files()?
                .into_iter()
                .map(|(f, _)| f)
                .filter(|f| {
                    partition_by.is_empty() || names.contains(&partition_name(&partition_by, &f.partition_values))
                })
                .collect();
            let rows = truth.read_files(&wanted).await?.rows;
            let predicate = if partition_by.is_empty() { "true".to_string() } else { report.partitions.join(" OR ") };
            (rows, removes, predicate)
        };
        report.files_removed = removes.len();
        report.rows_written = rows.height() as u64;
        if dry_run {
            return Ok(report);
        }
        let target_url = tidewater_core::location::existing_table_url(&self.right.0)?;
        let key = format!("{}|{}", truth.url(), target.url());
        let app_id = format!("tidewater-repair-{}", repair_key(&key));
        let mut sink = DeltaSink::new(target_url, app_id, WriteKind::Batch);
        let commit = sink.replace(BatchId::new(truth.version()), rows, removes, predicate).await?;
        report.committed_version = commit.version();
        report.after = Some(self.run().await?);
        Ok(report)
    }

    /// An unpartitioned table compared by key: the keys whose rows differ, the target's files
    /// holding any of them (removed), and what replaces them: those files' other rows plus the
    /// truth's rows for the differing keys. Both tables are read into memory.
    async fn by_key(
        &self,
        truth: &DeltaSnapshotSource,
        target: &DeltaSnapshotSource,
        report: &mut RepairReport,
    ) -> Result<(polars::prelude::DataFrame, Vec<deltalake::kernel::Remove>, String)> {
        let truth_files: Vec<DataFile> = truth.files()?.into_iter().map(|(f, _)| f).collect();
        let truth_rows = truth.read_files(&truth_files).await?.rows;
        let mut target_files = Vec::new();
        for (file, _) in target.files()? {
            let rows = target.read_files(std::slice::from_ref(&file)).await?.rows;
            target_files.push((file.path, rows));
        }
        let (options, filter) = (self.options.clone(), self.filter.clone());
        let (keys, rows, affected) = blocking("repair by key", move || {
            let columns = compared_columns(truth_rows.schema(), truth_rows.schema(), &options);
            let mut target_rows = truth_rows.clear();
            for (_, rows) in &target_files {
                target_rows.vstack_mut(rows).map_err(Error::polars("repair: stacking the target's files"))?;
            }
            let (mut l, mut r) = (truth_rows.clone(), target_rows);
            if let Some(condition) = &filter {
                l = filter_rows(l, condition)?;
                r = filter_rows(r, condition)?;
            }
            let keys = differing_keys(&l, &r, &options.key, &columns)?;
            let (mut rows, _) = split_by_keys(truth_rows, &keys, &options.key)?;
            let mut affected = BTreeSet::new();
            for (path, file_rows) in target_files {
                let (replaced, kept) = split_by_keys(file_rows, &keys, &options.key)?;
                if replaced.height() > 0 {
                    affected.insert(path);
                    rows.vstack_mut_owned(kept).map_err(Error::polars("repair: stacking kept rows"))?;
                }
            }
            Ok((keys.height() as u64, rows, affected))
        })
        .await?;
        report.keys = Some(keys);
        let removes = target.removes(&|path, _| affected.contains(path))?;
        Ok((rows, removes, format!("{keys} differing keys of ({})", self.options.key.join(", "))))
    }
}

fn repair_key(text: &str) -> String {
    // A stable id for a (truth, target) pair, so a repeated repair is recognised by its txn.
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// The columns that pick a row's bucket: the key, or every compared column without one (so equal
/// rows meet).
fn bucket_key(options: &DiffOptions, columns: &[String]) -> Vec<String> {
    if options.key.is_empty() { columns.to_vec() } else { options.key.clone() }
}

/// Groups files by partition, with the partition's fingerprint when every file carries one.
fn partitions(
    files: Vec<(DataFile, Option<Fingerprint>)>,
) -> BTreeMap<PartitionValues, (Vec<DataFile>, Option<Fingerprint>)> {
    let mut out: BTreeMap<PartitionValues, (Vec<DataFile>, Option<Fingerprint>)> = BTreeMap::new();
    for (file, fingerprint) in files {
        let key: PartitionValues = file.partition_values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let entry = out.entry(key).or_insert_with(|| (Vec::new(), Some(Fingerprint::default())));
        entry.1 = match (entry.1, fingerprint) {
            (Some(acc), Some(fp)) => Some(acc.combine(fp)),
            _ => None,
        };
        entry.0.push(file);
    }
    out
}
