//! A Delta table's data files, read as Polars frames in the table's schema: by the Delta source
//! (snapshot and stream), the checker, and the sink when it rewrites files (a backfill's slice by a
//! data column). Partition values come from the log, typed by the table schema.

use crate::batch::SourceBatch;
use crate::bridge::polars_dtype;
use crate::error::{Error, Result};
use crate::scope::EPOCH;
use chrono::{NaiveDateTime, NaiveTime};
use deltalake::DeltaTable;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

/// Which snapshot of a table to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableVersion {
    Latest,
    Version(u64),
    /// The latest version committed at or before this instant.
    AsOf(chrono::DateTime<chrono::Utc>),
}

pub async fn open_at(url: &url::Url, at: TableVersion, describe: &str) -> Result<DeltaTable> {
    let delta_err = |op| Error::delta(url, op);
    let mut table =
        deltalake::DeltaTableBuilder::from_url(url.clone()).and_then(|b| b.build()).map_err(delta_err("open"))?;
    if !table.log_store().is_delta_table_location().await.map_err(delta_err("look for _delta_log"))? {
        return Err(Error::Source {
            source_name: describe.to_string(),
            problem: "not a Delta table (no _delta_log)".into(),
        });
    }
    match at {
        TableVersion::Latest => table.load().await.map_err(delta_err("load"))?,
        TableVersion::Version(v) => table.load_version(v).await.map_err(delta_err("load version"))?,
        TableVersion::AsOf(t) => table.load_with_datetime(t).await.map_err(delta_err("load as of"))?,
    }
    refuse_unreadable(&table, describe)?;
    Ok(table)
}

/// Refuses a table whose data files, read as plain Parquet (as this reader does), would give the
/// wrong rows: column mapping (the files name columns by physical name) and deletion vectors
/// (rows deleted outside the files), both table features Databricks writes.
pub fn refuse_unreadable(table: &DeltaTable, describe: &str) -> Result<()> {
    let refuse = |problem: String| Err(Error::Source { source_name: describe.to_string(), problem });
    let state = table.snapshot().map_err(Error::delta(table.table_url(), "snapshot"))?;
    if let Some(problem) = column_mapping(state.metadata().configuration().get(COLUMN_MAPPING).map(String::as_str)) {
        return refuse(problem);
    }
    let with_vectors = state.snapshot().log_data().iter().filter(|f| f.deletion_vector_descriptor().is_some()).count();
    if with_vectors > 0 {
        return refuse(deletion_vectors(with_vectors));
    }
    Ok(())
}

pub const COLUMN_MAPPING: &str = "delta.columnMapping.mode";

/// Why a table with this `delta.columnMapping.mode` cannot be read, if it cannot.
pub fn column_mapping(mode: Option<&str>) -> Option<String> {
    mode.filter(|m| *m != "none").map(|mode| format!(
        "the table uses column mapping (table feature columnMapping, {COLUMN_MAPPING} = {mode}): its data files name columns by physical name, which Tidewater does not read yet"
    ))
}

pub fn deletion_vectors(files: usize) -> String {
    format!(
        "{files} data files carry deletion vectors (table feature deletionVectors): rows deleted from them are recorded outside the files, which Tidewater does not read yet"
    )
}

/// A data file's partition values, as `add.partitionValues` holds them.
pub type PartitionMap = HashMap<String, Option<String>>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub partition_values: HashMap<String, Option<String>>,
    /// Bytes, as the Delta log records them.
    #[serde(default)]
    pub size: u64,
}

/// A partition value (text in the log) as a typed literal.
fn partition_value(text: String, dtype: &DataType) -> Expr {
    let exact = |format: &str| StrptimeOptions { format: Some(format.into()), strict: true, exact: true, cache: false };
    match dtype {
        DataType::Date => lit(text).str().to_date(exact("%Y-%m-%d")),
        DataType::Datetime(unit, tz) => lit(text).str().to_datetime(
            Some(*unit),
            tz.clone(),
            StrptimeOptions { strict: true, ..Default::default() },
            lit("raise"),
        ),
        other => lit(text).cast(other.clone()),
    }
}

/// Reads a table's data files as Polars frames in the table's schema, partition values from
/// the log; shared by the snapshot and the stream.
#[derive(Clone)]
pub struct FileReader {
    store: Arc<dyn object_store::ObjectStore>,
    schema: Schema,
    partition_columns: Vec<String>,
    describe: String,
}

