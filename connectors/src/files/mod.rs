//! A landing directory of files (NDJSON, CSV, Parquet), as a stream or a bounded input.
//!
//! # Stream
//! Files are taken once each, in the order they are discovered: each listing appends the files not
//! seen before, ordered by (modification time, path), to the source's file log in the checkpoint
//! (`sources/0/log/<first index>.json`). An offset is `{"files": n}`, the number of logged files
//! consumed, so a logged range always names the same files. At most `max_files_per_trigger` files
//! go into one batch. Paths with a part starting with `.` or `_` are ignored (in-flight uploads,
//! `_temporary/` staging).
//!
//! # Schema
//! Declared in the job, or inferred once from the first file and pinned in the checkpoint
//! (`sources/0/schema.json`), or in a batch run's plan.

pub(crate) mod read;
mod schema;

pub use read::{FileFormat, infer_schema, read_file};
pub use schema::{Column, ColumnType, InputSchema};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use tidewater_core::checkpoint::Checkpoint;
use tidewater_core::location::{object_store_at, parse_location};
use tidewater_core::scope::{SliceChunk, SlicePlan};
use tidewater_core::{BoundedSource, Chunk, Error, Offset, OffsetRange, Result, Source, SourceBatch, SourceProvider};

/// A landing directory, as configured.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub path: String,
    pub format: FileFormat,
    pub schema: Option<InputSchema>,
    pub max_files_per_trigger: usize,
}

impl FileSpec {
    pub const DEFAULT_MAX_FILES: usize = 1000;

    pub fn new(path: impl Into<String>, format: FileFormat) -> Self {
        FileSpec { path: path.into(), format, schema: None, max_files_per_trigger: Self::DEFAULT_MAX_FILES }
    }

    pub fn with_schema(mut self, schema: InputSchema) -> Self {
        self.schema = Some(schema);
        self
    }

    pub fn with_max_files_per_trigger(mut self, n: usize) -> Self {
        self.max_files_per_trigger = n.max(1);
        self
    }
}

/// One file of the landing directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the landing directory.
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// The landing directory opened for listing and reading.
#[derive(Clone)]
struct Landing {
    spec: FileSpec,
    store: Arc<dyn ObjectStore>,
    root: Path,
    describe: String,
}

impl Landing {
    fn open(spec: &FileSpec) -> Result<Self> {
        let url = parse_location(&spec.path)?;
        let (store, root) = object_store_at(&url)?;
        Ok(Landing { spec: spec.clone(), store, root, describe: format!("files {}", spec.path) })
    }

    /// Every file present now, unordered.
    async fn list(&self) -> Result<Vec<FileEntry>> {
        let listed: Vec<_> = match self.store.list(Some(&self.root)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.err(format!("cannot list: {e}"))),
        };
        let root_len = self.root.as_ref().len();
        // A hidden or staging name anywhere below the root (`.x`, `_temporary/…`) is skipped, as
        // Spark's file source does: writers stage files there before the rename that lands them.
        let hidden = |relative: &str| relative.split('/').any(|part| part.starts_with('.') || part.starts_with('_'));
        Ok(listed
            .into_iter()
            .map(|m| FileEntry {
                path: m.location.as_ref()[root_len..].trim_start_matches('/').to_string(),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .filter(|f| !f.path.is_empty() && !hidden(&f.path))
            .collect())
    }

    fn err(&self, problem: impl std::fmt::Display) -> Error {
        Error::Source { source_name: self.describe.clone(), problem: problem.to_string() }
    }

    async fn bytes(&self, file: &FileEntry) -> Result<bytes::Bytes> {
        let path = Path::from(format!("{}/{}", self.root, file.path));
        let got = self.store.get(&path).await.map_err(|e| self.err(format!("{}: {e}", file.path)))?;
        got.bytes().await.map_err(|e| self.err(format!("{}: {e}", file.path)))
    }

    fn origin(&self, file: &FileEntry) -> String {
        format!("{}/{}", self.spec.path.trim_end_matches('/'), file.path)
    }

    async fn infer(&self, file: &FileEntry) -> Result<InputSchema> {
        let bytes = self.bytes(file).await?;
        let (origin, format) = (self.origin(file), self.spec.format);
        let schema =
            tidewater_core::compute::blocking("inferring a schema", move || infer_schema(&bytes, &origin, format))
                .await?;
        tracing::info!(file = %self.origin(file), ?schema, "inferred schema");
        Ok(schema)
    }

    /// Reads files in order into one batch.
    async fn read(&self, files: &[FileEntry], schema: &InputSchema) -> Result<SourceBatch> {
        let mut out: Option<SourceBatch> = None;
        for file in files {
            let bytes = self.bytes(file).await?;
            let (origin, format, file_schema) = (self.origin(file), self.spec.format, schema.clone());
            let mut batch = tidewater_core::compute::blocking("reading a landing file", move || {
                read_file(&bytes, &origin, format, &file_schema)
            })
            .await?;
            match out.as_mut() {
                None => out = Some(batch),
                Some(acc) => {
                    acc.rows.vstack_mut_owned(batch.rows).map_err(|e| self.err(format!("{}: {e}", file.path)))?;
                    acc.rejected.append(&mut batch.rejected);
                    acc.input_records += batch.input_records;
                }
            }
        }
        Ok(out.unwrap_or_else(|| SourceBatch {
            rows: polars::prelude::DataFrame::empty_with_schema(&schema.polars_schema()),
            ..SourceBatch::default()
        }))
    }
}

/// Opens a [`FileSpec`] as a stream or a bounded input.
pub struct FileSourceProvider {
    spec: FileSpec,
}

impl FileSourceProvider {
    pub fn new(spec: FileSpec) -> Self {
        FileSourceProvider { spec }
    }
}

#[async_trait]
impl SourceProvider for FileSourceProvider {
    fn describe(&self) -> String {
        format!("files {}", self.spec.path)
    }

