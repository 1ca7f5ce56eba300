//! The checkpoint location: a directory (local path or object-store URL) that makes a query
//! restartable, in the layout of Spark's streaming checkpoints.
//!
//! ```text
//! <checkpoint>/metadata           {"id": "<query id>", "name": "events"}   the txn app id, forever
//! <checkpoint>/offsets/<N>        write-ahead: batch N's offset range and context, before it runs
//! <checkpoint>/commits/<N>        written after batch N's Delta commit: what it wrote
//! <checkpoint>/sources/0/         the source's own state (a landing directory's file log)
//! <checkpoint>/state/<N>.parquet  an aggregation's state after batch N, before commits/N
//! <checkpoint>/dedup/<N>.parquet  the keys a deduplication has seen after batch N, the same way
//! <checkpoint>/batch/<target>/    `tidewater batch` runs: plan.json (chunks + app id)
//! ```
//!
//! # Recovery rule
//! On start, let N be the highest batch in `offsets/`. If `commits/N` is missing, batch N is
//! replayed with exactly the logged range and context (the sink skips it if its Delta commit
//! already happened). Otherwise the next batch is N+1 and starts where N ended. Entries are created
//! with put-if-absent, so a second process on the same checkpoint fails instead of interleaving.

use crate::context::BatchContext;
use crate::error::{Error, Result};
use crate::id::{BatchId, OffsetRange, QueryId};
use crate::location::{object_store_at, parse_location};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A directory of JSON entries under a URL.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

/// `metadata`: the query's identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryMetadata {
    pub id: QueryId,
    pub name: String,
}

/// `offsets/<N>`: what batch N reads and the context it runs with, written before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetEntry {
    pub v: u32,
    pub range: OffsetRange,
    pub context: BatchContext,
}

/// `commits/<N>`: what batch N wrote, written after its Delta commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitEntry {
    pub v: u32,
    /// The sink table's version holding the batch (`None` when it was already committed before a
    /// crash and the replay skipped it).
    pub table_version: Option<u64>,
    pub input_records: u64,
    pub output_rows: u64,
    pub filtered: u64,
    pub quarantined: u64,
    /// Rows set aside as late (entries written before watermarks existed read as 0).
    #[serde(default)]
    pub late: u64,
    pub next_watermark_ms: Option<i64>,
    /// Groups in the aggregation's state after the batch (`state/<N>.parquet`); `None` for a
    /// query without state.
    #[serde(default)]
    pub state_rows: Option<u64>,
    /// That state's size as written (Parquet bytes).
    #[serde(default)]
    pub state_bytes: Option<u64>,
    /// The fingerprint of the aggregation that wrote that state ([`crate::aggregate::Aggregation::fingerprint`]).
    #[serde(default)]
    pub state_of: Option<String>,
    /// Keys in the deduplication's state after the batch (`dedup/<N>.parquet`).
    #[serde(default)]
    pub dedup_rows: Option<u64>,
}

impl Checkpoint {
    /// Opens (without creating anything yet) the checkpoint at a local path or URL.
    pub fn open(location: &str) -> Result<Self> {
        let url = parse_location(location)?;
        let (store, root) = object_store_at(&url)?;
        Ok(Checkpoint { store, root, url: url.to_string() })
    }

    /// A sub-directory, for a source's state or a batch run.
    pub fn child(&self, name: &str) -> Checkpoint {
        let mut root = self.root.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            root = root.join(part);
        }
        let url = format!("{}/{}", self.url.trim_end_matches('/'), name);
        Checkpoint { store: self.store.clone(), root, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, rel: &str) -> Path {
        rel.split('/').fold(self.root.clone(), |p, part| p.join(part))
    }

