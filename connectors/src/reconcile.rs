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
use polars::prelude::{DataFrame, Schema};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use tidewater_core::compute::blocking;
use tidewater_core::frame::fingerprint::{Fingerprint, PartitionValues};
use tidewater_core::frame::split_by_keys;
use tidewater_core::reconcile::buckets::{BucketPrints, Side, Spill, buckets_for, keep_differing};
use tidewater_core::reconcile::{
    DiffOptions, Report, compared_columns, diff, differing_keys, filter_rows, partition_name,
};
use tidewater_core::sink::{Change, DeltaSink, Within, WriteKind};
use tidewater_core::{BatchId, Error, Result};

/// The memory a join of rows takes, per byte those rows took to read: the join's output, the
/// comparisons and the allocator's slack (measured 3: docs/performance.md, "the checker within
/// its memory").
const JOIN_FACTOR: f64 = 4.0;

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

    /// The memory the comparison may hold, in bytes (default [`DEFAULT_MEMORY`]). Rows that do
    /// not fit are fingerprinted by key-hash bucket and read again for the differing buckets
    /// only; those rows are spilled to disk by bucket when even they do not fit.
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
    /// sides are settled from the logs. The other partitions' files are read, their rows hashed
    /// by key into key-hash buckets and each bucket pair compared by fingerprint; only the rows
    /// of buckets whose fingerprints differ are joined, within the memory limit (see
    /// [`Reconciler::memory_limit`]).
    pub async fn run(self) -> Result<Report> {
        let (left, right) = open_both(&self.left, &self.right).await?;
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
        let sides = [(&left, left_read), (&right, right_read)];
        let mut report = self.compare(sides, (left_schema, right_schema), names, options).await?;
        report.partitions_matched_by_fingerprint = matched;
        report.left_rows += matched_rows;
        report.right_rows += matched_rows;
        Ok(report)
    }

    /// Compares the files of both sides that must be read, within the memory limit.
    ///
    /// Each side is read a group of files at a time (about a quarter of the limit, sized by the
    /// measured memory per Parquet byte); every row is hashed by key into a key-hash bucket and
    /// each bucket fingerprinted, and the rows are kept while they take at most half the limit.
    /// Buckets whose fingerprints agree are equal. The rows of the others are taken from the kept
    /// rows, or from a second read of the sides that have any when the rows were not kept, and
    /// joined; when even those would not fit, they are spilled to disk by key-hash bucket and
    /// joined a bucket at a time.
    async fn compare(
        &self,
        sides: [(&DeltaSnapshotSource, Vec<DataFile>); 2],
        schemas: (Schema, Schema),
        names: (String, String),
        options: DiffOptions,
    ) -> Result<Report> {
        let columns = compared_columns(&schemas.0, &schemas.1, &options);
        let samples = options.samples;
        let bytes: u64 = sides.iter().flat_map(|(_, files)| files).map(|f| f.size).sum();
        let key = bucket_key(&options, &columns);
        let mut prints = BucketPrints::new(buckets_for(bytes), key.clone(), columns.clone());
        let mut report = Report {
            left: names.0.clone(),
            right: names.1.clone(),
            key: options.key.clone(),
            columns_compared: columns.clone(),
            buckets: u64::from(prints.buckets()),
            passes: 1,
            ..Report::default()
        };
        // First read: fingerprints, and the rows (with their buckets) while they fit.
        let mut readers =
            [GroupReader::new(self.memory, self.filter.clone()), GroupReader::new(self.memory, self.filter.clone())];
        let mut kept: Option<Vec<(Side, DataFrame, Vec<u32>)>> = Some(Vec::new());
        let mut kept_bytes = 0u64;
        // What the groups took to read, and the rows they read before the filter.
        let (mut took, mut unfiltered) = (0u64, 0u64);
        for (((snapshot, files), side), reader) in sides.iter().zip([Side::Left, Side::Right]).zip(&mut readers) {
            let mut start = 0;
            while let Some(rows) = reader.next(snapshot, files, &mut start).await? {
                (took, unfiltered) = (took + reader.took, unfiltered + reader.rows as u64);
                let (p, assigned, rows) = blocking("reconcile: fingerprinting buckets", move || {
                    let assigned = prints.add(side, &rows)?;
                    Ok((prints, assigned, rows))
                })
                .await?;
                prints = p;
                if let Some(list) = &mut kept {
                    // What the group took, for the share of its rows the filter kept.
                    let share = rows.height() as f64 / reader.rows.max(1) as f64;
                    kept_bytes += (reader.took as f64 * share) as u64 + 4 * assigned.len() as u64;
                    // Half the limit: the differing buckets' rows are copied out of the kept
                    // rows, which may be all of them.
                    if kept_bytes <= self.memory / 2 {
                        list.push((side, rows, assigned));
                        continue;
                    }
                    kept = None;
                    tracing::info!(
                        memory = self.memory,
                        "reconcile: the rows to compare exceed the memory limit; fingerprinting them first"
                    );
                }
                drop(rows);
                tidewater_core::compute::release_memory();
            }
        }
        let differs = Arc::new(prints.differing());
        let [(left_rows, left_differing), (right_rows, right_differing)] = prints.rows(&differs);
        (report.left_rows, report.right_rows, report.rows_read) = (left_rows, right_rows, left_rows + right_rows);
        report.buckets_matched_by_fingerprint = differs.iter().filter(|d| !**d).count() as u64;
        if report.rows_read == 0 {
            (report.buckets, report.buckets_matched_by_fingerprint) = (0, 0);
        }
        // The differing buckets' rows: joined in memory, or spilled and joined a bucket at a time.
        let row_bytes = took as f64 / unfiltered.max(1) as f64;
        let need = (left_differing + right_differing) as f64 * row_bytes * JOIN_FACTOR;
        let mut differing = if need <= self.memory as f64 {
            Differing::InMemory(DataFrame::empty_with_schema(&schemas.0), DataFrame::empty_with_schema(&schemas.1))
        } else {
            let buckets = (need / self.memory.max(1) as f64).ceil().min(f64::from(1u32 << 16)) as u32;
            let parent = self.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&parent).map_err(Error::io(&parent, "create spill directory"))?;
            let dir = tempfile::Builder::new()
                .prefix("tidewater-reconcile-")
                .tempdir_in(&parent)
                .map_err(Error::io(&parent, "create spill directory"))?;
            tracing::info!(buckets, spill = %dir.path().display(), "reconcile: the differing buckets' rows exceed the memory limit; spilling them by key hash");
            report.spilled = true;
            let spill = Spill::new(dir.path(), buckets, key);
            Differing::Spilled(spill, dir)
        };
        match kept {
            Some(list) => {
                for (side, rows, assigned) in list {
                    let differs = differs.clone();
                    differing = blocking("reconcile: rows of the differing buckets", move || {
                        differing.add(side, keep_differing(&rows, &assigned, &differs)?)?;
                        Ok(differing)
                    })
                    .await?;
                }
                tidewater_core::compute::release_memory();
            }
            None => {
                // Read again, only the sides with rows in a differing bucket.
                let prints = Arc::new(prints);
                let again = [left_differing > 0, right_differing > 0];
                for ((((snapshot, files), side), reader), again) in
                    sides.iter().zip([Side::Left, Side::Right]).zip(&mut readers).zip(again)
                {
                    if !again {
                        continue;
                    }
                    report.passes = 2;
                    let mut start = 0;
                    while let Some(rows) = reader.next(snapshot, files, &mut start).await? {
                        let (prints, differs) = (prints.clone(), differs.clone());
                        differing = blocking("reconcile: rows of the differing buckets", move || {
                            let assigned = prints.assign(&rows)?;
                            differing.add(side, keep_differing(&rows, &assigned, &differs)?)?;
                            drop(rows);
                            tidewater_core::compute::release_memory();
                            Ok(differing)
                        })
                        .await?;
                    }
                }
            }
        }
        match differing {
            Differing::InMemory(l, r) => {
                let part = blocking("reconcile", move || diff(l, r, (&names.0, &names.1), &options)).await?;
                report.absorb(part, samples);
            }
            Differing::Spilled(spill, _dir) => {
                let spill = Arc::new(spill);
                for bucket in 0..spill.buckets() {
                    let (spill, names, opts, schemas) =
                        (spill.clone(), names.clone(), options.clone(), schemas.clone());
                    let part = blocking("reconcile: joining a spilled bucket", move || {
                        let (l, r) =
                            (spill.read(Side::Left, bucket, &schemas.0)?, spill.read(Side::Right, bucket, &schemas.1)?);
                        spill.drop_bucket(bucket);
                        if l.height() + r.height() == 0 {
                            return Ok(None);
                        }
                        let part = diff(l, r, (&names.0, &names.1), &opts);
                        tidewater_core::compute::release_memory();
                        part.map(Some)
                    })
                    .await?;
                    if let Some(part) = part {
                        report.absorb(part, samples);
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Reads a side's files a group at a time: about a quarter of the memory limit, by the ratio of
/// memory to Parquet bytes measured on the side's group before (its first file is read alone to
/// measure it): the process's peak resident memory while reading a group, above what it held
/// before, or the rows' own size if larger.
struct GroupReader {
    budget: f64,
    expansion: Option<f64>,
    filter: Option<String>,
    /// The memory the last group took, and the rows it read (before the filter).
    took: u64,
    rows: usize,
}

impl GroupReader {
    fn new(memory: u64, filter: Option<String>) -> Self {
        GroupReader { budget: memory as f64 / 4.0, expansion: None, filter, took: 0, rows: 0 }
    }

    /// The rows of the next group of `files` from `*start` (advanced past it), filtered;
    /// `None` after the last.
    async fn next(
        &mut self,
        snapshot: &DeltaSnapshotSource,
        files: &[DataFile],
        start: &mut usize,
    ) -> Result<Option<DataFrame>> {
        if *start >= files.len() {
            return Ok(None);
        }
        let mut end = *start + 1;
        let mut size = files[*start].size;
        if let Some(expansion) = self.expansion {
            while end < files.len() && (size + files[end].size) as f64 * expansion <= self.budget {
                size += files[end].size;
                end += 1;
            }
        }
        let before = tidewater_core::compute::resident_memory();
        let watch = tidewater_core::compute::MemoryWatch::start();
        let read = snapshot.read_files(&files[*start..end]).await;
        let peak = watch.map(tidewater_core::compute::MemoryWatch::peak);
        let rows = read?.rows;
        // What reading the group took at its peak (decoding included), where the system says;
        // else the rows' own size.
        let took = match (before, peak) {
            (Some(before), Some(peak)) => peak.saturating_sub(before),
            _ => 0,
        };
        self.took = took.max(rows.estimated_size() as u64);
        self.rows = rows.height();
        if self.rows > 0 {
            self.expansion = Some(self.took as f64 / size.max(1) as f64);
        }
        *start = end;
        Ok(Some(match &self.filter {
            Some(condition) => {
                let condition = condition.clone();
                blocking("reconcile: filtering rows", move || filter_rows(rows, &condition)).await?
            }
            None => rows,
        }))
    }
}

/// Where the rows of the differing buckets go.
enum Differing {
    InMemory(DataFrame, DataFrame),
    Spilled(Spill, tempfile::TempDir),
}

impl Differing {
    fn add(&mut self, side: Side, rows: DataFrame) -> Result<()> {
        let what = "reconcile: stacking the differing buckets' rows";
        match (self, side) {
            (Differing::InMemory(l, _), Side::Left) => l.vstack_mut_owned(rows).map_err(Error::polars(what)).map(drop),
            (Differing::InMemory(_, r), Side::Right) => r.vstack_mut_owned(rows).map_err(Error::polars(what)).map(drop),
            (Differing::Spilled(spill, _), side) => spill.add(side, &rows),
        }
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
        let (truth, target) = open_both(&self.left, &self.right).await?;
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
        let what = format!("replace where {predicate}");
        let change =
            Change::Replace { removes, predicate, read_version: Some(target.version()), within: Within::Anything };
        let commit = sink.commit(BatchId::new(truth.version()), rows, &what, change, &[]).await?;
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

/// Opens both tables at once, and waits for both even when one fails: a load dropped half way
/// leaves delta-rs's kernel tasks to panic when the runtime ends.
async fn open_both(
    left: &(String, TableVersion),
    right: &(String, TableVersion),
) -> Result<(DeltaSnapshotSource, DeltaSnapshotSource)> {
    let (l, r) = tokio::join!(open_snapshot(&left.0, left.1), open_snapshot(&right.0, right.1));
    Ok((l?, r?))
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
