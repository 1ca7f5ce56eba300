//! A Delta table as an input: its snapshot as a bounded input (`tidewater batch` over a table, at
//! its latest version or `--source-version N`), or its commits as a stream ([`stream`]). Files are
//! read with Polars from the table's object store; partition values come from the log, typed by
//! the table schema.

use async_trait::async_trait;
use deltalake::DeltaTable;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;
use tidewater_core::backfill::{RangeScope, SliceChunk, SlicePlan};
use tidewater_core::bridge::polars_dtype;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::location::existing_table_url;
use tidewater_core::reconcile::fingerprint::Fingerprint;
use tidewater_core::{BoundedSource, Chunk, Error, Result, Source, SourceBatch, SourceProvider};

mod stream;

use stream::DeltaStream;
pub use stream::{DeltaStreamOptions, StartingVersion};

/// A Delta table as a job's input: its snapshot as a bounded input (`files_per_chunk`), or its
/// commits as a stream ([`DeltaStreamOptions`]).
#[derive(Clone, Debug)]
pub struct DeltaSpec {
    pub table: String,
    /// Data files per chunk (one chunk = one commit of the batch run).
    pub files_per_chunk: usize,
    pub stream: DeltaStreamOptions,
}

impl DeltaSpec {
    pub fn new(table: impl Into<String>) -> Self {
        DeltaSpec { table: table.into(), files_per_chunk: 64, stream: DeltaStreamOptions::default() }
    }
}

/// Which snapshot of a table to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableVersion {
    Latest,
    Version(u64),
    /// The latest version committed at or before this instant.
    AsOf(chrono::DateTime<chrono::Utc>),
}

/// A whole table snapshot in memory, for the consistency checker.
#[derive(Debug)]
pub struct TableSnapshot {
    pub url: String,
    pub version: u64,
    pub partition_by: Vec<String>,
    pub rows: DataFrame,
}

