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

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
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
        LogFormat::Text => builder.event_format(AccessFormat::text()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .event_format(AccessFormat::json())
            .init(),
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

/// The access log's target: one event per request, so its line is written by a path of its own.
pub const ACCESS_TARGET: &str = "sigv4_proxy::access";

/// tracing's text or JSON (`flatten_event`) format, with the access-log line written directly:
/// the same bytes as tracing's formatter writes for it without colours (checked by tests), at
/// a fraction of the cost (tracing's formatters were 13 % (text) and 19 % (JSON) of a small
/// GET's instructions: field styling, `Debug` for every value). Every other event, coloured
/// output and events inside spans go through tracing's formatter.
pub struct AccessFormat<F> {
    inner: F,
    json: bool,
}

impl AccessFormat<tracing_subscriber::fmt::format::Format> {
    pub fn text() -> Self {
        AccessFormat {
            inner: tracing_subscriber::fmt::format(),
            json: false,
        }
    }
}

impl AccessFormat<tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>> {
    pub fn json() -> Self {
        AccessFormat {
            inner: tracing_subscriber::fmt::format().json().flatten_event(true),
            json: true,
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for AccessFormat<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if meta.target() != ACCESS_TARGET
            || (writer.has_ansi_escapes() && !self.json)
            || ctx.lookup_current().is_some()
        {
            return self.inner.format_event(ctx, writer, event);
        }
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let level = meta.level().as_str();
        if self.json {
            write!(writer, "{{\"timestamp\":\"{now}\",\"level\":\"{level}\"")?;
        } else {
            write!(writer, "{now} {level:>5} {}: ", meta.target())?;
        }
        let mut fields = AccessFields::new(&mut writer, self.json);
        event.record(&mut fields);
        fields.result?;
        if self.json {
            writer.write_str(",\"target\":")?;
            JsonString(&mut writer).write_quoted(meta.target())?;
            writer.write_char('}')?;
        }
        writer.write_char('\n')
    }
}

/// Writes an event's fields as tracing's formatters do (no colours).
///
/// Text: `message` bare, then `name=value` separated by spaces, strings quoted and escaped as
/// `Debug` does. JSON: `,"name":value`, numbers and booleans bare, everything else a string.
struct AccessFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    json: bool,
    first: bool,
    result: std::fmt::Result,
}

impl<'a, 'w> AccessFields<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>, json: bool) -> Self {
        AccessFields {
            writer,
            json,
            first: true,
            result: Ok(()),
        }
    }

    /// Writes what goes before a field's value; false once writing failed.
    fn start(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        let first = std::mem::take(&mut self.first);
        self.result = if self.json {
            self.writer
                .write_char(',')
                .and_then(|()| JsonString(self.writer).write_quoted(field.name()))
                .and_then(|()| self.writer.write_char(':'))
        } else {
            let pad = if first {
                Ok(())
            } else {
                self.writer.write_char(' ')
            };
            match field.name() {
                "message" => pad,
                name => pad
                    .and_then(|()| self.writer.write_str(name))
                    .and_then(|()| self.writer.write_char('=')),
            }
        };
        self.result.is_ok()
    }
}

impl Visit for AccessFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        self.result = if self.json {
            JsonString(self.writer).write_quoted(value)
        } else if field.name() == "message" {
            self.writer.write_str(value)
        } else if value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            // What `Debug` leaves unescaped, written as it is; anything else through `Debug`.
            self.writer
                .write_char('"')
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'))
        } else {
            write!(self.writer, "{value:?}")
        };
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = write_u64(self.writer, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.start(field) {
            self.result = if self.json {
                debug_string(self.writer, value)
            } else {
                write!(self.writer, "{value:?}")
            };
        }
    }
}

/// `value`'s `Debug` text as a JSON string, escaped on the way (no intermediate `String`).
fn debug_string(writer: &mut Writer<'_>, value: &dyn std::fmt::Debug) -> std::fmt::Result {
    writer.write_char('"')?;
    write!(JsonString(writer), "{value:?}")?;
    writer.write_char('"')
}

/// Writes what it is given escaped as serde_json escapes a string's contents.
struct JsonString<'a, 'w>(&'a mut Writer<'w>);

impl JsonString<'_, '_> {
    fn write_quoted(&mut self, s: &str) -> std::fmt::Result {
        self.0.write_char('"')?;
        self.write_str(s)?;
        self.0.write_char('"')
    }
}

