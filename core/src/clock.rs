//! Time and stopping, injected: the [`Clock`] every time-dependent path reads (batch contexts,
//! backfill plans and heartbeats), so tests fix it instead of sleeping; and the [`Stop`] signal a
//! running stream or backfill checks between batches.

use std::sync::Arc;
use tokio::sync::watch;

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