    async fn open_stream(&self, state: Checkpoint) -> Result<Box<dyn Source>> {
        Ok(Box::new(FileStreamSource::open(Landing::open(&self.spec)?, state).await?))
    }

    async fn open_bounded(&self, version: Option<u64>) -> Result<Box<dyn BoundedSource>> {
        if version.is_some() {
            return Err(Error::Unsupported(format!("{}: a landing directory has no versions", self.describe())));
        }
        Ok(Box::new(FileBoundedSource { landing: Landing::open(&self.spec)?, only: None, schema: None }))
    }
}

/// The stream view: the file log and the pinned schema live in the checkpoint.
struct FileStreamSource {
    landing: Landing,
    state: Checkpoint,
    log: Vec<FileEntry>,
    seen: HashSet<String>,
    schema: Option<InputSchema>,
}

fn files_offset(n: usize) -> Offset {
    Offset::new(serde_json::json!({ "files": n }))
}

impl FileStreamSource {
    async fn open(landing: Landing, state: Checkpoint) -> Result<Self> {
        let mut log = Vec::new();
        for first in state.list_numbered("log").await? {
            let entries: Vec<FileEntry> = state.get_json(&format!("log/{first}.json")).await?.unwrap_or_default();
            if first as usize != log.len() {
                return Err(Error::Source {
                    source_name: landing.describe.clone(),
                    problem: format!(
                        "{}/log/{first}.json does not follow the {} files logged before it",
                        state.url(),
                        log.len()
                    ),
                });
            }
            log.extend(entries);
        }
        let seen = log.iter().map(|f| f.path.clone()).collect();
        let schema = match &landing.spec.schema {
            Some(s) => Some(s.clone()),
            None => state.get_json("schema.json").await?,
        };
        Ok(FileStreamSource { landing, state, log, seen, schema })
    }

    fn position(&self, offset: Option<&Offset>) -> Result<usize> {
        let Some(offset) = offset else { return Ok(0) };
        offset
            .value()
            .get("files")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n as usize)
            .filter(|&n| n <= self.log.len())
            .ok_or_else(|| self.landing.err(format!("offset {offset} is not in this source's file log")))
    }

    /// Lists the directory and logs new files (durably, before any offset refers to them).
    async fn discover(&mut self) -> Result<()> {
        let mut new: Vec<FileEntry> =
            self.landing.list().await?.into_iter().filter(|f| !self.seen.contains(&f.path)).collect();
        if new.is_empty() {
            return Ok(());
        }
        new.sort_by(|a, b| (a.modified_ms, &a.path).cmp(&(b.modified_ms, &b.path)));
        if self.schema.is_none() {
            let schema = self.landing.infer(&new[0]).await?;
            self.state.put_json("schema.json", &schema).await?;
            self.schema = Some(schema);
        }
        self.state.create_json(&format!("log/{}.json", self.log.len()), &new).await?;
        tracing::debug!(new = new.len(), total = self.log.len() + new.len(), "discovered files");
        self.seen.extend(new.iter().map(|f| f.path.clone()));
        self.log.extend(new);
        Ok(())
    }
}

#[async_trait]
impl Source for FileStreamSource {
    async fn latest_offset(&mut self, start: Option<&Offset>, until: Option<&Offset>) -> Result<Option<Offset>> {
        // Bounded by `until` (available-now), every file up to it is logged already: no listing
        // per batch, whose cost would grow with the directory.
        if until.is_none() {
            self.discover().await?;
        }
        if self.log.is_empty() {
            return Ok(None);
        }
        let from = self.position(start)?;
        let mut end = (from + self.landing.spec.max_files_per_trigger).min(self.log.len());
        if until.is_some() {
            end = end.min(self.position(until)?);
        }
        Ok(Some(files_offset(end.max(from))))
    }

