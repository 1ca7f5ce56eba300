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

use crate::error::{Error, Result};
use crate::id::{BatchId, QueryId};
use crate::location::{object_store_at, parse_location};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod log;

pub use log::{DoneEntry, OffsetEntry, Recovery, STATES, state_entry};

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

    pub(crate) async fn list_numbered_with(&self, dir: &str, suffix: &str) -> Result<Vec<u64>> {
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

    pub(crate) async fn latest<T: DeserializeOwned>(&self, dir: &str) -> Result<Option<(BatchId, T)>> {
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

    /// Deletes an entry; one already gone is fine.
    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store { path: self.display(rel), op: "delete", source: Box::new(source) }),
        }
    }
}
