//! Request bodies: hashed (SHA-256) as they arrive, kept in memory while small and spilled to an
//! anonymous temporary file once they pass a threshold, so memory stays flat whatever the size.
//! The file has no name on disk (`O_TMPFILE`/unlinked), so it disappears with the last handle
//! even if the process is killed. A [`SpooledBody`] can be sent any number of times, which is
//! what makes retries safe. With an unsigned payload (`--unsigned-payload`) bodies are not
//! hashed, and a large one that nothing needs whole is passed through as it arrives instead
//! ([`RequestBody::stream`]), sent once.

use std::future::Future;
use std::io::{BufRead, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use crate::error::ProxyError;

/// Limits on request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted; more is answered with 413.
    pub max: u64,
    /// Bodies larger than this go to a temporary file.
    pub spill_threshold: usize,
    /// Longest wait for the next piece of the body (slow or stalled clients).
    pub idle_timeout: Option<Duration>,
}

impl BodyLimits {
    /// A declared length over the limit is refused before anything is read.
    fn refuse_declared(&self, declared_len: Option<u64>) -> Result<(), ProxyError> {
        match declared_len {
            Some(n) if n > self.max => Err(ProxyError::PayloadTooLarge { limit: self.max }),
            _ => Ok(()),
        }
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max: 100 * 1024 * 1024,
            spill_threshold: 1024 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// Size of a write to, and a read from, the spill file.
const FILE_CHUNK: usize = 256 * 1024;
/// Chunks on their way to the spill file while the next ones are read from the client.
const WRITE_AHEAD: usize = 4;
/// Chunks read from the spill file ahead of the one being sent.
const READ_AHEAD: usize = 2;
/// Pieces of a body in memory at least this large are kept as they arrived; smaller ones
/// (a chunked body's small chunks) are gathered so the endpoint gets few, full frames.
const KEEP_AS_IS: usize = 8 * 1024;

/// What the signature says of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Its SHA-256 (the default): the body is hashed as it arrives.
    Signed,
    /// `UNSIGNED-PAYLOAD` (`--unsigned-payload`): the body is not hashed.
    Unsigned,
}

/// The payload hash of a body that is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// A request body as the proxy forwards it.
pub enum RequestBody {
    /// Received whole before it is sent: sent again for a retry, read by the policy.
    Whole(SpooledBody),
    /// Sent on as it arrives, once: see [`RequestBody::stream`].
    Streamed(Streamed),
}

/// A body passed through as the client sends it.
pub struct Streamed {
    /// Taken by the one send.
    body: std::sync::Mutex<Option<OutboundBody>>,
    len: u64,
    /// Why the client's body stopped, if it did.
    failure: Arc<std::sync::Mutex<Option<ProxyError>>>,
}

impl RequestBody {
    /// Reads the body as [`SpooledBody::read`] does, unless it can be streamed: an unsigned
    /// payload whose declared length is over the spill threshold, and that nothing else needs
    /// whole (`needed_whole`: the policy reads it) is sent on to the endpoint as it arrives,
    /// with no temporary file and no wait for its end. It cannot be sent twice, so it is not
    /// retried; a pause longer than the idle timeout cuts the upload off (`failure` then says
    /// 408).
    pub async fn read<B>(
        body: B,
        declared_len: Option<u64>,
        limits: BodyLimits,
        payload: Payload,
        needed_whole: bool,
    ) -> Result<RequestBody, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        match declared_len {
            Some(len)
                if payload == Payload::Unsigned
                    && !needed_whole
                    && len > limits.spill_threshold as u64 =>
            {
                RequestBody::stream(body, len, limits)
            }
            _ => Ok(RequestBody::Whole(
                SpooledBody::read(body, declared_len, limits, payload).await?,
            )),
        }
    }