async fn open_at(url: &url::Url, at: TableVersion, describe: &str) -> Result<DeltaTable> {
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
fn refuse_unreadable(table: &DeltaTable, describe: &str) -> Result<()> {
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

const COLUMN_MAPPING: &str = "delta.columnMapping.mode";

/// Why a table with this `delta.columnMapping.mode` cannot be read, if it cannot.
fn column_mapping(mode: Option<&str>) -> Option<String> {
    mode.filter(|m| *m != "none").map(|mode| format!(
        "the table uses column mapping (table feature columnMapping, {COLUMN_MAPPING} = {mode}): its data files name columns by physical name, which Tidewater does not read yet"
    ))
}

fn deletion_vectors(files: usize) -> String {
    format!(
        "{files} data files carry deletion vectors (table feature deletionVectors): rows deleted from them are recorded outside the files, which Tidewater does not read yet"
    )
}

/// Opens a table's snapshot for listing and reading its files.
pub(crate) async fn open_snapshot(location: &str, at: TableVersion) -> Result<DeltaSnapshotSource> {
    let url = existing_table_url(location)?;
    let describe = format!("delta {location}");
    let table = open_at(&url, at, &describe).await?;
    Ok(DeltaSnapshotSource::new(table, describe, usize::MAX))
}

/// Reads a table's snapshot whole (every data file, partition values included).
pub async fn read_snapshot(location: &str, at: TableVersion) -> Result<TableSnapshot> {
    let url = existing_table_url(location)?;
    let mut source = open_snapshot(location, at).await?;
    let version = source.version();
    let partition_by = source.state()?.metadata().partition_columns().to_vec();
    let mut rows: Option<DataFrame> = None;
    for chunk in source.plan().await? {
        let read = source.read_chunk(&chunk).await?.rows;
        match rows.as_mut() {
            None => rows = Some(read),
            Some(acc) => {
                acc.vstack_mut_owned(read).map_err(Error::polars(format!("{location}: stacking files")))?;
            }
        }
    }
    let rows = match rows {
        Some(rows) => rows,
        None => source.empty_frame()?,
    };
    Ok(TableSnapshot { url: url.to_string(), version, partition_by, rows })
}

pub struct DeltaSourceProvider {
    spec: DeltaSpec,
}

impl DeltaSourceProvider {
    pub fn new(spec: DeltaSpec) -> Self {
        DeltaSourceProvider { spec }
    }
}

#[async_trait]
impl SourceProvider for DeltaSourceProvider {
    fn describe(&self) -> String {
        format!("delta {}", self.spec.table)
    }

    async fn open_stream(&self, state: Checkpoint) -> Result<Box<dyn Source>> {
        let url = existing_table_url(&self.spec.table)?;
        let table = open_at(&url, TableVersion::Latest, &self.describe()).await?;
        Ok(Box::new(DeltaStream::open(table, self.describe(), state, self.spec.stream.clone())?))
    }

    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        let url = existing_table_url(&self.spec.table)?;
        let at = version.map_or(TableVersion::Latest, TableVersion::Version);
        let table = open_at(&url, at, &self.describe()).await?;
        Ok(Box::new(DeltaSnapshotSource::new(table, self.describe(), self.spec.files_per_chunk)))
    }
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
pub(crate) struct FileReader {
    store: Arc<dyn object_store::ObjectStore>,
    schema: Schema,
    partition_columns: Vec<String>,
    describe: String,
}

impl FileReader {
    pub(crate) fn of(table: &DeltaTable, describe: &str) -> Result<Self> {
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

    pub(crate) fn empty_frame(&self) -> DataFrame {
        DataFrame::empty_with_schema(&self.schema)
    }

    /// Reads `files`, two fetched and decoded at a time (one per core of the machine kind this
    /// runs on); the rows come back in the order of `files`. A file the log names but the store
    /// no longer holds (vacuumed) is a [`Error::DataLoss`].
    pub(crate) async fn read(&self, files: &[DataFile]) -> Result<SourceBatch> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let read = |file: &DataFile| {
            let (store, schema, partition_columns) =
                (self.store.clone(), self.schema.clone(), self.partition_columns.clone());
            let (path, values) = (file.path.clone(), file.partition_values.clone());
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
                tidewater_core::compute::blocking("reading a Delta data file", move || {
                    let polars = |e: PolarsError| Error::Source { source_name: what.clone(), problem: e.to_string() };
                    let df = ParquetReader::new(Cursor::new(bytes)).finish().map_err(polars)?;
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
        let mut rows = self.empty_frame();
        let mut input_records = 0u64;
        for df in frames {
            input_records += df.height() as u64;
            rows.vstack_mut_owned(df).map_err(|e| self.err(format!("stacking data files: {e}")))?;
        }
        Ok(SourceBatch { rows, rejected: Vec::new(), input_records })
    }
}

pub(crate) struct DeltaSnapshotSource {
    table: DeltaTable,
    describe: String,
    files_per_chunk: usize,
    /// Files of the snapshot left out: those a stream had not reached at its cut
    /// ([`Source::bounded_before`]).
    beyond_cut: HashSet<String>,
}

/// A data file with its date partition value and the rows its log entry records.
type DatedFile = (chrono::NaiveDate, DataFile, u64);

/// A data file's partition values, as `add.partitionValues` holds them.
pub(crate) type PartitionMap = HashMap<String, Option<String>>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DataFile {
    pub(crate) path: String,
    pub(crate) partition_values: HashMap<String, Option<String>>,
    /// Bytes, as the Delta log records them.
    #[serde(default)]
    pub(crate) size: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotChunk {
    version: u64,
    files: Vec<DataFile>,
}

impl DeltaSnapshotSource {
    pub(crate) fn new(table: DeltaTable, describe: String, files_per_chunk: usize) -> Self {
        DeltaSnapshotSource { table, describe, files_per_chunk, beyond_cut: HashSet::new() }
    }

    /// The same snapshot without `files` (a stream's files past its cut).
    pub(crate) fn without(mut self, files: HashSet<String>) -> Self {
        self.beyond_cut = files;
        self
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe.clone(), problem: problem.to_string() }
    }

    fn state(&self) -> Result<&deltalake::table::state::DeltaTableState> {
        self.table.snapshot().map_err(|e| self.err(e))
    }

    /// The key columns its writer recorded in the table property `tidewater.key` (empty: none).
    pub(crate) fn recorded_key(&self) -> Result<Vec<String>> {
        let config = self.state()?.metadata().configuration();
        Ok(config
            .get(tidewater_core::sink::KEY_PROPERTY)
            .map(|v| v.split(',').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect())
            .unwrap_or_default())
    }

    /// The table's schema as Polars types.
    pub(crate) fn polars_schema(&self) -> Result<Schema> {
        Ok(self.reader()?.schema)
    }

    /// Reads data files of this snapshot, with their partition values, in the table's schema.
    pub(crate) async fn read_files(&self, files: &[DataFile]) -> Result<SourceBatch> {
        self.reader()?.read(files).await
    }

    fn reader(&self) -> Result<FileReader> {
        FileReader::of(&self.table, &self.describe)
    }

    /// The snapshot's data files in path order, each with the fingerprint the writer recorded
    /// in its `add.tags`, if any.
    pub(crate) fn files(&self) -> Result<Vec<(DataFile, Option<Fingerprint>)>> {
        let state = self.state()?;
        let mut files: Vec<(DataFile, Option<Fingerprint>)> = state
            .snapshot()
            .log_data()
            .iter()
            .filter(|f| !self.beyond_cut.contains(f.path().as_ref()))
            .map(|f| {
                // delta-rs exposes `tags` only through the deprecated `add_action()`.
                #[allow(deprecated)]
                let tags = f.add_action().tags;
                let fingerprint = tags.as_ref().and_then(Fingerprint::from_tags);
                let size = u64::try_from(f.size()).unwrap_or_default();
                let file = DataFile { path: f.path().into_owned(), partition_values: f.partition_values_map(), size };
                (file, fingerprint)
            })
            .collect();
        files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok(files)
    }

    /// Remove actions (data change) for the files `pick(path, partition values)` selects.
    pub(crate) fn removes(&self, pick: &dyn Fn(&str, &PartitionMap) -> bool) -> Result<Vec<deltalake::kernel::Remove>> {
        Ok(self
            .state()?
            .snapshot()
            .log_data()
            .iter()
            .filter(|f| pick(&f.path(), &f.partition_values_map()))
            .map(|f| f.remove_action(true))
            .collect())
    }

    /// The date partition column a backfill plans over (`asked`, or the only partition column)
    /// and every data file's date, file and recorded rows, in date and path order.
    fn dated_files(&self, asked: Option<&str>) -> Result<(String, Vec<DatedFile>)> {
        let partitions = self.partition_by()?;
        let column = match (asked, partitions.as_slice()) {
            (Some(column), _) => column.to_string(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(Error::Unsupported(format!(
                    "{}: the table is partitioned by [{}]: say which date column to plan over with --on COLUMN",
                    self.describe,
                    partitions.join(", ")
                )));
            }
        };
        if !partitions.contains(&column) {
            let columns: Vec<String> = self.polars_schema()?.iter_names().map(|n| n.to_string()).collect();
            let problem = if columns.contains(&column) {
                format!(
                    "`{column}` is not a partition column of the table (partitioned by [{}]); a backfill plans over a date partition column",
                    partitions.join(", ")
                )
            } else {
                format!("`{column}` is not a column of the table (columns: {})", columns.join(", "))
            };
            return Err(Error::Unsupported(format!("{}: {problem}", self.describe)));
        }
        let state = self.state()?;
        // (date, file, rows) of every data file, from the log.
        let mut dated: Vec<(chrono::NaiveDate, DataFile, u64)> = Vec::new();
        for f in state.snapshot().log_data().iter().filter(|f| !self.beyond_cut.contains(f.path().as_ref())) {
            let values = f.partition_values_map();
            let Some(text) = values.get(&column).cloned().flatten() else { continue };
            let date: chrono::NaiveDate = text
                .parse()
                .map_err(|_| self.err(format!("partition value `{text}` of `{column}` is not a date (YYYY-MM-DD)")))?;
            let rows = f.num_records().unwrap_or(0) as u64;
            let size = u64::try_from(f.size()).unwrap_or_default();
            dated.push((date, DataFile { path: f.path().into_owned(), partition_values: values, size }, rows));
        }
        dated.sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
        Ok((column, dated))
    }

    pub(crate) fn partition_by(&self) -> Result<Vec<String>> {
        Ok(self.state()?.metadata().partition_columns().to_vec())
    }

    pub(crate) fn url(&self) -> String {
        self.table.table_url().to_string()
    }

    pub(crate) fn version(&self) -> u64 {
        self.table.version().unwrap_or_default()
    }

    pub(crate) fn empty_frame(&self) -> Result<DataFrame> {
        Ok(DataFrame::empty_with_schema(&self.polars_schema()?))
    }
}

#[async_trait]
impl BoundedSource for DeltaSnapshotSource {
    async fn plan(&mut self) -> Result<Vec<Chunk>> {
        let version = self.table.version().unwrap_or_default();
        let files: Vec<DataFile> = self.files()?.into_iter().map(|(f, _)| f).collect();
        let total = files.len();
        let mut chunks = Vec::new();
        let mut first = 0;
        let mut rest = files.into_iter().peekable();
        while rest.peek().is_some() {
            let group: Vec<DataFile> = rest.by_ref().take(self.files_per_chunk).collect();
            let describe = format!("version {version}, files {first}..{} of {total}", first + group.len());
            first += group.len();
            let spec = serde_json::to_value(SnapshotChunk { version, files: group })
                .map_err(|e| Error::Internal(format!("chunk spec: {e}")))?;
            chunks.push(Chunk { describe, spec });
        }
        Ok(chunks)
    }

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch> {
        let chunk: SnapshotChunk = serde_json::from_value(chunk.spec.clone())
            .map_err(|e| self.err(format!("unreadable chunk in the batch plan: {e}")))?;
        self.read_files(&chunk.files).await
    }

    async fn date_range(
        &mut self,
        column: Option<&str>,
    ) -> Result<Option<(String, chrono::NaiveDate, chrono::NaiveDate)>> {
        let (column, dated) = self.dated_files(column)?;
        Ok(dated.first().zip(dated.last()).map(|(first, last)| (column.clone(), first.0, last.0)))
    }

    async fn plan_slices(&mut self, scope: &RangeScope) -> Result<SlicePlan> {
        let (column, dated) = self.dated_files(scope.column.as_deref())?;
        let version = self.version();
        let mut chunks = Vec::new();
        for (from, until) in scope.slices() {
            let files: Vec<&(chrono::NaiveDate, DataFile, u64)> =
                dated.iter().filter(|(d, _, _)| *d >= from && *d < until).collect();
            let spec = SnapshotChunk { version, files: files.iter().map(|(_, f, _)| f.clone()).collect() };
            chunks.push(SliceChunk {
                from,
                until,
                files: files.len(),
                estimated_rows: files.iter().map(|(_, _, r)| r).sum(),
                estimated_bytes: files.iter().map(|(_, f, _)| f.size).sum(),
                read: Chunk {
                    describe: format!("{column} {}", tidewater_core::backfill::describe_range(from, until)),
                    spec: serde_json::to_value(spec).map_err(|e| Error::Internal(format!("chunk spec: {e}")))?,
                },
            });
        }
        Ok(SlicePlan { version, column, chunks })
    }
}
