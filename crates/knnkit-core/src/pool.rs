//! Thread pools, one per requested thread count, created on first use and reused.
//!
//! knnkit never uses rayon's global pool: a pool is keyed by (thread count, process id), so a
//! forked child builds its own threads instead of waiting on workers that only exist in the
//! parent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use rayon::ThreadPool;

use crate::error::{Error, Result};

/// Number of threads for `n_jobs` (scikit-learn's convention): None, 0 or -1 mean all cores,
/// -2 all but one, and so on. The result is capped at the available cores: more threads than
/// cores only add start-up cost and contention (`n_jobs=10000` would otherwise start 10,000
/// threads), and never less than one.
pub fn resolve_threads(n_jobs: Option<i64>) -> usize {
    // available_parallelism reads cgroup files: ask once.
    static CORES: OnceLock<i64> = OnceLock::new();
    let cores =
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as i64);
    let n = match n_jobs {
        None | Some(0) => cores,
        Some(j) if j < 0 => cores.saturating_add(1).saturating_add(j),
        Some(j) => j,
    };
    n.clamp(1, cores.max(1)) as usize
}

/// Pools by (thread count, process id).
type Pools = Mutex<HashMap<(usize, u32), Arc<ThreadPool>>>;

/// Runs `f` inside a pool of `threads` threads.
pub fn install<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let key = (threads.max(1), std::process::id());
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Pools inherited through fork() have no threads in this process: forget them (dropping
        // would signal workers that do not exist here).
        let stale: Vec<_> = pools.keys().filter(|k| k.1 != key.1).copied().collect();
        for k in stale {
            std::mem::forget(pools.remove(&k));
        }
        pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(key.0)
                        .thread_name(|i| format!("knnkit-{i}"))
                        .build()
                        .expect("failed to start a thread pool"),
                )
            })
            .clone()
    };
    pool.install(f)
}

/// Runs `work` in a pool of `threads` threads while the calling thread polls `interrupt` every
/// `poll`; when it returns true, the flag handed to `work` is raised (work checks it between
/// tasks) and [`Error::Interrupted`] is returned. Without an interrupt hook the work runs
/// directly.
pub fn run_interruptible<R: Send>(
    threads: usize,
    interrupt: Option<&(dyn Fn() -> bool + Sync)>,
    work: impl FnOnce(&AtomicBool) -> R + Send,
) -> Result<R> {
    let stop = AtomicBool::new(false);
    let Some(interrupt) = interrupt else {
        return Ok(install(threads, || work(&stop)));
    };
    let (tx, rx) = mpsc::channel();
    let out = std::thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let _ = tx.send(install(threads, || work(stop)));
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => return Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !stop.load(Ordering::Relaxed) && interrupt() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    });
    match out {
        Some(r) if !stop.load(Ordering::Relaxed) => Ok(r),
        Some(_) => Err(Error::Interrupted),
        None => Err(Error::param(
            "worker",
            "a finished search",
            "a worker that stopped early",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_capped_at_the_cores() {
        let cores = resolve_threads(None);
        assert!(cores >= 1);
        assert_eq!(resolve_threads(Some(10_000)), cores);
        assert_eq!(resolve_threads(Some(i64::MIN)), 1);
        assert_eq!(resolve_threads(Some(1)), 1);
    }
}