    fn stream<B>(body: B, len: u64, limits: BodyLimits) -> Result<RequestBody, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        limits.refuse_declared(Some(len))?;
        let failure = Arc::new(std::sync::Mutex::new(None));
        let outbound = OutboundBody {
            source: Source::Stream(Box::new(Passed {
                body: Box::pin(body.map_err(|e| ProxyError::ClientBody(e.to_string()))),
                idle_timeout: limits.idle_timeout,
                idle: None,
                failure: failure.clone(),
            })),
            remaining: len,
            progress: None,
        };
        Ok(RequestBody::Streamed(Streamed {
            body: std::sync::Mutex::new(Some(outbound)),
            len,
            failure,
        }))
    }

    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Whole(body) => body.len(),
            RequestBody::Streamed(s) => s.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self, RequestBody::Whole(_))
    }

    pub fn payload_hash(&self) -> &str {
        match self {
            RequestBody::Whole(body) => body.payload_hash(),
            RequestBody::Streamed(_) => UNSIGNED_PAYLOAD,
        }
    }

    /// The body to send: a fresh one each time for a whole body; a streamed one only once
    /// (`None` after).
    pub fn to_outbound(&self) -> Option<OutboundBody> {
        match self {
            RequestBody::Whole(body) => Some(body.to_outbound()),
            RequestBody::Streamed(s) => s.body.lock().ok()?.take(),
        }
    }

    /// Why a streamed body stopped before its end (the client paused too long, went away or
    /// sent something broken); `None` if it did not.
    pub fn take_failure(&self) -> Option<ProxyError> {
        match self {
            RequestBody::Whole(_) => None,
            RequestBody::Streamed(s) => s.failure.lock().ok()?.take(),
        }
    }
}

/// The client's body inside a streamed [`OutboundBody`].
struct Passed {
    body: Pin<Box<dyn Body<Data = Bytes, Error = ProxyError> + Send>>,
    idle_timeout: Option<Duration>,
    /// Armed while the client's body has nothing ready.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    failure: Arc<std::sync::Mutex<Option<ProxyError>>>,
}