    fn display(&self, rel: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), rel)
    }

    /// Reads a JSON entry; `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        let bytes = match self.store.get(&self.path(rel)).await {
            Ok(got) => got.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        };
        let bytes =
            bytes.map_err(|source| Error::Store { path: self.display(rel), op: "get", source: Box::new(source) })?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::CorruptCheckpoint { path: self.display(rel), source })
    }

    /// Writes a JSON entry that must not exist yet (put-if-absent).
    pub async fn create_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.put(rel, value, opts).await {
            Err(Error::Store { source, .. }) if matches!(*source, object_store::Error::AlreadyExists { .. }) => {
                Err(Error::ConcurrentQuery { path: self.display(rel) })
            }
            other => other,
        }
    }

    /// Reads an entry's bytes; `None` when it does not exist.
    pub async fn get_bytes(&self, rel: &str) -> Result<Option<bytes::Bytes>> {
        let got = match self.store.get(&self.path(rel)).await {
            Ok(got) => got.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        };
        got.map(Some).map_err(|source| Error::Store { path: self.display(rel), op: "get", source: Box::new(source) })
    }

    /// Writes (or atomically replaces) an entry's bytes.
    pub async fn put_bytes(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.store.put(&self.path(rel), PutPayload::from(bytes)).await.map(|_| ()).map_err(|source| Error::Store {
            path: self.display(rel),
            op: "put",
            source: Box::new(source),
        })
    }

    /// Writes (or atomically replaces) a JSON entry.
    pub async fn put_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        self.put(rel, value, PutOptions::default()).await
    }

    async fn put<T: Serialize>(&self, rel: &str, value: &T, opts: PutOptions) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Internal(format!("serialising {}: {e}", self.display(rel))))?;
        self.store
            .put_opts(&self.path(rel), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|source| Error::Store { path: self.display(rel), op: "put", source: Box::new(source) })
    }

    /// The names of the directories directly under this location (none if it does not exist).
    pub async fn list_dirs(&self) -> Result<Vec<String>> {
        match self.store.list_with_delimiter(Some(&self.root)).await {
            Ok(listed) => Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(String::from)).collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(source) => Err(Error::Store { path: self.url.clone(), op: "list", source: Box::new(source) }),
        }
    }

    /// The numeric file names directly under `dir`, ascending.
    pub async fn list_numbered(&self, dir: &str) -> Result<Vec<u64>> {
        self.list_numbered_with(dir, ".json").await
    }

    async fn list_numbered_with(&self, dir: &str, suffix: &str) -> Result<Vec<u64>> {
        let prefix = self.path(dir);
        let listed: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(|source| Error::Store {
            path: self.display(dir),
            op: "list",
            source: Box::new(source),
        })?;
        let mut numbers: Vec<u64> =
            listed.iter().filter_map(|meta| meta.location.filename()?.strip_suffix(suffix)?.parse().ok()).collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// The query's id, created (with `name`) on first use.
    pub async fn query_metadata(&self, name: &str) -> Result<QueryMetadata> {
        if let Some(meta) = self.get_json::<QueryMetadata>("metadata").await? {
            return Ok(meta);
        }
        let meta = QueryMetadata { id: QueryId::random(), name: name.to_string() };
        match self.create_json("metadata", &meta).await {
            Ok(()) => Ok(meta),
            // Lost a race with another starter: theirs is the id.
            Err(Error::ConcurrentQuery { .. }) => self
                .get_json("metadata")
                .await?
                .ok_or_else(|| Error::Internal("metadata vanished after a create race".into())),
            Err(e) => Err(e),
        }
    }

    pub async fn latest_offsets(&self) -> Result<Option<(BatchId, OffsetEntry)>> {
        self.latest("offsets").await
    }

    pub async fn latest_commit(&self) -> Result<Option<(BatchId, CommitEntry)>> {
        self.latest("commits").await
    }

    async fn latest<T: DeserializeOwned>(&self, dir: &str) -> Result<Option<(BatchId, T)>> {
        let Some(&n) = self.list_numbered(dir).await?.last() else {
            return Ok(None);
        };
        let rel = format!("{dir}/{n}.json");
        let entry = self
            .get_json(&rel)
            .await?
            .ok_or_else(|| Error::Internal(format!("{} listed but not found", self.display(&rel))))?;
        Ok(Some((BatchId::new(n), entry)))
    }

    /// Write-ahead: records batch `id`'s range and context before anything is read.
    pub async fn write_offsets(&self, id: BatchId, entry: &OffsetEntry) -> Result<()> {
        self.create_json(&format!("offsets/{}.json", id.get()), entry).await
    }

    /// Records that batch `id` is committed to the sink.
    pub async fn write_commit(&self, id: BatchId, entry: &CommitEntry) -> Result<()> {
        self.create_json(&format!("commits/{}.json", id.get()), entry).await
    }

    /// Deletes batch `id`'s offset and commit entries (absent ones are fine): two deletes, whatever
    /// the log's length.
    pub async fn forget(&self, id: BatchId) -> Result<()> {
        for dir in ["commits", "offsets"] {
            self.delete(&format!("{dir}/{}.json", id.get())).await?;
        }
        for kind in STATES {
            self.delete(&state_entry(kind, id)).await?;
        }
        Ok(())
    }

    /// Deletes an entry; one already gone is fine.
    async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store { path: self.display(rel), op: "delete", source: Box::new(source) }),
        }
    }

    /// Deletes the offset and commit entries of batches before `keep_from`, keeping the log's cost
    /// bounded (Spark's `minBatchesToRetain`). Recovery only needs the latest entries.
    pub async fn purge_before(&self, keep_from: BatchId) -> Result<usize> {
        let mut deleted = 0;
        for dir in ["commits", "offsets"] {
            for n in self.list_numbered(dir).await?.into_iter().filter(|&n| n < keep_from.get()) {
                self.delete(&format!("{dir}/{n}.json")).await?;
                deleted += 1;
            }
        }
        for kind in STATES {
            for n in self.list_numbered_with(kind, ".parquet").await?.into_iter().filter(|&n| n < keep_from.get()) {
                self.delete(&state_entry(kind, BatchId::new(n))).await?;
            }
        }
        Ok(deleted)
    }
}

