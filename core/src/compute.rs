//! Where CPU-bound Polars work runs: on tokio's blocking pool, never on an async worker.
//!
//! Polars' engine blocks on its own runtime with `tokio::task::block_in_place` when it finds
//! itself inside one, which panics on a current-thread runtime and stalls other tasks on a
//! multi-thread one. Parsing and transforms go through [`blocking`] instead.

use crate::error::{Error, Result};

/// Runs `work` on the blocking pool and waits for it.
pub async fn blocking<T, F>(what: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("{what}: the worker thread failed: {e}")))?
}
