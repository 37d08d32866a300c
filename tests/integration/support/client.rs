//! A minimal HTTPS client for talking to a [`TestUpstream`] directly (no proxy):
//! one TLS connection, HTTP/1.1 or h2 as negotiated by ALPN, request targets sent
//! byte-for-byte as given. Plus [`signed_headers`] to hand-sign requests with the
//! test's own SigV4 implementation.
//!
//! [`TestUpstream`]: super::upstream::TestUpstream

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::sigv4::{self, Creds, ReceivedRequest, SigningParams};

/// Every client operation gives up after this long.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A response read completely.
#[derive(Clone, Debug)]
pub struct DirectResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub version: http::Version,
}

impl DirectResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        sigv4::header(&self.headers, name)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body_str()))
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to an upstream.
pub struct DirectConnection {
    sender: Sender,
    host: String,
    /// ALPN protocol the server picked.
    pub alpn: Option<String>,
}

/// Open a TLS connection to `addr`, sending SNI `sni` and verifying with `config`.
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("bad SNI {sni}: {e}"))?;
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))
    };
    tokio::time::timeout(CLIENT_TIMEOUT, work)
        .await
        .map_err(|_| "connect timed out".to_owned())?
}

impl DirectConnection {
    /// Connect and speak whatever protocol ALPN chose (h1 if none).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<Self, String> {
        let tls = connect_tls(addr, config, host).await?;
        let alpn = tls
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let io = TokioIo::new(tls);
        let sender = if alpn.as_deref() == Some("h2") {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("http/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            Sender::H1(send)
        };
        Ok(DirectConnection {
            sender,
            host: host.to_owned(),
            alpn,
        })
    }

    /// Send one request. `target` is the path and query exactly as it should go on
    /// the wire; `headers` are sent as given (include `host` yourself).
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: impl Into<Bytes>,
    ) -> Result<DirectResponse, String> {
        let uri = match self.sender {
            Sender::H1(_) => target.to_owned(),
            Sender::H2(_) => format!("https://{}{target}", self.host),
        };
        let mut builder = http::Request::builder().method(method).uri(uri.as_str());
        for (n, v) in headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        let req = builder
            .body(Full::new(body.into()))
            .map_err(|e| format!("bad request: {e}"))?;
        let work = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| format!("request failed: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading body: {e}"))?
                .to_bytes();
            Ok(DirectResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body,
                version: parts.version,
            })
        };
        tokio::time::timeout(CLIENT_TIMEOUT, work)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }
}

/// Headers for a request signed with the test's own SigV4: `host` first, then
/// `headers`, then the signing headers. `target` is path plus optional `?query`.
#[allow(clippy::too_many_arguments)]
pub fn signed_headers(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    creds: &Creds,
    service: &str,
    region: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    let params = SigningParams::new(creds, service, region, time);
    signed_headers_with(host, method, target, headers, body, &params)
}

/// Like [`signed_headers`] with full control over the signing parameters.
pub fn signed_headers_with(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    params: &SigningParams,
) -> Vec<(String, String)> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut all: Vec<(String, String)> = vec![("host".into(), host.to_owned())];
    all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let req = ReceivedRequest {
        method,
        raw_path: path,
        raw_query: query,
        headers: &all,
        body,
    };
    let out = sigv4::sign(&req, params);
    out.apply(&all)
}