/// The kinds of state a query keeps per batch: an aggregation's (`state`), a deduplication's
/// (`dedup`).
pub const STATES: [&str; 2] = ["state", "dedup"];

/// Where the state of `kind` after batch `id` is kept.
pub fn state_entry(kind: &str, id: BatchId) -> String {
    format!("{kind}/{}.parquet", id.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Mode;
    use crate::id::Offset;

    #[tokio::test]
    async fn offsets_are_write_once_and_the_latest_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().to_str().unwrap()).unwrap();
        assert!(cp.latest_offsets().await.unwrap().is_none());
        for n in [0u64, 1, 10] {
            let entry = OffsetEntry {
                v: 1,
                range: OffsetRange { start: None, end: Offset::new(serde_json::json!(n)) },
                context: BatchContext::new(BatchId::new(n), Mode::Stream, 1_000),
            };
            cp.write_offsets(BatchId::new(n), &entry).await.unwrap();
        }
        let (id, entry) = cp.latest_offsets().await.unwrap().unwrap();
        assert_eq!(id, BatchId::new(10), "numeric, not lexicographic order");
        let again = cp.write_offsets(id, &entry).await.unwrap_err();
        assert!(matches!(again, Error::ConcurrentQuery { .. }), "{again}");
        cp.write_commit(
            BatchId::new(10),
            &CommitEntry {
                v: 1,
                table_version: Some(3),
                input_records: 1,
                output_rows: 1,
                filtered: 0,
                quarantined: 0,
                late: 0,
                next_watermark_ms: None,
                state_rows: None,
                state_bytes: None,
                state_of: None,
                dedup_rows: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(cp.purge_before(BatchId::new(10)).await.unwrap(), 2, "offsets 0 and 1 go");
        assert_eq!(cp.list_numbered("offsets").await.unwrap(), [10]);
        cp.forget(BatchId::new(3)).await.unwrap();
        assert_eq!(cp.list_numbered("offsets").await.unwrap(), [10], "forgetting an absent batch is fine");
        assert_eq!(cp.latest_commit().await.unwrap().unwrap().0, BatchId::new(10), "recovery still finds batch 10");
        let q1 = cp.query_metadata("q").await.unwrap();
        let q2 = cp.query_metadata("q").await.unwrap();
        assert_eq!(q1.id, q2.id, "the query id is stable across opens");
    }
}
