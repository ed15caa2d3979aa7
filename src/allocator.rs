//! The process's allocator, and giving back what it keeps.
//!
//! mimalloc for every binary built on the crate (server, tests, benchmarks). With the system
//! allocator, each ingest request's megabyte-sized buffers came as fresh mappings, page-faulted on
//! first touch: encoding a 10,000-reading batch for the log took 78 ns a reading, 7 ns once such
//! memory was reused.
use std::sync::{Arc, Mutex};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns to the system the memory the allocator holds free. mimalloc returns freed memory a
/// while after it is freed, but only when some thread allocates again; after a burst (a flush of
/// millions of readings, a long export) the threads that did it go idle and what they freed stays
/// resident.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers; it walks the calling thread's heap and the shared
    // arenas under mimalloc's own locks.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Runs `work` (a report's or a flush's polars work on a blocking thread), then gives back what
/// the thread holds free. Tokio keeps a blocking thread for the next task, and the frames `work`
/// built and dropped stayed resident on it: in the rollups benchmark (60 days), 1,036 MB once
/// loaded and 1,328 MB at an export's peak, against 369 and 719 MB with this, at the same speed.
pub fn released_after<T>(work: impl FnOnce() -> T) -> T {
    let out = work();
    release_free_memory();
    out
}

/// The HTTP workers' runtimes, each on a thread of its own. A thread's free pages can only be
/// given back by that thread, and a worker that decoded large bodies or rendered an export keeps
/// them until it collects.
#[derive(Debug, Clone, Default)]
pub struct Workers(Arc<Mutex<Vec<tokio::runtime::Handle>>>);

impl Workers {
    /// Called on each worker's thread as it starts.
    pub fn join_current(&self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(handle);
        }
    }

    fn release(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let handles = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let release = || async { release_free_memory() };
        handles.iter().map(|h| h.spawn(release())).collect()
    }
}

/// Every `interval`, gives back what the allocator holds free on the threads that do the heavy
/// work and then idle: each HTTP worker (bodies, answers), each thread of polars' pool and of
/// rayon's (flushes, scans, reports), and a blocking thread, whose collection also purges the
/// arenas every thread shares.
pub fn spawn_releaser(
    interval: std::time::Duration,
    workers: Workers,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            // A worker that has stopped answers with an error: nothing to release there.
            let _ = futures_util::future::join_all(workers.release()).await;
            let released = tokio::task::spawn_blocking(|| {
                polars_core::runtime::RAYON.with(|pool| pool.broadcast(|_| release_free_memory()));
                rayon::broadcast(|_| release_free_memory());
                release_free_memory();
            });
            if let Err(error) = released.await {
                tracing::warn!(error = %error, "releasing free memory failed");
            }
        }
    })
}