impl FileReader {
    pub fn of(table: &DeltaTable, describe: &str) -> Result<Self> {
        let state = table.snapshot().map_err(Error::delta(table.table_url(), "snapshot"))?;
        let mut schema = Schema::default();
        for field in state.snapshot().arrow_schema().fields() {
            schema.insert(field.name().as_str().into(), polars_dtype(field)?);
        }
        Ok(FileReader {
            store: table.object_store(),
            schema,
            partition_columns: state.metadata().partition_columns().to_vec(),
            describe: describe.to_string(),
        })
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe.clone(), problem: problem.to_string() }
    }

    /// The table's schema as Polars types.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn empty_frame(&self) -> DataFrame {
        DataFrame::empty_with_schema(&self.schema)
    }

    /// Reads `files`, two fetched and decoded at a time (one per core of the machine kind this
    /// runs on); the rows come back in the order of `files`. A file the log names but the store
    /// no longer holds (vacuumed) is a [`Error::DataLoss`].
    pub async fn read(&self, files: &[DataFile]) -> Result<SourceBatch> {
        self.read_projected(files, None).await
    }

    /// Reads only `columns` of `files` (those the table has).
    pub async fn read_columns(&self, files: &[DataFile], columns: &[String]) -> Result<SourceBatch> {
        self.read_projected(files, Some(columns)).await
    }

    async fn read_projected(&self, files: &[DataFile], columns: Option<&[String]>) -> Result<SourceBatch> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let mut schema = self.schema.clone();
        if let Some(columns) = columns {
            schema.retain(|name, _| columns.iter().any(|c| c == name.as_str()));
        }
        let read = |file: &DataFile| {
            let (store, schema, partition_columns) =
                (self.store.clone(), schema.clone(), self.partition_columns.clone());
            let (path, values) = (file.path.clone(), file.partition_values.clone());
            let columns_only = columns.is_some();
            async move {
                let location = Path::from_url_path(&path).map_err(|e| self.err(format!("{path}: {e}")))?;
                let fetched = match store.get(&location).await {
                    Ok(fetched) => fetched,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(Error::DataLoss {
                            source_name: self.describe.clone(),
                            problem: format!(
                                "data file {path}, which the table's log lists, is gone (removed by VACUUM?); its rows cannot be read"
                            ),
                        });
                    }
                    Err(e) => return Err(self.err(format!("{path}: {e}"))),
                };
                let bytes = fetched.bytes().await.map_err(|e| self.err(format!("{path}: {e}")))?;
                let what = format!("{}: {path}", self.describe);
                crate::compute::blocking("reading a Delta data file", move || {
                    let polars = |e: PolarsError| Error::Source { source_name: what.clone(), problem: e.to_string() };
                    let mut reader = ParquetReader::new(Cursor::new(bytes));
                    if columns_only {
                        let present = reader.schema().map_err(polars)?;
                        let wanted: Vec<PlSmallStr> =
                            schema.iter_names().filter(|n| present.contains(n.as_str())).cloned().collect();
                        reader = reader.with_columns(Some(wanted.iter().map(|n| n.to_string()).collect()));
                    }
                    let df = reader.finish().map_err(polars)?;
                    let columns: Vec<Expr> = schema
                        .iter()
                        .map(|(name, dtype)| {
                            if partition_columns.iter().any(|p| p == name.as_str()) {
                                // Partition values live in the log, as text, typed by the table schema.
                                match values.get(name.as_str()).cloned().flatten() {
                                    Some(v) => partition_value(v, dtype).alias(name.clone()),
                                    None => lit(NULL).cast(dtype.clone()).alias(name.clone()),
                                }
                            } else if df.schema().contains(name) {
                                col(name.clone()).cast(dtype.clone())
                            } else {
                                // A column added to the table after this file was written.
                                lit(NULL).cast(dtype.clone()).alias(name.clone())
                            }
                        })
                        .collect();
                    df.lazy().select(columns).collect().map_err(polars)
                })
                .await
            }
        };
        let frames: Vec<DataFrame> = futures::stream::iter(files).map(read).buffered(2).try_collect().await?;
        let mut rows = DataFrame::empty_with_schema(&schema);
        let mut input_records = 0u64;
        for df in frames {
            input_records += df.height() as u64;
            rows.vstack_mut_owned(df).map_err(|e| self.err(format!("stacking data files: {e}")))?;
        }
        Ok(SourceBatch { rows, rejected: Vec::new(), input_records })
    }
}

/// The least and greatest value of a date or timestamp `column` in a data file, from its
/// statistics in the log; `None` when the writer recorded none for it.
pub fn column_bounds(
    file: &deltalake::kernel::LogicalFileView,
    column: &str,
) -> Option<(NaiveDateTime, NaiveDateTime)> {
    use delta_kernel::expressions::Scalar;
    let value = |stats: Option<Scalar>| -> Option<NaiveDateTime> {
        let Some(Scalar::Struct(stats)) = stats else { return None };
        let at = stats.fields().iter().position(|f| f.name() == column)?;
        match &stats.values()[at] {
            Scalar::Date(days) => {
                EPOCH.checked_add_signed(chrono::Duration::days(i64::from(*days))).map(|d| d.and_time(NaiveTime::MIN))
            }
            Scalar::Timestamp(us) | Scalar::TimestampNtz(us) => {
                chrono::DateTime::from_timestamp_micros(*us).map(|t| t.naive_utc())
            }
            _ => None,
        }
    };
    Some((value(file.min_values())?, value(file.max_values())?))
}
