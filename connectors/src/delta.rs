//! A Delta table's snapshot as a bounded input: `tidewater batch` over a table, at its latest
//! version or `--version N`. Files are read with Polars from the table's object store; partition
//! values come from the log, typed by the table schema.

use async_trait::async_trait;
use deltalake::DeltaTable;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Cursor;
use tidewater_core::bridge::polars_dtype;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::location::table_url;
use tidewater_core::{BoundedSource, Chunk, Error, Result, Source, SourceBatch, SourceProvider};

/// A Delta table read as a bounded input.
#[derive(Clone, Debug)]
pub struct DeltaSnapshotSpec {
    pub table: String,
    /// Data files per chunk (one chunk = one commit of the batch run).
    pub files_per_chunk: usize,
}

impl DeltaSnapshotSpec {
    pub fn new(table: impl Into<String>) -> Self {
        DeltaSnapshotSpec { table: table.into(), files_per_chunk: 64 }
    }
}

pub struct DeltaSourceProvider {
    spec: DeltaSnapshotSpec,
}

impl DeltaSourceProvider {
    pub fn new(spec: DeltaSnapshotSpec) -> Self {
        DeltaSourceProvider { spec }
    }
}

#[async_trait]
impl SourceProvider for DeltaSourceProvider {
    fn describe(&self) -> String {
        format!("delta {}", self.spec.table)
    }

    async fn open_stream(&self, _state: Checkpoint) -> Result<Box<dyn Source>> {
        Err(Error::Unsupported(format!(
            "{}: streaming a Delta table's new commits is not available yet; read its snapshot with `tidewater batch`",
            self.describe()
        )))
    }

    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        let url = table_url(&self.spec.table)?;
        let delta_err = |op: &'static str| {
            let table = url.to_string();
            move |source| Error::Delta { table, op, source: Box::new(source) }
        };
        let mut table = DeltaTable::try_from_url(url.clone()).await.map_err(delta_err("open"))?;
        if let Some(v) = version {
            table.load_version(v).await.map_err(delta_err("load version"))?;
        }
        if table.version().is_none() {
            return Err(Error::Source { source_name: self.describe(), problem: "not a Delta table".into() });
        }
        Ok(Box::new(DeltaSnapshotSource {
            table,
            describe: self.describe(),
            files_per_chunk: self.spec.files_per_chunk,
        }))
    }
}

struct DeltaSnapshotSource {
    table: DeltaTable,
    describe: String,
    files_per_chunk: usize,
}

#[derive(Serialize, Deserialize)]
struct DataFile {
    path: String,
    partition_values: HashMap<String, Option<String>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotChunk {
    version: u64,
    files: Vec<DataFile>,
}

impl DeltaSnapshotSource {
    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe.clone(), problem: problem.to_string() }
    }

    fn state(&self) -> Result<&deltalake::table::state::DeltaTableState> {
        self.table.snapshot().map_err(|e| self.err(e))
    }
}

#[async_trait]
impl BoundedSource for DeltaSnapshotSource {
    async fn plan(&mut self) -> Result<Vec<Chunk>> {
        let state = self.state()?;
        let version = self.table.version().unwrap_or_default();
        let mut files: Vec<DataFile> = state
            .snapshot()
            .log_data()
            .iter()
            .map(|f| DataFile { path: f.path().into_owned(), partition_values: f.partition_values_map() })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
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
        let arrow = self.state()?.snapshot().arrow_schema();
        let partition_columns: Vec<String> = self.state()?.metadata().partition_columns().to_vec();
        let mut schema = Schema::default();
        for field in arrow.fields() {
            schema.insert(field.name().as_str().into(), polars_dtype(field)?);
        }
        let store = self.table.object_store();
        let mut rows = DataFrame::empty_with_schema(&schema);
        let mut input_records = 0u64;
        for file in &chunk.files {
            let path = Path::from_url_path(&file.path).map_err(|e| self.err(format!("{}: {e}", file.path)))?;
            let bytes = store
                .get(&path)
                .await
                .map_err(|e| self.err(format!("{}: {e}", file.path)))?
                .bytes()
                .await
                .map_err(|e| self.err(format!("{}: {e}", file.path)))?;
            let what = format!("{}: {}", self.describe, file.path);
            let (schema, partition_columns, values) =
                (schema.clone(), partition_columns.clone(), file.partition_values.clone());
            let df = tidewater_core::compute::blocking("reading a Delta data file", move || {
                let polars = |e: PolarsError| Error::Source { source_name: what.clone(), problem: e.to_string() };
                let df = ParquetReader::new(Cursor::new(bytes)).finish().map_err(polars)?;
                let columns: Vec<Expr> = schema
                    .iter()
                    .map(|(name, dtype)| {
                        if partition_columns.iter().any(|p| p == name.as_str()) {
                            // Partition values live in the log, as text, typed by the table schema.
                            match values.get(name.as_str()).cloned().flatten() {
                                Some(v) => lit(v).cast(dtype.clone()).alias(name.clone()),
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
            .await?;
            input_records += df.height() as u64;
            rows.vstack_mut_owned(df).map_err(|e| self.err(format!("{}: {e}", file.path)))?;
        }
        Ok(SourceBatch { rows, rejected: Vec::new(), input_records })
    }
}