    async fn available_end(&mut self) -> Result<Option<Offset>> {
        self.discover().await?;
        Ok((!self.log.is_empty()).then(|| files_offset(self.log.len())))
    }

    async fn read(&mut self, range: &OffsetRange) -> Result<SourceBatch> {
        let (from, to) = (self.position(range.start.as_ref())?, self.position(Some(&range.end))?);
        let schema = self.schema.clone().ok_or_else(|| self.landing.err("no schema: nothing discovered yet"))?;
        self.landing.read(&self.log[from..to], &schema).await
    }

    async fn acknowledge(&mut self, _end: &Offset, _outcome: &tidewater_core::SinkOutcome) -> Result<()> {
        Ok(())
    }

    fn lanes(&mut self) -> Option<&mut dyn tidewater_core::Lanes> {
        None
    }

    fn history(&mut self) -> Option<&mut dyn tidewater_core::History> {
        Some(self)
    }
}

#[async_trait]
impl tidewater_core::History for FileStreamSource {
    async fn bounded_before(&mut self, end: Option<&Offset>) -> Result<Box<dyn BoundedSource>> {
        let read = self.position(end)?;
        let only = self.log[..read].iter().map(|f| f.path.clone()).collect();
        let schema = self.schema.clone();
        Ok(Box::new(FileBoundedSource { landing: self.landing.clone(), only: Some(only), schema }))
    }
}

/// The bounded view: every file present when the run is planned, in path order.
struct FileBoundedSource {
    landing: Landing,
    /// Beside a stream: only the files it had read at its cut ([`Source::bounded_before`]).
    only: Option<HashSet<String>>,
    /// Beside a stream: the schema it pinned, which its files are read with (not one inferred
    /// again from the file first in path order).
    schema: Option<InputSchema>,
}

impl FileBoundedSource {
    /// Every file in path order, in groups of `max_files_per_trigger`: each group's chunk and
    /// its files.
    async fn groups(&self) -> Result<Vec<(Chunk, Vec<FileEntry>)>> {
        let mut files = self.landing.list().await?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let Some(first) = files.first() else {
            return Ok(Vec::new());
        };
        let schema = match &self.landing.spec.schema {
            Some(s) => s.clone(),
            None => self.landing.infer(first).await?,
        };
        let total = files.len();
        let per = self.landing.spec.max_files_per_trigger;
        files
            .chunks(per)
            .enumerate()
            .map(|(k, group)| {
                let spec = serde_json::to_value(FileChunk { files: group.to_vec(), schema: schema.clone() })
                    .map_err(|e| Error::Internal(format!("chunk spec: {e}")))?;
                let first = k * per;
                let describe = format!("files {first}..{} of {total}", first + group.len());
                Ok((Chunk { describe, spec }, group.to_vec()))
            })
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct FileChunk {
    files: Vec<FileEntry>,
    schema: InputSchema,
}

#[async_trait]
impl BoundedSource for FileBoundedSource {
    async fn plan(&mut self) -> Result<Vec<Chunk>> {
        Ok(self.groups().await?.into_iter().map(|(chunk, _)| chunk).collect())
    }

    async fn plan_files(&mut self) -> Result<SlicePlan> {
        let chunks = self
            .groups()
            .await?
            .into_iter()
            .map(|(read, files)| SliceChunk {
                range: read.describe.clone(),
                span: None,
                files: files.len(),
                // Rows are not known before the files are read.
                estimated_rows: 0,
                estimated_bytes: files.iter().map(|f| f.size).sum(),
                read,
            })
            .collect();
        Ok(SlicePlan { version: None, column: None, chunks })
    }

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<SourceBatch> {
        let mut chunk: FileChunk = serde_json::from_value(chunk.spec.clone())
            .map_err(|e| self.landing.err(format!("unreadable chunk in the batch plan: {e}")))?;
        if let Some(only) = &self.only {
            chunk.files.retain(|f| only.contains(&f.path));
        }
        self.landing.read(&chunk.files, self.schema.as_ref().unwrap_or(&chunk.schema)).await
    }

    fn everything(&self) -> tidewater_core::Scope {
        tidewater_core::Scope::Files
    }

    fn sliced(&mut self) -> Option<&mut dyn tidewater_core::SlicedSource> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hidden_and_staging_paths_are_not_listed_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["a.json", "day=1/b.json", ".c.json", "_d.json", "_temporary/0/e.json", "day=2/.staging/f.json"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "{}\n").unwrap();
        }
        let landing = Landing::open(&FileSpec::new(dir.path().display().to_string(), FileFormat::Ndjson)).unwrap();
        let mut listed: Vec<String> = landing.list().await.unwrap().into_iter().map(|f| f.path).collect();
        listed.sort();
        assert_eq!(listed, ["a.json", "day=1/b.json"]);
    }
}
