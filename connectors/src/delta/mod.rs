//! A Delta table as an input: its snapshot as a bounded input (`tidewater batch` over a table, at
//! its latest version or `--source-version N`), or its commits as a stream ([`stream`]). Files are
//! read with Polars from the table's object store; partition values come from the log, typed by
//! the table schema.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use deltalake::DeltaTable;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::frame::fingerprint::Fingerprint;
use tidewater_core::location::existing_table_url;
use tidewater_core::scope::{Granularity, RangeScope, Scope, SliceChunk, SlicePlan, Span, describe_range, moment};
pub use tidewater_core::table_files::TableVersion;
use tidewater_core::table_files::column_bounds;
pub(crate) use tidewater_core::table_files::{COLUMN_MAPPING, column_mapping, deletion_vectors, open_at};
pub(crate) use tidewater_core::table_files::{DataFile, FileReader, PartitionMap};
use tidewater_core::{BoundedSource, Chunk, Error, Result, SlicedSource, Source, SourceBatch, SourceProvider};

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

/// A whole table snapshot in memory, for the consistency checker.
#[derive(Debug)]
pub struct TableSnapshot {
    pub url: String,
    pub version: u64,
    pub partition_by: Vec<String>,
    pub rows: DataFrame,
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
    /// The last version opened by [`SourceProvider::open_bounded`]: a backfill's chunks all read
    /// the plan's version, which never changes, so its log is replayed once per process, not
    /// once per chunk.
    opened: tokio::sync::Mutex<Option<(u64, DeltaTable)>>,
}

impl DeltaSourceProvider {
    pub fn new(spec: DeltaSpec) -> Self {
        DeltaSourceProvider { spec, opened: tokio::sync::Mutex::new(None) }
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
        let table = match version {
            None => open_at(&url, TableVersion::Latest, &self.describe()).await?,
            Some(v) => {
                let mut opened = self.opened.lock().await;
                match opened.as_ref() {
                    Some((at, table)) if *at == v => table.clone(),
                    _ => {
                        let table = open_at(&url, TableVersion::Version(v), &self.describe()).await?;
                        *opened = Some((v, table.clone()));
                        table
                    }
                }
            }
        };
        Ok(Box::new(DeltaSnapshotSource::new(table, self.describe(), self.spec.files_per_chunk)))
    }
}

pub(crate) struct DeltaSnapshotSource {
    table: DeltaTable,
    describe: String,
    files_per_chunk: usize,
    /// Files of the snapshot left out: those a stream had not reached at its cut
    /// ([`Source::bounded_before`]).
    beyond_cut: HashSet<String>,
    /// The cut itself, for chunks planned over commits.
    cut: Option<Cut>,
}

/// A data file as a backfill's column slices it: the least and greatest value of the column in
/// it (its partition value, or its statistics; `None`: no statistics, so it is in every slice),
/// and the rows its log entry records.
struct SlicedFile {
    bounds: Option<(NaiveDateTime, NaiveDateTime)>,
    file: DataFile,
    rows: u64,
}

/// A table's files as a backfill's column slices them.
struct Sliced {
    column: String,
    /// A data column: the files are chosen by their statistics and their rows filtered. A
    /// partition column: whole files are in or out.
    by_rows: bool,
    /// In order of their least value, then path.
    files: Vec<SlicedFile>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotChunk {
    version: u64,
    files: Vec<DataFile>,
    /// Only the files' rows in this span (a backfill's slice by a data column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows: Option<Span>,
    /// Each file's commit and index among the commit's data files (a backfill over commits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    positions: Vec<(u64, usize)>,
    /// Files of the snapshot at `version`, whatever commits added them (a batch of everything).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    snapshot_files: bool,
}

/// How far a stream had read, for a backfill beside it ([`Source::bounded_before`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cut {
    /// Every data file of the commits before `version`, and the first `index` of `version`'s.
    At { version: u64, index: usize },
    /// Inside its starting snapshot of `version`.
    InSnapshot { version: u64 },
}

impl DeltaSnapshotSource {
    pub(crate) fn new(table: DeltaTable, describe: String, files_per_chunk: usize) -> Self {
        DeltaSnapshotSource { table, describe, files_per_chunk, beyond_cut: HashSet::new(), cut: None }
    }

    /// The same snapshot as a stream had read it at `cut`, without `files` (the snapshot's files
    /// past it).
    pub(crate) fn cut_at(mut self, cut: Cut, files: HashSet<String>) -> Self {
        (self.cut, self.beyond_cut) = (Some(cut), files);
        self
    }

