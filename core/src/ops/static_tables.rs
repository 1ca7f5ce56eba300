//! Static tables: Delta tables a job reads beside its input (Spark's stream–static join), such as a
//! dimension of customers joined to a stream of orders.
//!
//! Each batch reads every static table at one version, chosen when the batch is planned (the
//! latest then) and recorded with its context in the offset log (a bounded run's plan), so a
//! replayed batch joins the same rows even if the table has moved on since. A table is read
//! whole once per version and kept in memory while the version stays the latest.
//!
//! ```text
//!  plan N: customers @ latest = 7 ──► offsets/N {"tables": {"customers": 7}}
//!  run N:  input ⋈ customers@7          (a replay of N reads version 7 again)
//! ```
//!
//! The stream ≡ batch promise holds against one version of the static side: a recomputation
//! joins the version current when it is planned, so rows a stream joined against an older version
//! differ where the table changed them (as in Spark).

use crate::context::{BatchContext, Tables};
use crate::error::{Error, Result};
use crate::location::existing_table_url;
use crate::table_files::{DataFile, FileReader, TableVersion, open_at};
use polars::prelude::DataFrame;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// A static table: the name the transform reads it by, and its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticTable {
    pub name: String,
    pub location: String,
}

/// The job's static tables, and the last version read of each (shared by the stream's batches
/// and a bounded run's chunks).
#[derive(Clone, Default)]
pub(crate) struct StaticTables {
    tables: Arc<[StaticTable]>,
    read: Arc<Mutex<BTreeMap<String, (u64, DataFrame)>>>,
}

impl StaticTables {
    /// These tables and `table`.
    pub fn with(&self, table: StaticTable) -> Self {
        let tables: Vec<StaticTable> = self.tables.iter().cloned().chain([table]).collect();
        StaticTables { tables: tables.into(), read: Arc::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Each table's latest version: what a batch planned now reads.
    pub async fn latest(&self) -> Result<BTreeMap<String, u64>> {
        let mut versions = BTreeMap::new();
        for t in self.tables.iter() {
            let url = existing_table_url(&t.location)?;
            let table = deltalake::DeltaTableBuilder::from_url(url.clone())
                .and_then(|b| b.build())
                .map_err(Error::delta(&url, "open the static table"))?;
            let version = table.get_latest_version().await.map_err(|e| missing(t, e.to_string()))?;
            versions.insert(t.name.clone(), version);
        }
        Ok(versions)
    }

    /// What a batch planned now records of the tables: each one's latest version, not read yet.
    pub async fn planned(&self) -> Result<Tables> {
        Ok(Tables::new(self.latest().await?, Default::default()))
    }

    /// `ctx` with the tables it recorded read in, for its transform (as it is without tables).
    pub async fn read_into(&self, ctx: &BatchContext) -> Result<BatchContext> {
        let mut ctx = ctx.clone();
        if !self.is_empty() {
            ctx.tables = self.at(ctx.tables.versions()).await?;
        }
        Ok(ctx)
    }

    /// The tables at `versions` (as a batch recorded them), read whole, for its transform.
    pub async fn at(&self, versions: &BTreeMap<String, u64>) -> Result<Tables> {
        let mut frames = BTreeMap::new();
        let mut read = self.read.lock().await;
        for t in self.tables.iter() {
            let Some(&version) = versions.get(&t.name) else {
                return Err(Error::Internal(format!(
                    "static table `{}`: the batch recorded no version of it (planned before it was declared?); replan the batch, or remove the table",
                    t.name
                )));
            };
            let frame = match read.get(&t.name) {
                Some((at, frame)) if *at == version => frame.clone(),
                _ => {
                    let frame = read_version(t, version).await?;
                    tracing::info!(table = %t.location, name = %t.name, version, rows = frame.height(), "read static table");
                    read.insert(t.name.clone(), (version, frame.clone()));
                    frame
                }
            };
            frames.insert(t.name.clone(), frame);
        }
        Ok(Tables::new(versions.clone(), frames))
    }
}

fn missing(t: &StaticTable, problem: String) -> Error {
    Error::Source {
        source_name: format!("static table `{}` ({})", t.name, t.location),
        problem: format!("cannot find its latest version: {problem}"),
    }
}

/// Every row of `t` at `version`.
async fn read_version(t: &StaticTable, version: u64) -> Result<DataFrame> {
    let url = existing_table_url(&t.location)?;
    let describe = format!("static table `{}` ({}) at version {version}", t.name, t.location);
    let table = open_at(&url, TableVersion::Version(version), &describe).await?;
    let snapshot = table.snapshot().map_err(Error::delta(&url, "snapshot"))?;
    let mut files: Vec<DataFile> = snapshot
        .snapshot()
        .log_data()
        .iter()
        .map(|f| DataFile {
            path: f.path().into_owned(),
            partition_values: f.partition_values_map(),
            size: u64::try_from(f.size()).unwrap_or_default(),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let reader = FileReader::of(&table, &describe)?;
    if files.is_empty() {
        return Ok(reader.empty_frame());
    }
    Ok(reader.read(&files).await?.rows)
}
