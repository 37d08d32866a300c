//! Connection workers: one thread per CPU, each running its own single-threaded tokio runtime,
//! as nginx and Envoy run a worker per core. A listener accepts on the main runtime and hands
//! each connection to the worker serving the fewest; that connection's requests, the tasks they
//! spawn and the upstream connections they use (each worker has its own pool, see
//! [`crate::upstream::UpstreamClient`]) then all run on that one thread. Nothing crosses threads
//! on the way through the proxy: no work stealing, no wake-ups of another core, no contended
//! locks in the HTTP/2 client. Measured on the benchmark's small GETs: 20–25 % less CPU per
//! request than one multi-threaded runtime serving everything.
//!
//! The count is `--workers N`, or for `--workers auto` `TOKIO_WORKER_THREADS` when set, else
//! half the CPUs this process may use, rounded up (`available_parallelism`, which honours CPU
//! affinity and cgroup quotas). Half, because the proxy rarely has the machine to itself: a
//! localhost proxy or a sidecar shares it with its client, and a proxied request's kernel
//! work (the sockets on both sides, the loopback or NIC delivery) is as much again as the
//! worker's own. Measured on 2 vCPUs with client, proxy and endpoint on the machine (the
//! benchmark): one worker served as many small GETs as two or up to 35 % more, and 13-19 %
//! more 64 KiB POSTs, at less CPU per request; bulks the same.

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

static COUNT: OnceLock<usize> = OnceLock::new();

/// The most workers `--workers` accepts.
pub const MAX: usize = 1024;

/// `--workers`: a count, or `auto` (`None`).
pub fn parse(text: &str) -> Result<Option<usize>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "--workers `{text}` must be `auto` or a number from 1 to {MAX}"
        )),
    }
}

/// Sets how many workers the process runs: `Some(n)` for `--workers n`, `None` for `auto`.
/// Takes effect only before the count is first used (the first listener or client); returns
/// the count in force.
pub fn configure(workers: Option<usize>) -> usize {
    *COUNT.get_or_init(|| workers.unwrap_or_else(auto))
}

/// How many workers the process runs (or will run once a listener starts).
pub fn count() -> usize {
    *COUNT.get_or_init(auto)
}

/// `--workers auto`: `TOKIO_WORKER_THREADS` when set, else half the usable CPUs, rounded up.
fn auto() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=MAX).contains(n))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| half_of(n.get())))
}

/// Half of `cpus`, rounded up: 1 of 1 or 2, 2 of 3 or 4, 4 of 8.
fn half_of(cpus: usize) -> usize {
    cpus.div_ceil(2).max(1)
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

    #[test]
    fn workers_are_a_count_or_auto() {
        assert_eq!(parse("auto"), Ok(None));
        assert_eq!(parse(" AUTO "), Ok(None));
        assert_eq!(parse("1"), Ok(Some(1)));
        assert_eq!(parse("16"), Ok(Some(16)));
        for bad in ["0", "-1", "two", "", "1025", "1.5"] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("--workers") && err.contains("auto"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn auto_is_half_the_cpus_rounded_up() {
        let counts: Vec<usize> = [1, 2, 3, 4, 8, 64].into_iter().map(half_of).collect();
        assert_eq!(counts, [1, 1, 2, 2, 4, 32]);
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker_and_run_there() {
        // Workers of its own (the process's count depends on the machine's CPUs).
        let workers = Workers::start(3);
        assert_eq!(workers.workers.len(), 3);
        assert_eq!(current(), None, "the test's own thread is no worker");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        // More long-running jobs than workers: each worker gets its share.
        let jobs = 3 * 3;
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
        let mut per_worker = vec![0usize; 3];
        for _ in 0..jobs {
            let (on, flavor) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("every job starts")
                .unwrap();
            assert!(flavor);
            per_worker[on.expect("runs on a worker")] += 1;
        }
        // Nothing else uses these workers: each got a third.
        assert_eq!(per_worker, [3, 3, 3]);
        release_tx.send(true).unwrap();
    }
}