    /// Of the commit-planned `files`, those the stream had read at the cut.
    fn before_cut(&self, files: Vec<DataFile>, positions: &[(u64, usize)]) -> Result<Vec<DataFile>> {
        match self.cut {
            None => Ok(files),
            Some(Cut::InSnapshot { version }) => Err(self.err(format!(
                "the job's stream is still reading its starting snapshot (version {version}), so which commits it has read is not known yet: run the backfill again when the stream has read it"
            ))),
            Some(Cut::At { version, index }) => Ok(files
                .into_iter()
                .zip(positions)
                .filter(|(_, at)| **at < (version, index))
                .map(|(f, _)| f)
                .collect()),
        }
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
        Ok(self.reader()?.schema().clone())
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

    /// The column a backfill plans over (`asked`: a partition column, or a date or timestamp
    /// data column; `None`: the only partition column) and every data file as it slices them.
    fn sliced_files(&self, asked: Option<&str>, by: Granularity) -> Result<Sliced> {
        let partitions = self.partition_by()?;
        let schema = self.polars_schema()?;
        let column = match (asked, partitions.as_slice()) {
            (Some(column), _) => column.to_string(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(Error::Unsupported(format!(
                    "{}: the table is partitioned by [{}]: say which date or timestamp column to plan over with --on COLUMN",
                    self.describe,
                    partitions.join(", ")
                )));
            }
        };
        let Some(dtype) = schema.get(&column) else {
            let columns: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
            return Err(Error::Unsupported(format!(
                "{}: `{column}` is not a column of the table (columns: {})",
                self.describe,
                columns.join(", ")
            )));
        };
        let by_rows = !partitions.contains(&column);
        if by_rows && !matches!(dtype, DataType::Date | DataType::Datetime(..)) {
            return Err(Error::Unsupported(format!(
                "{}: `{column}` is of type {dtype}: a backfill plans over a date partition column or a date or timestamp column",
                self.describe
            )));
        }
        if by == Granularity::Hour && !matches!(dtype, DataType::Datetime(..)) {
            return Err(Error::Unsupported(format!(
                "{}: --by hour: `{column}` holds dates; plan by hour over a timestamp column with --on COLUMN",
                self.describe
            )));
        }
        let state = self.state()?;
        let mut files = Vec::new();
        for f in state.snapshot().log_data().iter().filter(|f| !self.beyond_cut.contains(f.path().as_ref())) {
            let values = f.partition_values_map();
            let bounds = if by_rows {
                column_bounds(&f, &column)
            } else {
                let Some(text) = values.get(&column).cloned().flatten() else { continue };
                let value = moment(&text).ok_or_else(|| {
                    self.err(format!("partition value `{text}` of `{column}` is not a date (YYYY-MM-DD)"))
                })?;
                Some((value, value))
            };
            let rows = f.num_records().unwrap_or(0) as u64;
            let size = u64::try_from(f.size()).unwrap_or_default();
            let file = DataFile { path: f.path().into_owned(), partition_values: values, size };
            files.push(SlicedFile { bounds, file, rows });
        }
        files.sort_by(|a, b| (a.bounds.map(|b| b.0), &a.file.path).cmp(&(b.bounds.map(|b| b.0), &b.file.path)));
        Ok(Sliced { column, by_rows, files })
    }

    /// The chunk reading `span` of `sliced`: the files that may hold its rows, and for a data
    /// column only their rows in it.
    fn chunk_of(&self, sliced: &Sliced, span: Span) -> Result<SliceChunk> {
        let files: Vec<&SlicedFile> =
            sliced.files.iter().filter(|f| f.bounds.is_none_or(|(min, max)| span.overlaps(min, max))).collect();
        let describe = format!("{} {}", span.column, describe_range(span.from, span.until));
        let spec = SnapshotChunk {
            version: self.version(),
            files: files.iter().map(|f| f.file.clone()).collect(),
            rows: sliced.by_rows.then(|| span.clone()),
            positions: Vec::new(),
            snapshot_files: false,
        };
        let read = Chunk {
            describe,
            spec: serde_json::to_value(spec).map_err(|e| Error::Internal(format!("chunk spec: {e}")))?,
        };
        let (rows, bytes) = (files.iter().map(|f| f.rows).sum(), files.iter().map(|f| f.file.size).sum());
        Ok(SliceChunk::over(span, files.len(), rows, bytes, read))
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
            let spec = serde_json::to_value(SnapshotChunk {
                version,
                files: group,
                rows: None,
                positions: Vec::new(),
                snapshot_files: true,
            })
            .map_err(|e| Error::Internal(format!("chunk spec: {e}")))?;
            chunks.push(Chunk { describe, spec });
        }
        Ok(chunks)
    }

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch> {
        let chunk: SnapshotChunk = serde_json::from_value(chunk.spec.clone())
            .map_err(|e| self.err(format!("unreadable chunk in the batch plan: {e}")))?;
        if chunk.snapshot_files && self.cut.is_some() {
            return Err(self.err(
                "a backfill of a Delta source's files beside the job's stream cannot tell which of them the stream has read: plan it over commits (--versions A..B) or dates (--from, --to)",
            ));
        }
        let files = match chunk.positions.is_empty() {
            true => chunk.files,
            false => self.before_cut(chunk.files, &chunk.positions)?,
        };
        let mut read = self.read_files(&files).await?;
        if let Some(span) = &chunk.rows {
            let dtype = read.rows.schema().get(&span.column).cloned().unwrap_or(DataType::Null);
            let in_span = span.rows(&dtype)?;
            let (rows, what) =
                (std::mem::take(&mut read.rows), format!("{}: the rows of {}", self.describe, span.predicate()));
            read.rows = tidewater_core::compute::blocking("filtering a chunk's rows", move || {
                rows.lazy().filter(in_span).collect().map_err(Error::polars(what))
            })
            .await?;
            read.input_records = read.rows.height() as u64;
        }
        Ok(read)
    }