impl std::fmt::Write for JsonString<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{:04x}", b)?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// `value` in decimal, without the formatting machinery.
fn write_u64(writer: &mut Writer<'_>, value: u64) -> std::fmt::Result {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    writer.write_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats `emit`'s events with tracing's own formatter (no colours) and with ours, as
    /// text or JSON lines; returns both outputs.
    fn both_formats(json: bool, emit: impl Fn()) -> (String, String) {
        let run = |ours: bool| {
            let sink = Sink::default();
            let (writer, flusher) = batched(Box::new(sink.clone()));
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::TRACE)
                .with_writer(writer);
            match (json, ours) {
                (false, false) => tracing::subscriber::with_default(builder.finish(), &emit),
                (false, true) => tracing::subscriber::with_default(
                    builder.event_format(AccessFormat::text()).finish(),
                    &emit,
                ),
                (true, false) => tracing::subscriber::with_default(
                    builder.json().flatten_event(true).finish(),
                    &emit,
                ),
                (true, true) => tracing::subscriber::with_default(
                    builder
                        .json()
                        .flatten_event(true)
                        .event_format(AccessFormat::json())
                        .finish(),
                    &emit,
                ),
            }
            drop(flusher);
            let bytes = sink.bytes.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap()
        };
        (run(false), run(true))
    }

    /// The lines without their timestamps (which differ by when they were written), after
    /// checking that each has one (and, for JSON, that each line parses).
    fn untimed(text: &str) -> Vec<String> {
        const LEN: usize = "2026-12-03T13:03:34.649026Z".len();
        text.lines()
            .map(|line| {
                let (time, rest) = match line.strip_prefix(r#"{"timestamp":""#) {
                    Some(json) => {
                        serde_json::from_str::<serde_json::Value>(line)
                            .unwrap_or_else(|e| panic!("{line}: {e}"));
                        (&json[..LEN], &json[LEN..])
                    }
                    None => line.split_once(' ').unwrap(),
                };
                assert_eq!(time.len(), LEN, "{line}");
                humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time}: {e}"));
                rest.to_string()
            })
            .collect()
    }

    /// Access-log events with every kind of value the access log has, and values that need
    /// quoting and escaping; then one other event.
    fn access_events() {
        for (path, user, policy, latency) in [
            ("/_cluster/health", "-", "-", 0.04),
            (
                "/logs/_search",
                "alice",
                "allow on arn:aws:es:::domain/x/logs",
                1234.5,
            ),
            // Quotes, backslashes, control and non-ASCII characters: escaped as Debug / JSON do.
            (
                "/a%20b/\"q\"\u{7f}",
                "bob \"the\" \\ builder\n\u{1}\u{1f}\u{8}\u{c}\r\t",
                "deny (stmt\t1) ✓ \u{200b}",
                7.25,
            ),
        ] {
            let peer: std::net::SocketAddr = "[::1]:40100".parse().unwrap();
            tracing::info!(
                target: ACCESS_TARGET,
                method = %http::Method::POST,
                path = %path,
                status = 403u16,
                bytes_in = 18_446_744_073_709_551_615u64,
                bytes_out = 0u64,
                latency_ms = format_args!("{latency:.1}"),
                client = %peer,
                user,
                policy,
                complete = false,
                "request"
            );
        }
        // Not the access log: tracing's formatter, as before.
        tracing::warn!(target: "sigv4_proxy::upstream", cause = "reset", "other");
    }

    /// Our access lines and tracing's for the same events, `json` or text, are the same bytes;
    /// `escaped` is how the third line must show the user name with quotes and control bytes.
    fn assert_access_lines_match_tracing(json: bool, escaped: &str) {
        let (tracing_lines, ours) = both_formats(json, access_events);
        let expected = untimed(&tracing_lines);
        assert_eq!(expected.len(), 4, "{tracing_lines}");
        assert!(expected[2].contains(escaped), "{}", expected[2]);
        assert_eq!(untimed(&ours), expected);
    }

    #[test]
    fn the_access_line_is_the_one_tracing_would_write() {
        assert_access_lines_match_tracing(false, r#"user="bob \"the\" \\ builder\n"#);
    }

    #[test]
    fn the_json_access_line_is_the_one_tracing_would_write() {
        assert_access_lines_match_tracing(true, r#""user":"bob \"the\" \\ builder\n\u0001"#);
    }

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
