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

/// Bounds the memory the allocator keeps for the whole process: one arena shared by every thread
/// (glibc's `M_ARENA_MAX`), so what one thread frees is reused by the next instead of staying in
/// the freeing thread's own arena. Call before the threads start; a no-op elsewhere.
pub fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Shares the machine's cores among `units` pieces of work that run at once and each compute
/// with Polars (a backfill's chunks): Polars' thread pool gets cores / units threads, at least
/// one. N chunks on N cores then each compute on one thread, as Spark runs one task per core,
/// instead of N pools of N threads taking turns (measured: 11% fewer CPU-seconds for
/// `bench backfill --parallel 2` on two cores). `POLARS_MAX_THREADS`, when set, wins. Call before
/// any Polars work and before the process starts other threads: Polars reads the variable once,
/// from the environment.
pub fn share_cores(units: usize) {
    if units <= 1 || std::env::var_os(POLARS_THREADS).is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = (cores / units).max(1);
    // SAFETY: the caller runs this before any other thread exists, so nothing reads the
    // environment while it changes.
    unsafe { std::env::set_var(POLARS_THREADS, threads.to_string()) }
}

/// The environment variable Polars sizes its thread pool by.
const POLARS_THREADS: &str = "POLARS_MAX_THREADS";

/// This process's resident memory now, in bytes (Linux's `/proc/self/statm`); `None` where the
/// system does not tell.
pub fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The peak of this process's resident memory while some work runs, sampled every millisecond
/// by a thread of its own (so nothing the process's own peak accounting keeps is reset).
pub struct MemoryWatch {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<u64>>,
}

impl MemoryWatch {
    /// Starts watching; `None` where the system does not tell the resident memory.
    pub fn start() -> Option<MemoryWatch> {
        let first = resident_memory()?;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let sampler = std::thread::Builder::new()
            .name("tidewater-memory-watch".into())
            .spawn(move || {
                let mut peak = first;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(resident_memory().unwrap_or(0));
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                peak.max(resident_memory().unwrap_or(0))
            })
            .ok()?;
        Some(MemoryWatch { done, sampler: Some(sampler) })
    }

    /// Stops watching and returns the peak seen, in bytes.
    pub fn peak(mut self) -> u64 {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.take().and_then(|s| s.join().ok()).unwrap_or(0)
    }
}

impl Drop for MemoryWatch {
    /// A watch dropped without [`MemoryWatch::peak`] (an error on the way) stops its sampler.
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_watch_sees_a_passing_allocation() {
        let before = super::resident_memory().unwrap();
        let watch = super::MemoryWatch::start().unwrap();
        let big = vec![1u8; 64 << 20];
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(big);
        let peak = watch.peak();
        assert!(peak >= before + (60 << 20), "{before} {peak}");
        assert!(super::resident_memory().unwrap() < peak, "the allocation is gone, the peak is kept");
    }
}