    async fn plan_files(&mut self) -> Result<SlicePlan> {
        let records: std::collections::HashMap<String, u64> = self
            .state()?
            .snapshot()
            .log_data()
            .iter()
            .map(|f| (f.path().into_owned(), f.num_records().unwrap_or(0) as u64))
            .collect();
        let chunks = self
            .plan()
            .await?
            .into_iter()
            .map(|read| {
                let spec: SnapshotChunk = serde_json::from_value(read.spec.clone())
                    .map_err(|e| Error::Internal(format!("chunk spec: {e}")))?;
                let rows = spec.files.iter().map(|f| records.get(&f.path).copied().unwrap_or(0)).sum();
                Ok(SliceChunk {
                    range: read.describe.clone(),
                    span: None,
                    files: spec.files.len(),
                    estimated_rows: rows,
                    estimated_bytes: spec.files.iter().map(|f| f.size).sum(),
                    read,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SlicePlan { version: Some(self.version()), column: None, chunks })
    }

    fn everything(&self) -> Scope {
        Scope::Versions { from: 0, to: self.version() }
    }

    fn sliced(&mut self) -> Option<&mut dyn SlicedSource> {
        Some(self)
    }
}

#[async_trait]
impl SlicedSource for DeltaSnapshotSource {
    async fn date_range(
        &mut self,
        column: Option<&str>,
    ) -> Result<Option<(String, chrono::NaiveDate, chrono::NaiveDate)>> {
        let sliced = self.sliced_files(column, Granularity::Day)?;
        let mut bounds = Vec::new();
        for f in &sliced.files {
            bounds.push(f.bounds.ok_or_else(|| {
                self.err(format!(
                    "data file {} has no statistics for `{}`: its dates are unknown, so say which with --from and --to",
                    f.file.path, sliced.column
                ))
            })?);
        }
        let first = bounds.iter().map(|b| b.0).min();
        let last = bounds.iter().map(|b| b.1).max();
        Ok(first.zip(last).map(|(first, last)| (sliced.column.clone(), first.date(), last.date())))
    }

    async fn plan_slices(&mut self, scope: &RangeScope) -> Result<SlicePlan> {
        let sliced = self.sliced_files(scope.column.as_deref(), scope.by)?;
        let chunks = scope
            .slices()
            .into_iter()
            .map(|(from, until)| self.chunk_of(&sliced, Span::new(&sliced.column, from, until)))
            .collect::<Result<Vec<_>>>()?;
        Ok(SlicePlan { version: Some(self.version()), column: Some(sliced.column), chunks })
    }

    async fn plan_versions(&mut self, from: u64, to: u64) -> Result<SlicePlan> {
        let latest = self.version();
        if from > to {
            return Err(Error::Unsupported(format!("--versions {from}..{to}: the first version is after the last")));
        }
        if to > latest {
            return Err(Error::Unsupported(format!(
                "--versions {from}..{to}: {} is at version {latest}",
                self.describe
            )));
        }
        let (files, positions, rows) = stream::commit_range(&self.table, &self.describe, from, to, latest).await?;
        let mut chunks = Vec::new();
        let per = self.files_per_chunk.max(1);
        for at in (0..files.len()).step_by(per) {
            let end = (at + per).min(files.len());
            let (first, last) = (positions[at].0, positions[end - 1].0);
            let range = format!("versions {first}..={last}, files {at}..{end} of {}", files.len());
            let spec = SnapshotChunk {
                version: latest,
                files: files[at..end].to_vec(),
                rows: None,
                positions: positions[at..end].to_vec(),
                snapshot_files: false,
            };
            chunks.push(SliceChunk {
                range: range.clone(),
                span: None,
                files: end - at,
                estimated_rows: rows[at..end].iter().sum(),
                estimated_bytes: files[at..end].iter().map(|f| f.size).sum(),
                read: Chunk {
                    describe: range,
                    spec: serde_json::to_value(spec).map_err(|e| Error::Internal(format!("chunk spec: {e}")))?,
                },
            });
        }
        Ok(SlicePlan { version: Some(latest), column: None, chunks })
    }

    async fn plan_span(&mut self, span: &Span, by: Granularity) -> Result<SliceChunk> {
        let sliced = self.sliced_files(Some(&span.column), by)?;
        self.chunk_of(&sliced, span.clone())
    }
}
