//! A stream's states between batches (an aggregation's groups, a deduplication's keys seen),
//! kept in the checkpoint as `<kind>/<N>.parquet`, the state after batch N, and in memory for the
//! next batch.
//!
//! # Invariant
//! The state after batch N is written before `commits/N` records N as done, so a replay of batch
//! N+1 (or of N itself) starts from the state of the batch before it, never from a later one.

use crate::checkpoint::{Checkpoint, DoneEntry, state_entry};
use crate::compute::blocking;
use crate::error::{Error, Result};
use crate::id::BatchId;
use crate::step::States;
use polars::prelude::DataFrame;
use std::collections::HashMap;

/// The kinds of state, by the checkpoint directory they live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StateKind {
    /// An aggregation's groups: `state/`.
    Groups,
    /// A deduplication's keys seen: `dedup/`.
    Seen,
}

impl StateKind {
    fn dir(self) -> &'static str {
        match self {
            StateKind::Groups => "state",
            StateKind::Seen => "dedup",
        }
    }
}

/// The sizes of the states a batch saved, for its report and its `commits/N` entry.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Saved {
    pub groups_rows: Option<u64>,
    pub groups_bytes: Option<u64>,
    pub seen_rows: Option<u64>,
}

impl Saved {
    pub fn any(&self) -> bool {
        self.groups_rows.is_some() || self.seen_rows.is_some()
    }
}

/// The states of one query.
pub(crate) struct StateStore {
    checkpoint: Checkpoint,
    /// The fingerprint of the query's aggregation: a state written by another is refused.
    aggregation: Option<String>,
    /// The state of each kind after the last batch this process ran.
    kept: HashMap<StateKind, (BatchId, DataFrame)>,
}

impl StateStore {
    pub fn new(checkpoint: Checkpoint, aggregation: Option<String>) -> Self {
        StateStore { checkpoint, aggregation, kept: HashMap::new() }
    }

    /// The aggregation's groups after the last batch this process ran.
    pub fn latest_groups(&self) -> Option<&DataFrame> {
        self.kept.get(&StateKind::Groups).map(|(_, state)| state)
    }

    /// The states after the batch before `id` of the kinds the query keeps.
    pub async fn before(&mut self, id: BatchId, groups: bool, seen: bool) -> Result<States> {
        Ok(States {
            groups: if groups { self.read_before(StateKind::Groups, id).await? } else { None },
            seen: if seen { self.read_before(StateKind::Seen, id).await? } else { None },
        })
    }

    /// Writes the states after batch `id` (before `commits/<id>`) and keeps them for the next
    /// batch.
    pub async fn save(&mut self, id: BatchId, states: States) -> Result<Saved> {
        let mut saved = Saved::default();
        if let Some(groups) = states.groups {
            saved.groups_rows = Some(groups.height() as u64);
            saved.groups_bytes = Some(self.write(StateKind::Groups, id, groups).await?);
        }
        if let Some(seen) = states.seen {
            saved.seen_rows = Some(seen.height() as u64);
            self.write(StateKind::Seen, id, seen).await?;
        }
        Ok(saved)
    }

    /// The state of `kind` after the batch before `id`: kept in memory from that batch, or read
    /// from the checkpoint (after a restart). `None` before the first batch.
    async fn read_before(&mut self, kind: StateKind, id: BatchId) -> Result<Option<DataFrame>> {
        let Some(before) = id.get().checked_sub(1).map(BatchId::new) else { return Ok(None) };
        if let Some((at, state)) = self.kept.remove(&kind)
            && at == before
        {
            return Ok(Some(state));
        }
        let rel = state_entry(kind.dir(), before);
        let recorded = self.checkpoint.get_json::<DoneEntry>(&format!("commits/{}.json", before.get())).await?;
        if kind == StateKind::Groups
            && let Some(theirs) = recorded.as_ref().and_then(|c| c.state_of.clone())
            && Some(&theirs) != self.aggregation.as_ref()
        {
            return Err(Error::Unsupported(format!(
                "{}/{rel}: the state was written by another query (its SQL or mode changed since batch {before}); a changed aggregation cannot go on from it: stream it into a new checkpoint and table, or backfill",
                self.checkpoint.url()
            )));
        }
        let Some(bytes) = self.checkpoint.get_bytes(&rel).await? else {
            let rows = recorded.and_then(|c| match kind {
                StateKind::Groups => c.state_rows,
                StateKind::Seen => c.dedup_rows,
            });
            return match rows {
                Some(rows) => Err(Error::Internal(format!(
                    "{}/{rel}: batch {before} recorded a state of {rows} rows, and it is gone; the query cannot go on without it",
                    self.checkpoint.url()
                ))),
                // A query that had no such state before (its first stateful batch).
                None => Ok(None),
            };
        };
        let what = format!("{}/{rel}", self.checkpoint.url());
        blocking("reading a state", move || {
            use polars::prelude::SerReader as _;
            polars::prelude::ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .map(Some)
                .map_err(Error::polars(format!("reading {what}")))
        })
        .await
    }

    /// Writes the state of `kind` after batch `id` and keeps it. Returns its size in bytes.
    async fn write(&mut self, kind: StateKind, id: BatchId, state: DataFrame) -> Result<u64> {
        let rel = state_entry(kind.dir(), id);
        let (kept, what) = (state.clone(), format!("{}/{rel}", self.checkpoint.url()));
        let bytes = blocking("writing a state", move || {
            let mut state = state;
            let mut bytes = Vec::new();
            polars::prelude::ParquetWriter::new(&mut bytes)
                .finish(&mut state)
                .map_err(Error::polars(format!("writing {what}")))?;
            Ok(bytes)
        })
        .await?;
        let size = bytes.len() as u64;
        self.checkpoint.put_bytes(&rel, bytes).await?;
        self.kept.insert(kind, (id, kept));
        Ok(size)
    }
}