impl Passed {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        loop {
            match self.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle = None;
                    match frame.into_data() {
                        Ok(data) => return Poll::Ready(Some(Ok(data))),
                        Err(_) => continue, // trailers: not forwarded
                    }
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(self.failed(err)))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        let Some(timeout) = self.idle_timeout else {
            return Poll::Pending;
        };
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(self.failed(client_idle(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn failed(&self, err: ProxyError) -> std::io::Error {
        let io = std::io::Error::other(err.to_string());
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(err);
        }
        io
    }
}

/// A fully received request body with its SHA-256 (unless unsigned), in memory or in a
/// temporary file.
#[derive(Clone, Debug)]
pub struct SpooledBody {
    storage: Storage,
    len: u64,
    /// Lowercase hex; kept inline: no allocation per request for it. None: unsigned.
    sha256_hex: Option<[u8; 64]>,
}

#[derive(Clone, Debug)]
enum Storage {
    /// The pieces as they arrived (no copy), small ones gathered.
    Memory(Arc<[Bytes]>),
    File(Arc<SpillFile>),
}

impl SpooledBody {
    /// An empty body.
    pub fn empty() -> SpooledBody {
        SpooledBody::from_bytes(Bytes::new())
    }

    /// A body already in memory.
    pub fn from_bytes(bytes: Bytes) -> SpooledBody {
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        SpooledBody {
            len: bytes.len() as u64,
            sha256_hex: Some(sha256_hex(&digest)),
            storage: Storage::Memory(if bytes.is_empty() {
                no_pieces()
            } else {
                Arc::new([bytes])
            }),
        }
    }

    /// Reads a whole body, enforcing the limits. A declared length over the limit is refused
    /// before anything is read; an undeclared one as soon as it passes the limit.
    ///
    /// The body is hashed as it arrives: on the worker while it is small, and past the spill
    /// threshold by a hasher thread, while a writer thread writes the pieces to the temporary
    /// file and the worker reads the next ones (the three in parallel: on a 32 MiB bulk the
    /// hash alone is ~20 ms of one core). An unsigned `payload` is not hashed at all.
    pub async fn read<B>(
        body: B,
        declared_len: Option<u64>,
        limits: BodyLimits,
        payload: Payload,
    ) -> Result<SpooledBody, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        limits.refuse_declared(declared_len)?;
        let mut body = body;
        // Hashes the body while it is in memory; a spilled body is hashed by its hasher thread.
        let mut hasher =
            (payload == Payload::Signed).then(|| ring::digest::Context::new(&ring::digest::SHA256));
        let mut received = Received::Memory(InMemory::new(declared_len, limits.spill_threshold));
        let mut len: u64 = 0;
        loop {
            let next = match limits.idle_timeout {
                Some(t) => tokio::time::timeout(t, body.frame())
                    .await
                    .map_err(|_| client_idle(t))?,
                None => body.frame().await,
            };
            let Some(frame) = next else { break };
            let frame = frame.map_err(|e| ProxyError::ClientBody(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len() as u64;
            if len > limits.max {
                return Err(ProxyError::PayloadTooLarge { limit: limits.max });
            }
            received = match received {
                Received::Memory(memory) if len > limits.spill_threshold as u64 => {
                    let mut spill = Spill::start(memory.into_pieces(), hasher.clone()).await?;
                    spill.push(data).await?;
                    Received::Spill(spill)
                }
                Received::Memory(mut memory) => {
                    // Hashed here, while the bytes are still in the cache.
                    if let Some(hasher) = &mut hasher {
                        hasher.update(&data);
                    }
                    memory.push(data);
                    Received::Memory(memory)
                }
                Received::Spill(mut spill) => {
                    spill.push(data).await?;
                    Received::Spill(spill)
                }
            };
        }
        let (storage, digest) = match received {
            Received::Memory(memory) => {
                let pieces = memory.into_pieces();
                let pieces = if pieces.is_empty() {
                    no_pieces()
                } else {
                    pieces.into()
                };
                (Storage::Memory(pieces), hasher.map(|h| h.finish()))
            }
            Received::Spill(spill) => {
                let (file, digest) = spill.finish().await?;
                (Storage::File(file), digest)
            }
        };
        Ok(SpooledBody {
            storage,
            len,
            sha256_hex: digest.map(|d| sha256_hex(&d)),
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body went to a temporary file.
    pub fn is_spilled(&self) -> bool {
        matches!(self.storage, Storage::File(_))
    }

    /// What `x-amz-content-sha256` says and the signature covers: the lowercase hex SHA-256
    /// of the body, or [`UNSIGNED_PAYLOAD`].
    pub fn payload_hash(&self) -> &str {
        match &self.sha256_hex {
            Some(hex) => std::str::from_utf8(hex).expect("hex digits"),
            None => UNSIGNED_PAYLOAD,
        }
    }

    /// A body to send upstream; cheap, and may be called again for a retry.
    pub fn to_outbound(&self) -> OutboundBody {
        OutboundBody {
            source: match &self.storage {
                Storage::Memory(pieces) => Source::Memory {
                    pieces: pieces.clone(),
                    next: 0,
                },
                Storage::File(f) => Source::File {
                    file: f.clone(),
                    len: self.len,
                    chunks: None,
                },
            },
            remaining: self.len,
            progress: None,
        }
    }

    /// The whole body as one slice, when it is in memory in one piece (as most small bodies
    /// are): the policy reads it in place.
    pub fn as_contiguous(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Memory(pieces) if pieces.is_empty() => Some(&[]),
            Storage::Memory(pieces) if pieces.len() == 1 => Some(&pieces[0]),
            _ => None,
        }
    }

    /// A spilled body's file mapped into memory, read-only (`None` for a body in memory, or
    /// when the file cannot be mapped): the policy reads it in place instead of copying it out.
    /// A blocking call (the pages are read in at once).
    pub fn mapped(&self) -> Option<memmap2::Mmap> {
        let Storage::File(file) = &self.storage else {
            return None;
        };
        if self.len == 0 {
            return None;
        }
        // SAFETY: a mapping is undefined behaviour if the file changes under it. This one is the
        // proxy's own temporary file: unlinked when created (no other process can open it),
        // complete (its writer finished before the body existed), and never written again.
        unsafe { memmap2::MmapOptions::new().populate().map(&***file) }.ok()
    }

    /// A blocking reader over the whole body (for the policy's body parsers; call it from a
    /// blocking context when the body is spilled).
    pub fn reader(&self) -> Box<dyn BufRead + Send> {
        match &self.storage {
            Storage::Memory(pieces) => Box::new(Pieces {
                pieces: pieces.clone(),
                next: 0,
                at: 0,
            }),
            Storage::File(f) => Box::new(std::io::BufReader::with_capacity(
                64 * 1024,
                PositionedReader {
                    file: f.clone(),
                    offset: 0,
                },
            )),
        }
    }
}

/// Where a body being received is kept.
enum Received {
    Memory(InMemory),
    Spill(Spill),
}

/// A body below the spill threshold, kept in the pieces it came in; also a spilled body's
/// next batch.
struct InMemory {
    pieces: Vec<Bytes>,
    /// Small pieces, copied together.
    gathering: BytesMut,
    /// Bytes held, in `pieces` and `gathering`.
    len: usize,
}

impl InMemory {
    fn new(declared_len: Option<u64>, spill_threshold: usize) -> InMemory {
        let expected = declared_len.map_or(0, |n| n.min(spill_threshold as u64) as usize);
        InMemory {
            pieces: Vec::with_capacity(expected.div_ceil(KEEP_AS_IS)),
            gathering: BytesMut::new(),
            len: 0,
        }
    }

    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        if data.len() >= KEEP_AS_IS && self.gathering.is_empty() {
            self.pieces.push(data);
            return;
        }
        self.gathering.extend_from_slice(&data);
        if self.gathering.len() >= KEEP_AS_IS {
            self.pieces.push(self.gathering.split().freeze());
        }
    }

    /// Every piece, in order.
    fn into_pieces(mut self) -> Vec<Bytes> {
        self.take()
    }

    /// Every piece so far, in order, leaving none.
    fn take(&mut self) -> Vec<Bytes> {
        if !self.gathering.is_empty() {
            self.pieces.push(self.gathering.split().freeze());
        }
        self.len = 0;
        std::mem::take(&mut self.pieces)
    }
}

/// Pieces handed to the writer and the hasher together (shared, not copied).
type Batch = Arc<Vec<Bytes>>;

/// A body on its way to the spill file: its pieces go in batches of about [`FILE_CHUNK`] to a
/// writer thread, which writes them in order, and to a hasher thread (for a signed payload). Pieces are kept as they
/// arrived, small ones gathered as in memory (a body of 1-byte chunks would otherwise make a
/// batch of 262,144 pieces).
struct Spill {
    batch: InMemory,
    to_writer: tokio::sync::mpsc::Sender<Batch>,
    /// None for an unsigned payload.
    hasher: Option<Hasher>,
    writer: JoinHandle<std::io::Result<std::fs::File>>,
}

struct Hasher {
    to_hasher: tokio::sync::mpsc::Sender<Batch>,
    thread: JoinHandle<ring::digest::Digest>,
}

impl Spill {
    /// Creates the file and starts the writer with `written`, the body so far, and the hasher
    /// (if any) with `hasher`, the hash of it.
    async fn start(
        written: Vec<Bytes>,
        hasher: Option<ring::digest::Context>,
    ) -> Result<Spill, ProxyError> {
        let mut file = spawn_io(tempfile::tempfile).await?;
        let (to_writer, mut batches) = tokio::sync::mpsc::channel::<Batch>(WRITE_AHEAD);
        let writer = tokio::task::spawn_blocking(move || {
            write_pieces(&mut file, &written)?;
            while let Some(batch) = batches.blocking_recv() {
                write_pieces(&mut file, &batch)?;
            }
            Ok(file)
        });
        let hasher = hasher.map(|mut hasher| {
            let (to_hasher, mut to_hash) = tokio::sync::mpsc::channel::<Batch>(WRITE_AHEAD);
            let thread = tokio::task::spawn_blocking(move || {
                while let Some(batch) = to_hash.blocking_recv() {
                    for piece in batch.iter() {
                        hasher.update(piece);
                    }
                }
                hasher.finish()
            });
            Hasher { to_hasher, thread }
        });
        Ok(Spill {
            batch: InMemory::new(None, 0),
            to_writer,
            hasher,
            writer,
        })
    }

    async fn push(&mut self, data: Bytes) -> Result<(), ProxyError> {
        self.batch.push(data);
        if self.batch.len >= FILE_CHUNK {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), ProxyError> {
        let pieces = self.batch.take();
        if pieces.is_empty() {
            return Ok(());
        }
        let batch: Batch = Arc::new(pieces);
        if let Some(hasher) = &self.hasher {
            // The hasher only stops early if it panicked; `finish` reports that.
            let _ = hasher.to_hasher.send(batch.clone()).await;
        }
        if self.to_writer.send(batch).await.is_err() {
            // The writer stopped: its error says why.
            return Err(match written((&mut self.writer).await) {
                Err(e) => e,
                Ok(_) => ProxyError::Internal("temporary file writer ended early".into()),
            });
        }
        Ok(())
    }

    async fn finish(
        mut self,
    ) -> Result<(Arc<SpillFile>, Option<ring::digest::Digest>), ProxyError> {
        self.send().await?;
        drop(self.to_writer);
        let hasher = self.hasher.map(|Hasher { to_hasher, thread }| {
            drop(to_hasher);
            thread
        });
        let file = Arc::new(SpillFile(Some(written(self.writer.await)?)));
        let digest = match hasher {
            Some(thread) => Some(
                thread
                    .await
                    .map_err(|e| ProxyError::Internal(format!("body hash task failed: {e}")))?,
            ),
            None => None,
        };
        Ok((file, digest))
    }
}

/// The writer thread's outcome: the written file, or why there is none.
fn written(
    joined: Result<std::io::Result<std::fs::File>, tokio::task::JoinError>,
) -> Result<std::fs::File, ProxyError> {
    match joined {
        Ok(result) => result.map_err(spill_error),
        Err(e) => Err(ProxyError::Internal(format!(
            "temporary file task failed: {e}"
        ))),
    }
}

/// Writes `pieces` in order, several per call.
fn write_pieces(file: &mut std::fs::File, pieces: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The spill file. Closing the last handle makes the kernel free the file's pages (8192 of them
/// for a 32 MiB body, milliseconds of work), so the last drop on a worker hands the closing to a
/// blocking thread instead of holding up the worker's other connections.
#[derive(Debug)]
pub struct SpillFile(Option<std::fs::File>);

impl std::ops::Deref for SpillFile {
    type Target = std::fs::File;

    fn deref(&self) -> &std::fs::File {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        if let (Some(file), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn_blocking(move || drop(file));
        }
    }
}

/// The client sent nothing of its body for `idle_timeout` (408).
fn client_idle(idle_timeout: Duration) -> ProxyError {
    ProxyError::ClientTimeout(format!(
        "nothing received for {}",
        humantime::format_duration(idle_timeout)
    ))
}

fn sha256_hex(digest: &ring::digest::Digest) -> [u8; 64] {
    let mut hex = [0u8; 64];
    crate::signing::write_hex(&mut hex, digest.as_ref());
    hex
}

/// The pieces of every empty body: one shared allocation instead of one per request.
fn no_pieces() -> Arc<[Bytes]> {
    static NONE: std::sync::OnceLock<Arc<[Bytes]>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::new([])).clone()
}

fn spill_error(e: std::io::Error) -> ProxyError {
    ProxyError::Internal(format!("temporary file for a large request body: {e}"))
}

async fn spawn_io<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ProxyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProxyError::Internal(format!("temporary file task failed: {e}")))?
        .map_err(spill_error)
}

/// Reads the in-memory pieces in order.
struct Pieces {
    pieces: Arc<[Bytes]>,
    next: usize,
    /// Offset in `pieces[next]`.
    at: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Pieces {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while let Some(piece) = self.pieces.get(self.next) {
            if self.at < piece.len() {
                return Ok(&self.pieces[self.next][self.at..]);
            }
            self.next += 1;
            self.at = 0;
        }
        Ok(&[])
    }

    fn consume(&mut self, amt: usize) {
        self.at += amt;
    }
}

/// Reads a shared file at its own offset, so several readers (a retry, the policy) never disturb
/// each other.
struct PositionedReader {
    file: Arc<SpillFile>,
    offset: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The body sent upstream: the pieces in memory, the spill file read ahead by a reader thread
/// while the chunk before is sent, or the client's body as it arrives.
pub struct OutboundBody {
    source: Source,
    remaining: u64,
    /// When the endpoint last took a piece of the body (see [`OutboundBody::track_progress`]).
    progress: Option<Arc<Progress>>,
}

/// When a body being sent last moved: a piece taken, or its end.
#[derive(Debug)]
pub struct Progress {
    since: tokio::time::Instant,
    /// Nanoseconds after `since`.
    moved: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            since: tokio::time::Instant::now(),
            moved: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn moved_now(&self) {
        let ns = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.moved.store(ns, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last time the body moved (when tracking started, if it has not yet).
    pub fn last_moved(&self) -> tokio::time::Instant {
        self.since + Duration::from_nanos(self.moved.load(std::sync::atomic::Ordering::Relaxed))
    }
}

enum Source {
    Memory {
        pieces: Arc<[Bytes]>,
        next: usize,
    },
    File {
        file: Arc<SpillFile>,
        len: u64,
        /// Started by the first poll, so a body that is never sent reads nothing.
        chunks: Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>>,
    },
    Stream(Box<Passed>),
}

impl OutboundBody {
    pub fn empty() -> OutboundBody {
        OutboundBody {
            source: Source::Memory {
                pieces: no_pieces(),
                next: 0,
            },
            remaining: 0,
            progress: None,
        }
    }

    /// Tracks when the endpoint takes each piece of this body, for a timeout that counts the
    /// endpoint's silence rather than the upload's length. `None` for an empty body (nothing
    /// to send).
    pub fn track_progress(&mut self) -> Option<Arc<Progress>> {
        if self.remaining == 0 {
            return None;
        }
        let progress = Arc::new(Progress::new());
        self.progress = Some(progress.clone());
        Some(progress)
    }
}

/// Reads `file` in [`FILE_CHUNK`]s into a channel, [`READ_AHEAD`] deep, until it has read `len`
/// bytes or the receiver is gone.
fn read_ahead(
    file: Arc<SpillFile>,
    len: u64,
) -> tokio::sync::mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut offset = 0u64;
        while offset < len {
            let want = (len - offset).min(FILE_CHUNK as u64) as usize;
            let mut buf = BytesMut::zeroed(want);
            let read = file.read_exact_at(&mut buf, offset).map(|()| buf.freeze());
            let failed = read.is_err();
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
            offset += want as u64;
        }
    });
    rx
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Memory { pieces, next } => {
                let piece = pieces.get(*next).cloned();
                *next += 1;
                Poll::Ready(piece.map(Ok))
            }
            Source::File { file, len, chunks } => {
                if this.remaining == 0 {
                    return Poll::Ready(None);
                }
                let chunks = chunks.get_or_insert_with(|| read_ahead(file.clone(), *len));
                match chunks.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(
                        "the temporary file reader ended early",
                    )))),
                    Poll::Ready(Some(chunk)) => Poll::Ready(Some(chunk)),
                }
            }
            Source::Stream(passed) => passed.poll_data(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(data))) => {
                this.remaining = this.remaining.saturating_sub(data.len() as u64);
                if let Some(progress) = &this.progress {
                    progress.moved_now();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                this.remaining = 0;
                if let Some(progress) = &this.progress {
                    progress.moved_now();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn limits(max: u64, spill: usize) -> BodyLimits {
        BodyLimits {
            max,
            spill_threshold: spill,
            idle_timeout: Some(Duration::from_secs(5)),
        }
    }

    type Frames = std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>;

    fn chunked(parts: Vec<&'static [u8]>) -> StreamBody<futures_util::stream::Iter<Frames>> {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .into_iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn collect(b: OutboundBody) -> Vec<u8> {
        b.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_with_their_hash() {
        let b = SpooledBody::read(
            Full::new(Bytes::from_static(b"hello")),
            Some(5),
            limits(100, 10),
            Payload::Signed,
        )
        .await
        .unwrap();
        assert!(!b.is_spilled());
        assert_eq!(b.len(), 5);
        assert_eq!(
            b.payload_hash(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(collect(b.to_outbound()).await, b"hello");
    }

    #[tokio::test]
    async fn large_bodies_spill_and_replay_identically() {
        let data: Vec<u8> = (0..(3 * FILE_CHUNK + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        let b = SpooledBody::read(
            Full::new(Bytes::from(data.clone())),
            None,
            limits(10 << 20, 1024),
            Payload::Signed,
        )
        .await
        .unwrap();
        assert!(b.is_spilled());
        assert_eq!(b.len(), data.len() as u64);
        let expect = hex::encode(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
        assert_eq!(b.payload_hash(), expect);
        let out = b.to_outbound();
        assert_eq!(out.size_hint().exact(), Some(data.len() as u64));
        assert_eq!(collect(out).await, data);
        // A second send (a retry) yields the same bytes.
        assert_eq!(collect(b.to_outbound()).await, data);
        let mut all = Vec::new();
        b.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
    }

    /// Bodies in pieces of every size, against thresholds that fall anywhere in them: the
    /// hash, the bytes sent (twice) and the bytes the policy reads are the body's.
    #[tokio::test]
    async fn any_split_of_a_body_keeps_its_bytes_and_hash() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..60 {
            let total = match round % 3 {
                0 => next(4 * 1024),
                1 => next(64 * 1024),
                _ => next(3 * FILE_CHUNK),
            };
            let data: Vec<u8> = (0..total).map(|i| (i * 7 + round) as u8).collect();
            let mut parts: Vec<&'static [u8]> = Vec::new();
            let leaked: &'static [u8] = Box::leak(data.clone().into_boxed_slice());
            let mut at = 0;
            while at < total {
                let n = match next(4) {
                    0 => next(16) + 1,
                    1 => next(KEEP_AS_IS * 2) + 1,
                    _ => next(80 * 1024) + 1,
                }
                .min(total - at);
                parts.push(&leaked[at..at + n]);
                at += n;
            }
            let spill = [1, 100, KEEP_AS_IS, 40_000, 1 << 20][next(5)];
            // Unsigned bodies take the same paths without a hash.
            let payload = [Payload::Signed, Payload::Unsigned][next(2)];
            let b = SpooledBody::read(chunked(parts), None, limits(10 << 20, spill), payload)
                .await
                .unwrap();
            assert_eq!(b.is_spilled(), total > spill, "round {round}");
            let expect = match payload {
                Payload::Signed => {
                    hex::encode(ring::digest::digest(&ring::digest::SHA256, &data).as_ref())
                }
                Payload::Unsigned => UNSIGNED_PAYLOAD.to_string(),
            };
            assert_eq!(
                b.payload_hash(),
                expect,
                "round {round}: {total} bytes, spill at {spill}, {payload:?}"
            );
            assert_eq!(collect(b.to_outbound()).await, data, "round {round}");
            assert_eq!(
                collect(b.to_outbound()).await,
                data,
                "round {round}, replayed"
            );
            let mut read = Vec::new();
            b.reader().read_to_end(&mut read).unwrap();
            assert_eq!(read, data, "round {round}, reader");
        }
    }

    #[tokio::test]
    async fn a_spilled_body_of_tiny_chunks_is_batched_in_few_pieces() {
        let total = 2 * FILE_CHUNK + 77;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut spill = Spill::start(Vec::new(), Some(context)).await.unwrap();
        let mut most = 0;
        for byte in &data {
            spill.push(Bytes::copy_from_slice(&[*byte])).await.unwrap();
            most = most.max(spill.batch.pieces.len());
        }
        // Gathered as they come: a batch holds ~FILE_CHUNK / KEEP_AS_IS pieces, not one per byte.
        assert!(
            most <= FILE_CHUNK / KEEP_AS_IS + 1,
            "{most} pieces in one batch"
        );
        let (file, digest) = spill.finish().await.unwrap();
        let mut written = vec![0u8; total];
        std::os::unix::fs::FileExt::read_exact_at(&**file, &mut written, 0).unwrap();
        assert!(written == data, "the file holds other bytes");
        assert_eq!(
            digest.expect("hashed").as_ref(),
            ring::digest::digest(&ring::digest::SHA256, &data).as_ref()
        );
    }

    #[tokio::test]
    async fn chunked_bodies_are_concatenated() {
        let b = SpooledBody::read(
            chunked(vec![b"ab", b"", b"cd"]),
            None,
            limits(100, 3),
            Payload::Signed,
        )
        .await
        .unwrap();
        assert_eq!(collect(b.to_outbound()).await, b"abcd");
        assert!(b.is_spilled());
    }

    #[tokio::test]
    async fn declared_oversize_is_refused_before_reading() {
        let err = SpooledBody::read(
            Full::new(Bytes::from_static(b"x")),
            Some(1000),
            limits(10, 5),
            Payload::Signed,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProxyError::PayloadTooLarge { limit: 10 }));
    }

    #[tokio::test]
    async fn undeclared_oversize_is_refused_while_reading() {
        let err = SpooledBody::read(
            chunked(vec![b"123456", b"7890", b"abc"]),
            None,
            limits(10, 4),
            Payload::Signed,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProxyError::PayloadTooLarge { .. }));
    }

    #[tokio::test]
    async fn empty_body_has_the_empty_hash() {
        let b = SpooledBody::read(
            Full::new(Bytes::new()),
            Some(0),
            limits(10, 4),
            Payload::Signed,
        )
        .await
        .unwrap();
        assert_eq!(
            b.payload_hash(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let out = b.to_outbound();
        assert!(out.is_end_stream());
        assert!(collect(out).await.is_empty());
    }
}
