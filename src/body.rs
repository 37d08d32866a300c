//! Request bodies: hashed (SHA-256) as they arrive, kept in memory while small and spilled to an
//! anonymous temporary file once they pass a threshold, so memory stays flat whatever the size.
//! The file has no name on disk (`O_TMPFILE`/unlinked), so it disappears with the last handle
//! even if the process is killed. A [`SpooledBody`] can be sent any number of times, which is
//! what makes retries safe.

use std::io::{BufRead, Cursor, Read};
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

/// A fully received request body with its SHA-256, in memory or in a temporary file.
#[derive(Clone, Debug)]
pub struct SpooledBody {
    storage: Storage,
    len: u64,
    sha256_hex: String,
}

#[derive(Clone, Debug)]
enum Storage {
    Memory(Bytes),
    File(Arc<std::fs::File>),
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
            sha256_hex: hex::encode(digest.as_ref()),
            storage: Storage::Memory(bytes),
        }
    }

    /// Reads a whole body, enforcing the limits. A declared length over the limit is refused
    /// before anything is read; an undeclared one as soon as it passes the limit.
    pub async fn read<B>(
        body: B,
        declared_len: Option<u64>,
        limits: BodyLimits,
    ) -> Result<SpooledBody, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        if declared_len.is_some_and(|n| n > limits.max) {
            return Err(ProxyError::PayloadTooLarge { limit: limits.max });
        }
        let mut body = body;
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buffer = BytesMut::new();
        let mut file: Option<Arc<std::fs::File>> = None;
        let mut len: u64 = 0;
        loop {
            let next = match limits.idle_timeout {
                Some(t) => tokio::time::timeout(t, body.frame()).await.map_err(|_| {
                    ProxyError::ClientTimeout(format!(
                        "nothing received for {}",
                        humantime::format_duration(t)
                    ))
                })?,
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
            hasher.update(&data);
            buffer.extend_from_slice(&data);
            if file.is_some() && buffer.len() >= FILE_CHUNK {
                write_chunk(file.as_ref(), buffer.split().freeze()).await?;
            } else if file.is_none() && buffer.len() > limits.spill_threshold {
                let f = spawn_io(tempfile::tempfile).await?;
                let f = Arc::new(f);
                write_chunk(Some(&f), buffer.split().freeze()).await?;
                file = Some(f);
            }
        }
        let sha256_hex = hex::encode(hasher.finish().as_ref());
        let storage = match file {
            None => Storage::Memory(buffer.freeze()),
            Some(f) => {
                if !buffer.is_empty() {
                    write_chunk(Some(&f), buffer.freeze()).await?;
                }
                Storage::File(f)
            }
        };
        Ok(SpooledBody {
            storage,
            len,
            sha256_hex,
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

    /// Lowercase hex SHA-256 of the body, as `x-amz-content-sha256` wants it.
    pub fn sha256_hex(&self) -> &str {
        &self.sha256_hex
    }

    /// A body to send upstream; cheap, and may be called again for a retry.
    pub fn to_outbound(&self) -> OutboundBody {
        OutboundBody {
            source: match &self.storage {
                Storage::Memory(b) => {
                    Source::Memory(if b.is_empty() { None } else { Some(b.clone()) })
                }
                Storage::File(f) => Source::File {
                    file: f.clone(),
                    offset: 0,
                    len: self.len,
                    pending: None,
                },
            },
            remaining: self.len,
        }
    }

    /// A blocking reader over the whole body (for the policy's body parsers; call it from a
    /// blocking context when the body is spilled).
    pub fn reader(&self) -> Box<dyn BufRead + Send> {
        match &self.storage {
            Storage::Memory(b) => Box::new(Cursor::new(b.clone())),
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

async fn spawn_io<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ProxyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProxyError::Internal(format!("temporary file task failed: {e}")))?
        .map_err(|e| ProxyError::Internal(format!("temporary file for a large request body: {e}")))
}

async fn write_chunk(file: Option<&Arc<std::fs::File>>, chunk: Bytes) -> Result<(), ProxyError> {
    let Some(file) = file.cloned() else {
        return Ok(());
    };
    spawn_io(move || {
        use std::io::Write;
        (&*file).write_all(&chunk)
    })
    .await
}

/// Reads a shared file at its own offset, so several readers (a retry, the policy) never disturb
/// each other.
struct PositionedReader {
    file: Arc<std::fs::File>,
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

/// The body sent upstream: bytes from memory, or the spill file read in chunks off the runtime.
pub struct OutboundBody {
    source: Source,
    remaining: u64,
}

enum Source {
    Memory(Option<Bytes>),
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
        pending: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    },
}

impl OutboundBody {
    pub fn empty() -> OutboundBody {
        OutboundBody {
            source: Source::Memory(None),
            remaining: 0,
        }
    }
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match &mut this.source {
            Source::Memory(bytes) => {
                this.remaining = 0;
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))))
            }
            Source::File {
                file,
                offset,
                len,
                pending,
            } => {
                if *offset >= *len {
                    return Poll::Ready(None);
                }
                if pending.is_none() {
                    let file = file.clone();
                    let at = *offset;
                    let want = (*len - at).min(FILE_CHUNK as u64) as usize;
                    *pending = Some(tokio::task::spawn_blocking(move || {
                        use std::os::unix::fs::FileExt;
                        let mut buf = vec![0u8; want];
                        file.read_exact_at(&mut buf, at)?;
                        Ok(buf)
                    }));
                }
                let handle = pending.as_mut().expect("set above");
                match Pin::new(handle).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(joined) => {
                        *pending = None;
                        let chunk = joined.map_err(std::io::Error::other)??;
                        *offset += chunk.len() as u64;
                        this.remaining -= chunk.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

use std::future::Future;

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
        )
        .await
        .unwrap();
        assert!(!b.is_spilled());
        assert_eq!(b.len(), 5);
        assert_eq!(
            b.sha256_hex(),
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
        )
        .await
        .unwrap();
        assert!(b.is_spilled());
        assert_eq!(b.len(), data.len() as u64);
        let expect = hex::encode(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
        assert_eq!(b.sha256_hex(), expect);
        let out = b.to_outbound();
        assert_eq!(out.size_hint().exact(), Some(data.len() as u64));
        assert_eq!(collect(out).await, data);
        // A second send (a retry) yields the same bytes.
        assert_eq!(collect(b.to_outbound()).await, data);
        let mut all = Vec::new();
        b.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
    }

    #[tokio::test]
    async fn chunked_bodies_are_concatenated() {
        let b = SpooledBody::read(chunked(vec![b"ab", b"", b"cd"]), None, limits(100, 3))
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
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProxyError::PayloadTooLarge { .. }));
    }

    #[tokio::test]
    async fn empty_body_has_the_empty_hash() {
        let b = SpooledBody::read(Full::new(Bytes::new()), Some(0), limits(10, 4))
            .await
            .unwrap();
        assert_eq!(
            b.sha256_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let out = b.to_outbound();
        assert!(out.is_end_stream());
        assert!(collect(out).await.is_empty());
    }
}
