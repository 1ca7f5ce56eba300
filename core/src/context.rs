//! What a transform may know about the piece of input it is given.
//!
//! A transform never reads the wall clock: the batch's logical time is chosen once, when the batch is
//! planned, and written to the offset log (or the batch plan), so a replay sees the same context and
//! produces the same rows.

use crate::id::BatchId;
use serde::{Deserialize, Serialize};

/// Whether the transform runs inside a stream (micro-batches) or a bounded batch run (chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Stream,
    Batch,
}

/// The context of one micro-batch or chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchContext {
    pub batch_id: BatchId,
    pub mode: Mode,
    /// Logical time of the batch, milliseconds since the Unix epoch, recorded when it was planned.
    pub batch_time_ms: i64,
    /// Event-time watermark in milliseconds, when the job has one.
    pub watermark_ms: Option<i64>,
}

impl BatchContext {
    pub fn new(batch_id: BatchId, mode: Mode, batch_time_ms: i64) -> Self {
        BatchContext { batch_id, mode, batch_time_ms, watermark_ms: None }
    }

    pub fn batch_time_ms(&self) -> i64 {
        self.batch_time_ms
    }
}
