//! When the engine plans the next batch, and when it stops.

use std::time::Duration;

/// Structured Streaming's triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A batch every `interval` (or as soon as the previous one ends, if it took longer) until
    /// stopped.
    ProcessingTime(Duration),
    /// Everything available at start, as one batch, then stop.
    Once,
    /// Everything available at start, in batches that respect the source's admission limits, then
    /// stop (Spark's `Trigger.AvailableNow`).
    AvailableNow,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::ProcessingTime(d) => write!(f, "processing-time every {d:?}"),
            Trigger::Once => f.write_str("once"),
            Trigger::AvailableNow => f.write_str("available-now"),
        }
    }
}
