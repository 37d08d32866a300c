//! Log output. tracing's formatter renders each event into a line; the line is appended to a
//! shared buffer, and one writer thread empties the buffer to stderr. A request thus never waits
//! on a `write(2)` and never wakes another thread per line: the writer is woken when the buffer
//! goes from empty to non-empty and writes what it holds with one call, at most once per
//! [`GATHER`] (lines logged while it waits join the batch; an odd line goes out at once).
//! Measured on the benchmark's small GETs, a `write(2)` per access-log line (or a channel message
//! per line to a writer thread) cost as much CPU as the rest of the request.
//!
//! Nothing is dropped: when [`MAX_PENDING`] bytes are waiting, loggers wait for the writer (a
//! stderr nobody reads slows requests down, as it would with direct writes). [`LogFlusher`]
//! writes what is left when it is dropped at the end of `main`; lines logged after that go to
//! stderr directly.

use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The shortest time between two writes: under load, lines gather this long (the longest a line
/// waits before it reaches stderr).
pub const GATHER: Duration = Duration::from_millis(10);
/// Bytes waiting beyond which loggers wait for the writer.
pub const MAX_PENDING: usize = 1 << 20;

/// The default filter for `-v` (debug) and `-vv` (trace); `quiet` is the one without `-v`.
fn default_filter(verbose: u8, quiet: &str) -> &str {
    match verbose {
        0 => quiet,
        1 => "debug,hyper=info,h2=info,rustls=info,aws_smithy_runtime=info",
        _ => "trace",
    }
}

/// Installs the global subscriber: `RUST_LOG` if set, else the verbosity's filter; text or
/// JSON lines on stderr, coloured only when stderr is a terminal. Keep the returned flusher
/// alive until the end of `main`.
pub fn init(verbose: u8, format: LogFormat, quiet: &str) -> LogFlusher {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbose, quiet)));
    let (writer, flusher) = batched(Box::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    flusher
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the buffer gets its first bytes, or on close.
    ready: Condvar,
    /// Signalled when the writer has taken the buffer.
    room: Condvar,
}

struct State {
    pending: Vec<u8>,
    closed: bool,
    /// Whether the writer thread is there to take `pending`; without it lines go straight
    /// to `out`.
    writer_running: bool,
    /// The output; the writer thread holds it while it writes a batch.
    out: Option<Box<dyn Write + Send>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: keep logging.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The [`MakeWriter`] handed to tracing: each event's line is appended to the shared buffer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Ends the writer thread, after it has written everything logged so far.
pub struct LogFlusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer that batches lines into `out` from a thread of its own.
pub fn batched(out: Box<dyn Write + Send>) -> (BatchedWriter, LogFlusher) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: Vec::with_capacity(64 * 1024),
            closed: false,
            writer_running: true,
            out: Some(out),
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
    });
    let worker = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_batches(&worker))
        .ok();
    if thread.is_none() {
        shared.lock().writer_running = false;
    }
    (
        BatchedWriter {
            shared: shared.clone(),
        },
        LogFlusher { shared, thread },
    )
}

fn write_batches(shared: &Shared) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut last_write: Option<Instant> = None;
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && !state.closed {
            state = shared.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.pending.is_empty() {
            // Closed and written out: later lines go straight to `out`.
            state.writer_running = false;
            return;
        }
        // Under load, at most one write per GATHER; an odd line goes out at once.
        let wait = last_write.map_or(Duration::ZERO, |at| GATHER.saturating_sub(at.elapsed()));
        if !state.closed && !wait.is_zero() {
            drop(state);
            std::thread::sleep(wait);
            state = shared.lock();
        }
        std::mem::swap(&mut state.pending, &mut batch);
        let mut out = state.out.take();
        drop(state);
        shared.room.notify_all();
        if let Some(out) = out.as_mut() {
            // Nowhere to report a failing stderr; the lines are gone either way.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
        }
        last_write = Some(Instant::now());
        shared.lock().out = out;
        batch.clear();
        if batch.capacity() > 4 * MAX_PENDING {
            batch.shrink_to(64 * 1024);
        }
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One event's writer.
pub struct Line<'a> {
    shared: &'a Shared,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if !state.writer_running {
            if let Some(out) = state.out.as_mut() {
                out.write_all(buf)?;
            }
            return Ok(buf.len());
        }
        while state.pending.len() >= MAX_PENDING && !state.closed {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        let first = state.pending.is_empty();
        state.pending.extend_from_slice(buf);
        drop(state);
        if first {
            self.shared.ready.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read after the writer is done, optionally slow.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        delay: Duration,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_from(threads: usize, per_thread: usize, writer: &BatchedWriter) {
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    for i in 0..per_thread {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 300));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
    }

    fn check_complete(text: &str, threads: usize, per_thread: usize) {
        let mut next = vec![0usize; threads];
        for line in text.lines() {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("thread"), "torn line: {line:?}");
            let t: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("line"));
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t}: lines out of order or missing");
            assert_eq!(words.next().unwrap().len(), i % 300);
            next[t] += 1;
        }
        assert_eq!(next, vec![per_thread; threads], "lines missing");
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, flusher) = batched(Box::new(sink.clone()));
        lines_from(4, 5000, &writer);
        drop(flusher);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        check_complete(&text, 4, 5000);
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 20_000 / 10, "{writes} writes for 20000 lines");
    }

    #[test]
    fn a_slow_output_makes_loggers_wait_instead_of_dropping_lines() {
        let sink = Sink {
            delay: Duration::from_millis(20),
            ..Sink::default()
        };
        let (writer, flusher) = batched(Box::new(sink.clone()));
        // About 5 MiB: several times MAX_PENDING, so loggers have to wait for the writer.
        lines_from(2, 20_000, &writer);
        drop(flusher);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        assert!(text.len() > 4 * MAX_PENDING);
        check_complete(&text, 2, 20_000);
    }

    #[test]
    fn lines_after_the_flusher_is_dropped_go_straight_out() {
        let sink = Sink::default();
        let (writer, flusher) = batched(Box::new(sink.clone()));
        writer.make_writer().write_all(b"before\n").unwrap();
        drop(flusher);
        writer.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(&*sink.bytes.lock().unwrap(), b"before\nafter\n");
    }

    #[test]
    fn a_line_reaches_the_output_without_a_flush() {
        let sink = Sink::default();
        let (writer, _flusher) = batched(Box::new(sink.clone()));
        writer.make_writer().write_all(b"one line\n").unwrap();
        // Bounded wait: the writer takes the line after GATHER.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.bytes.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "line not written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.bytes.lock().unwrap(), b"one line\n");
    }
}
