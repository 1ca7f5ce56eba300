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

use crate::delta::{DataFile, TableVersion, open_snapshot, read_snapshot};
use std::collections::{BTreeMap, BTreeSet};
use tidewater_core::BatchId;
use tidewater_core::Result;
use tidewater_core::compute::blocking;
use tidewater_core::reconcile::fingerprint::{Fingerprint, PartitionValues};
use tidewater_core::reconcile::partition_name;
use tidewater_core::reconcile::{DiffOptions, Report, diff, filter_rows};
use tidewater_core::sink::{DeltaSink, WriteKind};

/// Compares two Delta tables.
#[derive(Clone, Debug)]
pub struct Reconciler {
    left: (String, TableVersion),
    right: (String, TableVersion),
    options: DiffOptions,
    filter: Option<String>,
}

impl Reconciler {
    pub fn new(left: impl Into<String>, right: impl Into<String>) -> Self {
        Reconciler {
            left: (left.into(), TableVersion::Latest),
            right: (right.into(), TableVersion::Latest),
            options: DiffOptions::default(),
            filter: None,
        }
    }

    /// Reads the tables at these versions instead of their latest.
    pub fn at(mut self, left: TableVersion, right: TableVersion) -> Self {
        self.left.1 = left;
        self.right.1 = right;
        self
    }

    /// Key columns; without a key the tables are compared as multisets.
    pub fn key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.options.key = columns.into_iter().map(Into::into).collect();
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

    /// Compares the tables. Without column selection or a row filter, partitions whose
    /// fingerprints (recorded by the writer in the Delta log) agree on both sides are settled
    /// from the logs; only the other partitions' files are read and compared row by row.
    pub async fn run(self) -> Result<Report> {
        if self.options.columns.is_none() && self.options.ignore.is_empty() && self.filter.is_none() {
            return self.run_by_partition().await;
        }
        self.run_whole().await
    }

    async fn run_by_partition(self) -> Result<Report> {
        let (left, right) =
            tokio::try_join!(open_snapshot(&self.left.0, self.left.1), open_snapshot(&self.right.0, self.right.1))?;
        let names = (format!("{}@{}", left.url(), left.version()), format!("{}@{}", right.url(), right.version()));
        let partition_by = left.partition_by()?;
        let mut options = self.options.clone();
        options.partition_by = partition_by.clone();
        let (left_schema, right_schema) = (left.polars_schema()?, right.polars_schema()?);
        if left_schema != right_schema || partition_by != right.partition_by()? {
            if left_schema == right_schema {
                // Same columns, partitioned differently: partitions cannot be paired.
                return self.run_whole().await;
            }
            let (l, r) = (left.empty_frame()?, right.empty_frame()?);
            return blocking("reconcile", move || diff(l, r, (&names.0, &names.1), &options)).await;
        }
        let (left_parts, right_parts) = (partitions(left.files()?), partitions(right.files()?));
        let mut keys: Vec<&PartitionValues> = left_parts.keys().chain(right_parts.keys()).collect();
        keys.sort();
        keys.dedup();
        let (mut matched, mut matched_rows) = (0u64, 0u64);
        let (mut left_read, mut right_read) = (Vec::new(), Vec::new());
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
        let (l, r) = tokio::try_join!(left.read_files(&left_read), right.read_files(&right_read))?;
        let mut report = blocking("reconcile", move || diff(l.rows, r.rows, (&names.0, &names.1), &options)).await?;
        report.partitions_matched_by_fingerprint = matched;
        report.left_rows += matched_rows;
        report.right_rows += matched_rows;
        Ok(report)
    }

    async fn run_whole(self) -> Result<Report> {
        let (left, right) =
            tokio::try_join!(read_snapshot(&self.left.0, self.left.1), read_snapshot(&self.right.0, self.right.1))?;
        let names = (format!("{}@{}", left.url, left.version), format!("{}@{}", right.url, right.version));
        let mut options = self.options;
        options.partition_by = left.partition_by.clone();
        options.partition_by.extend(right.partition_by.iter().filter(|p| !left.partition_by.contains(p)).cloned());
        let filter = self.filter;
        blocking("reconcile", move || {
            let (mut l, mut r) = (left.rows, right.rows);
            if let Some(condition) = &filter {
                l = filter_rows(l, condition)?;
                r = filter_rows(r, condition)?;
            }
            diff(l, r, (&names.0, &names.1), &options)
        })
        .await
    }
}

/// What a repair did (or, dry, would do).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RepairReport {
    /// The comparison before the repair.
    pub before: Report,
    /// Partitions replaced in the target (`["*"]`: the whole unpartitioned table).
    pub partitions: Vec<String>,
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
    /// differ (the whole table when it is not partitioned) with LEFT's rows, in one Delta commit
    /// carrying txn {app id: `tidewater-repair-<left+right>`, version: LEFT's version}, then
    /// compares again. A repeated repair finds the tables identical, or the txn already recorded,
    /// and commits nothing.
    pub async fn repair(self, dry_run: bool) -> Result<RepairReport> {
        let before = self.clone().run().await?;
        let mut report = RepairReport {
            before,
            partitions: Vec::new(),
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
        let names: BTreeSet<String> = report.before.by_partition.keys().cloned().collect();
        report.partitions = if partition_by.is_empty() { vec!["*".into()] } else { names.iter().cloned().collect() };
        let removes = target.removes(&names)?;
        let wanted: Vec<DataFile> = truth
            .files()?
            .into_iter()
            .map(|(f, _)| f)
            .filter(|f| partition_by.is_empty() || names.contains(&partition_name(&partition_by, &f.partition_values)))
            .collect();
        report.files_removed = removes.len();
        let rows = truth.read_files(&wanted).await?.rows;
        report.rows_written = rows.height() as u64;
        if dry_run {
            return Ok(report);
        }
        let target_url = tidewater_core::location::existing_table_url(&self.right.0)?;
        let key = format!("{}|{}", truth.url(), target.url());
        let app_id = format!("tidewater-repair-{}", repair_key(&key));
        let predicate = if partition_by.is_empty() { "true".to_string() } else { report.partitions.join(" OR ") };
        let mut sink = DeltaSink::new(target_url, app_id, WriteKind::Batch);
        let commit = sink.replace(BatchId::new(truth.version()), rows, removes, predicate).await?;
        report.committed_version = commit.version();
        report.after = Some(self.run().await?);
        Ok(report)
    }
}

fn repair_key(text: &str) -> String {
    // A stable id for a (truth, target) pair, so a repeated repair is recognised by its txn.
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
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
