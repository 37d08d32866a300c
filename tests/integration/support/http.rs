//! A plain HTTP/1.1 client for talking to the proxy: hyper's connection API for requests with any
//! target, method, headers and body, and a raw socket for byte-exact ones.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as the client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// The headers of a gzip-compressed NDJSON body (a compressed `_bulk`).
pub const GZIP_NDJSON: &[(&str, &str)] = &[
    ("content-type", "application/x-ndjson"),
    ("content-encoding", "gzip"),
];

/// Sends one request on a fresh connection (bounded to 30 s).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    try_send(addr, method, target, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

/// [`send`] for a server that may misbehave: a refused connection, a dropped one or no answer
/// within 30 s is an `Err` saying which, not a panic.
pub async fn try_send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Resp, String> {
    let body = body.into();
    let fut = async {
        KeepAlive::try_connect(addr)
            .await?
            .request(method, target, headers, body)
            .await
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| "no complete response within 30 s".to_string())?
}

pub async fn get(addr: SocketAddr, target: &str) -> Resp {
    send(addr, "GET", target, &[], Bytes::new()).await
}

/// An HTTP/1.1 connection to `addr` with its driver on a task of its own, for requests whose
/// bodies a test sends or reads as streams.
pub async fn connection<B>(addr: SocketAddr) -> SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    try_connection(addr).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`connection`], with a refused connection or a failed handshake as an `Err` saying which.
pub async fn try_connection<B>(addr: SocketAddr) -> Result<SendRequest<B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One kept-alive HTTP/1.1 connection to the proxy, for requests that must share it (the
/// proxy serves a client connection on one worker, with that worker's upstream pool).
pub struct KeepAlive {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> KeepAlive {
        Self::try_connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_connect(addr: SocketAddr) -> Result<KeepAlive, String> {
        let sender = try_connection(addr).await?;
        Ok(KeepAlive { addr, sender })
    }

    /// A GET on this connection (bounded to 30 s).
    pub async fn get(&mut self, target: &str) -> Resp {
        self.send("GET", target, &[], Bytes::new()).await
    }

    /// Any request on this connection (bounded to 30 s).
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.request(method, target, headers, body.into()),
        )
        .await
        .expect("request finished within 30 s")
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    /// Sends one request on this connection (a `Host` of the proxy's address unless given).
    async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Resp, String> {
        let mut req = http::Request::builder().method(method).uri(target);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", self.addr.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection unusable: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("no response: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

/// Writes `request` byte for byte and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request head and the first part of its body on a raw connection; the caller sends the
/// rest (or does not).
pub async fn start_upload(
    addr: std::net::SocketAddr,
    len: usize,
    first: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /_bulk HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-ndjson\r\nContent-Length: {len}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    conn
}

/// The response head on `conn`, waiting at most `wait`.
pub async fn response_head(conn: &mut tokio::net::TcpStream, wait: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    String::from_utf8_lossy(&got).into_owned()
}
