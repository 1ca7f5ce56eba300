//! When the engine plans the next batch, and when it stops; plus the stop signal and the clock.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// A request to stop after the batch in flight. Cloned handles share one signal.
#[derive(Clone, Debug)]
pub struct Stop(Arc<watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(watch::channel(false).0))
    }
}

impl Stop {
    pub fn request(&self) {
        self.0.send_replace(true);
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested.
    pub async fn requested(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so `wait_for` can only end by seeing `true`.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// The engine's source of time for batch contexts. Injected so tests can fix it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}
