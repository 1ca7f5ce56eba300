//! What a reconciliation found: a typed report, printed for people or as JSON.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The kinds of difference, as the report names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A row (key, or row value in a multiset diff) in LEFT and not in RIGHT.
    MissingInRight,
    /// A row in RIGHT and not in LEFT.
    ExtraInRight,
    /// A key on both sides with different values.
    Changed,
    /// A key that appears more than once on the left.
    DuplicateKeyLeft,
    /// A key that appears more than once on the right.
    DuplicateKeyRight,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::MissingInRight => "only in left",
            Kind::ExtraInRight => "only in right",
            Kind::Changed => "changed",
            Kind::DuplicateKeyLeft => "duplicate key in left",
            Kind::DuplicateKeyRight => "duplicate key in right",
        }
    }
}

/// A column whose presence or type differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SchemaDifference {
    pub column: String,
    /// The left type, `None` when the column is missing on the left.
    pub left: Option<String>,
    pub right: Option<String>,
}

/// One differing value of a changed row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValueDiff {
    pub column: String,
    pub left: String,
    pub right: String,
}

/// An example difference, with enough to find the row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub kind: Kind,
    /// The key columns (keyed diff) or the whole row (multiset diff), as text.
    pub row: BTreeMap<String, String>,
    /// How many times the row is on the side it is extra on (multiset diff), or the number of
    /// occurrences of a duplicate key.
    pub count: u64,
    /// The differing columns of a changed row.
    pub values: Vec<ValueDiff>,
}

/// The result of comparing two tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub left: String,
    pub right: String,
    pub key: Vec<String>,
    pub columns_compared: Vec<String>,
    pub left_rows: u64,
    pub right_rows: u64,
    /// Schema differences; when there are any, no data is compared.
    pub schema: Vec<SchemaDifference>,
    /// Count of differences per kind (rows; for multisets, row occurrences).
    pub counts: BTreeMap<Kind, u64>,
    /// The same, per partition (`date=2024-03-01`), when the tables are partitioned.
    pub by_partition: BTreeMap<String, BTreeMap<Kind, u64>>,
    /// The first differences found, at most the sample limit per kind.
    pub samples: Vec<Sample>,
    /// For changed rows: how many rows differ in each column.
    pub changed_columns: BTreeMap<String, u64>,
    /// Partitions found equal from the fingerprints in the two Delta logs, without reading data.
    pub partitions_matched_by_fingerprint: u64,
    /// Rows read from data files to compare (both sides).
    pub rows_read: u64,
    /// Key-hash buckets the rows read were compared in (0: no rows read).
    pub buckets: u64,
    /// Of those, buckets found equal by fingerprint without a row-level join.
    pub buckets_matched_by_fingerprint: u64,
    /// How many times the data files were read: 1, or 2 when their rows did not fit in memory
    /// (fingerprinted by bucket on the first read; the differing buckets' rows taken on the
    /// second).
    pub passes: u8,
    /// Whether the differing buckets' rows were spilled to disk to stay under the memory limit.
    pub spilled: bool,
}

impl Report {
    pub fn is_identical(&self) -> bool {
        self.schema.is_empty() && self.counts.values().all(|&n| n == 0)
    }

    /// Adds the findings of a comparison of a part of the same two tables (the rows of some
    /// buckets): its counts, partitions, columns and samples, keeping at most `samples` samples
    /// per kind. Row counts are the caller's: a part holds only some of the rows read.
    pub fn absorb(&mut self, part: Report, samples: usize) {
        for (kind, n) in part.counts {
            *self.counts.entry(kind).or_default() += n;
        }
        for (partition, counts) in part.by_partition {
            let mine = self.by_partition.entry(partition).or_default();
            for (kind, n) in counts {
                *mine.entry(kind).or_default() += n;
            }
        }
        for (column, n) in part.changed_columns {
            *self.changed_columns.entry(column).or_default() += n;
        }
        for sample in part.samples {
            if self.samples.iter().filter(|s| s.kind == sample.kind).count() < samples {
                self.samples.push(sample);
            }
        }
        self.samples.sort_by_key(|s| s.kind);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.key.is_empty() { "multiset".to_string() } else { format!("key ({})", self.key.join(", ")) };
        writeln!(
            f,
            "left   {} ({} rows)\nright  {} ({} rows)\ncompare by {how}",
            self.left, self.left_rows, self.right, self.right_rows
        )?;
        if !self.schema.is_empty() {
            writeln!(f, "DIFFERENT: schemas differ (no data compared)")?;
            for d in &self.schema {
                let show = |t: &Option<String>| t.clone().unwrap_or_else(|| "(missing)".into());
                writeln!(f, "  column {}: left {}, right {}", d.column, show(&d.left), show(&d.right))?;
            }
            return Ok(());
        }
        if self.partitions_matched_by_fingerprint > 0 {
            writeln!(
                f,
                "{} partitions equal by their fingerprints in the Delta logs; {} rows read",
                self.partitions_matched_by_fingerprint, self.rows_read
            )?;
        }
        if self.buckets > 0 {
            writeln!(
                f,
                "{} rows read{} into {} key-hash buckets; {} buckets equal by fingerprint, the rest joined{}",
                self.rows_read,
                if self.passes > 1 { " twice (memory limit)" } else { "" },
                self.buckets,
                self.buckets_matched_by_fingerprint,
                if self.spilled { " after spilling their rows to disk (memory limit)" } else { "" },
            )?;
        }
        if self.is_identical() {
            return writeln!(f, "IDENTICAL: {} columns compared", self.columns_compared.len());
        }
        writeln!(f, "DIFFERENT:")?;
        for (kind, n) in self.counts.iter().filter(|(_, n)| **n > 0) {
            writeln!(f, "  {:<24} {n}", kind.describe())?;
        }
        for (column, n) in &self.changed_columns {
            writeln!(f, "    column {column}: {n} rows")?;
        }
        if !self.by_partition.is_empty() {
            writeln!(f, "by partition:")?;
            for (partition, counts) in &self.by_partition {
                let parts: Vec<String> =
                    counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{} {n}", k.describe())).collect();
                writeln!(f, "  {partition}: {}", parts.join(", "))?;
            }
        }
        writeln!(f, "samples:")?;
        for s in &self.samples {
            let row: Vec<String> = s.row.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "  {:<22} {}", s.kind.describe(), row.join(" "))?;
            if s.count > 1 {
                write!(f, " (x{})", s.count)?;
            }
            for v in &s.values {
                write!(f, "  [{}: {} -> {}]", v.column, v.left, v.right)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
