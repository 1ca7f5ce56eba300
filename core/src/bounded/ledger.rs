//! A backfill's ledger, `<checkpoint>/backfills/<id>/chunks/<k>.json`: each chunk's state
//! (pending, running, done, failed), attempts, rows and error, for people and `backfill status`;
//! a running chunk's heartbeat, so another process can tell a chunk whose process died; and the
//! `cancel` mark.
//!
//! # Invariant
//! The table is the truth: a chunk is done when the sink table records its txn, whatever the
//! ledger says. The ledger's times come from the job's [`Clock`].

use crate::batch::BatchReport;
use crate::checkpoint::Checkpoint;
use crate::clock::Clock;
use crate::error::Result;
use crate::scope::SliceChunk;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Where a chunk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    Pending,
    Running,
    Done,
    Failed,
}

impl std::fmt::Display for ChunkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkState::Pending => "pending",
            ChunkState::Running => "running",
            ChunkState::Done => "done",
            ChunkState::Failed => "failed",
        })
    }
}

/// `chunks/<k>.json`, and a line of `backfill status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkStatus {
    pub chunk: usize,
    pub range: String,
    pub state: ChunkState,
    pub rows: Option<u64>,
    pub duration_ms: Option<u64>,
    /// The sink table version the chunk committed.
    pub version: Option<u64>,
    pub attempts: u32,
    pub error: Option<String>,
    /// While running: when its process last said it is alive (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<i64>,
    /// How often that process says so: another process reading the status judges staleness by
    /// the writer's interval, not its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_every_ms: Option<u64>,
    /// What the chunk's commit did (records in, rows out, filtered, quarantined, late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<BatchReport>,
}

impl ChunkStatus {
    /// Chunk `k`, not started.
    pub fn pending(k: usize, chunk: &SliceChunk) -> Self {
        ChunkStatus {
            chunk: k,
            range: chunk.range.clone(),
            state: ChunkState::Pending,
            rows: None,
            duration_ms: None,
            version: None,
            attempts: 0,
            error: None,
            heartbeat_ms: None,
            heartbeat_every_ms: None,
            report: None,
        }
    }

    /// The chunk committed what `report` says.
    pub fn done(&mut self, report: BatchReport) {
        self.state = ChunkState::Done;
        self.rows = Some(report.output_rows);
        self.version = report.table_version;
        self.error = None;
        self.report = Some(report);
    }
}

/// The ledger of one backfill.
#[derive(Clone)]
pub(crate) struct Ledger {
    dir: Checkpoint,
    clock: Arc<dyn Clock>,
    /// How often a running chunk records that its process is alive.
    heartbeat: Duration,
}

impl Ledger {
    pub fn new(dir: Checkpoint, clock: Arc<dyn Clock>, heartbeat: Duration) -> Self {
        Ledger { dir, clock, heartbeat }
    }

    /// Records `status` as chunk `status.chunk`'s line.
    pub async fn write(&self, status: &ChunkStatus) -> Result<()> {
        self.dir.put_json(&format!("chunks/{}.json", status.chunk), status).await
    }

    /// Records that `status`'s chunk is running, alive now.
    pub async fn running(&self, status: &mut ChunkStatus) -> Result<()> {
        status.state = ChunkState::Running;
        status.heartbeat_ms = Some(self.clock.now_ms());
        status.heartbeat_every_ms = Some(self.heartbeat.as_millis() as u64);
        self.write(status).await
    }

    /// Records `status` as alive again every heartbeat until `stopped` resolves (the chunk
    /// ended; its final status is written after this returns, and this never overwrites it).
    pub async fn beat(&self, mut status: ChunkStatus, backfill: &str, stopped: impl std::future::Future<Output = ()>) {
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.heartbeat) => {}
                () = &mut stopped => return,
            }
            status.heartbeat_ms = Some(self.clock.now_ms());
            if let Err(e) = self.write(&status).await {
                tracing::warn!(backfill, chunk = status.chunk, "could not record the chunk's heartbeat: {e}");
            }
        }
    }

    /// Each chunk's state: done when `committed` (the table) says so, else what the ledger says.
    /// A chunk whose process has not said it is alive for three heartbeats is pending again.
    pub async fn status(&self, chunks: &[SliceChunk], committed: &[bool]) -> Result<Vec<ChunkStatus>> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for (k, chunk) in chunks.iter().enumerate() {
            let ledger = self.dir.get_json::<ChunkStatus>(&format!("chunks/{k}.json")).await?;
            let mut status = ledger.unwrap_or_else(|| ChunkStatus::pending(k, chunk));
            if committed[k] {
                status.state = ChunkState::Done;
                status.error = None;
            } else if status.state == ChunkState::Done {
                // A ledger that says done without the commit: the commit was lost or the table
                // replaced; the table is the truth.
                status.state = ChunkState::Pending;
            } else if status.state == ChunkState::Running
                && let Some(seen) = status.heartbeat_ms
                && now - seen > 3 * status.heartbeat_every_ms.unwrap_or(self.heartbeat.as_millis() as u64) as i64
            {
                // Its process stopped (killed, its pod evicted) without a word.
                status.state = ChunkState::Pending;
                status.error = Some(format!(
                    "interrupted: its process stopped (no sign of life since {}); the next `backfill run` runs it again",
                    chrono::DateTime::from_timestamp_millis(seen).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ")
                ));
            }
            out.push(status);
        }
        Ok(out)
    }

    /// No new chunk of the backfill starts after this; running ones finish (or leave nothing).
    pub async fn cancel(&self) -> Result<()> {
        self.dir.put_json("cancel", &serde_json::json!({"cancelled_at_ms": self.clock.now_ms()})).await
    }

    pub async fn is_cancelled(&self) -> Result<bool> {
        Ok(self.dir.get_json::<serde_json::Value>("cancel").await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Chunk;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A clock the test moves.
    #[derive(Default)]
    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn chunk() -> SliceChunk {
        let read = Chunk { describe: "files 0..1 of 1".into(), spec: serde_json::json!({}) };
        SliceChunk { range: "2024-03-02".into(), span: None, files: 1, estimated_rows: 10, estimated_bytes: 100, read }
    }

    #[tokio::test]
    async fn a_running_chunk_silent_for_three_heartbeats_is_pending_again_and_the_table_says_done() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000_000)));
        let ledger = Ledger::new(
            Checkpoint::open(&dir.path().to_string_lossy()).unwrap(),
            clock.clone(),
            Duration::from_millis(200),
        );
        let chunks = [chunk()];
        let mut status = ChunkStatus::pending(0, &chunks[0]);
        ledger.running(&mut status).await.unwrap();
        clock.0.fetch_add(600, Ordering::SeqCst);
        let seen = ledger.status(&chunks, &[false]).await.unwrap();
        assert_eq!(seen[0].state, ChunkState::Running, "three heartbeats have not passed yet");
        clock.0.fetch_add(1, Ordering::SeqCst);
        let seen = ledger.status(&chunks, &[false]).await.unwrap();
        assert_eq!(seen[0].state, ChunkState::Pending);
        let error = seen[0].error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("interrupted: its process stopped (no sign of life since 2023-11-14T22:13:20Z)"),
            "{error}"
        );
        let seen = ledger.status(&chunks, &[true]).await.unwrap();
        assert_eq!((seen[0].state, seen[0].error.as_deref()), (ChunkState::Done, None), "the table is the truth");
        ledger.cancel().await.unwrap();
        assert!(ledger.is_cancelled().await.unwrap());
    }
}
