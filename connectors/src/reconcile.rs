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

use crate::delta::{TableVersion, read_snapshot};
use tidewater_core::Result;
use tidewater_core::compute::blocking;
use tidewater_core::reconcile::{DiffOptions, Report, diff, filter_rows};

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

    pub async fn run(self) -> Result<Report> {
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
