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

/// Hands the memory the allocator keeps after a large piece of work back to the system (glibc's
/// `malloc_trim`: freed memory of every arena, not only the top of the heap), so a memory limit
/// holds for the process and not only for the live data. A no-op elsewhere.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
