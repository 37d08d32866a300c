//! The pooled HTTPS client to the endpoint: rustls with the ring provider, HTTP/1.1 keep-alive
//! or HTTP/2 when the endpoint offers it through ALPN, and an optional `--connect-to` address
//! that changes only where the TCP connection goes: SNI, certificate check, `Host` and the
//! signature all stay the endpoint's (VPC endpoints, on-premises DNS, SSH tunnels).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;

use crate::body::OutboundBody;

/// Upstream connection settings.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Where to open TCP connections instead of resolving the endpoint's host.
    pub connect_to: Option<(String, u16)>,
    /// Extra trusted roots (`--ca-bundle`), on top of the web PKI roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    /// Pooled connections idle longer than this are closed. Below the 60 s idle timeout of AWS
    /// load balancers, so the proxy closes first instead of racing a server-side close.
    pub idle_timeout: Duration,
    pub max_idle_per_host: usize,
    /// Counts open TCP connections to the endpoint (the `/metrics` gauge).
    pub open_connections: Option<Gauge>,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            connect_to: None,
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(50),
            max_idle_per_host: 256,
            open_connections: None,
        }
    }
}

pub type UpstreamClient = Client<HttpsConnector<TcpConnector>, OutboundBody>;

/// Builds the pooled client.
pub fn build_client(options: &UpstreamOptions) -> Result<UpstreamClient, rustls::Error> {
    let tls = tls_client_config(options)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(TcpConnector {
            connect_to: options.connect_to.clone().map(Arc::new),
            timeout: options.connect_timeout,
            open_connections: options.open_connections.clone(),
        });
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(options.idle_timeout)
        .pool_max_idle_per_host(options.max_idle_per_host)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .build(https))
}

/// The roots trusted for the endpoint's certificate: web PKI plus `--ca-bundle`.
pub fn root_store(options: &UpstreamOptions) -> Result<rustls::RootCertStore, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in &options.extra_roots {
        roots.add(cert.clone())?;
    }
    Ok(roots)
}

/// The endpoint's TLS settings: web PKI roots plus `--ca-bundle`, ring, TLS 1.2 and 1.3.
pub fn tls_client_config(options: &UpstreamOptions) -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = root_store(options)?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Opens TCP connections to the endpoint (or the `--connect-to` address), with a timeout and
/// `TCP_NODELAY`, trying each resolved address in turn.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    connect_to: Option<Arc<(String, u16)>>,
    timeout: Duration,
    open_connections: Option<Gauge>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("{0} resolved to no address")]
    NoAddress(String),
    #[error("TCP connect to {0} timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("TCP connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("request URI has no host")]
    NoHost,
}

impl tower::Service<Uri> for TcpConnector {
    type Response = TokioIo<CountedStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let (host, port) = match &connector.connect_to {
                Some(target) => (target.0.clone(), target.1),
                None => {
                    let host = uri.host().ok_or(ConnectError::NoHost)?;
                    let host = host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string();
                    (host, uri.port_u16().unwrap_or(443))
                }
            };
            let label = format!("{host}:{port}");
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ConnectError::Resolve(label.clone(), e))?
                .collect();
            let mut last = ConnectError::NoAddress(label.clone());
            for addr in addrs {
                match tokio::time::timeout(connector.timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(CountedStream::new(
                            stream,
                            connector.open_connections.clone(),
                        )));
                    }
                    Ok(Err(e)) => last = ConnectError::Io(addr, e),
                    Err(_) => last = ConnectError::Timeout(label.clone(), connector.timeout),
                }
            }
            Err(last)
        })
    }
}

pin_project_lite::pin_project! {
    /// A TCP stream that counts itself in the open-connections gauge while it lives.
    pub struct CountedStream {
        #[pin]
        stream: TcpStream,
        gauge: Option<Gauge>,
    }

    impl PinnedDrop for CountedStream {
        fn drop(this: Pin<&mut Self>) {
            if let Some(g) = this.project().gauge.take() {
                g.dec();
            }
        }
    }
}

impl CountedStream {
    fn new(stream: TcpStream, gauge: Option<Gauge>) -> CountedStream {
        if let Some(g) = &gauge {
            g.inc();
        }
        CountedStream { stream, gauge }
    }
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().stream.poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().stream.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().stream.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().stream.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().stream.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connection for CountedStream {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

/// Reads PEM certificates (`--ca-bundle`).
pub fn load_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("CA bundle {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "CA bundle {} contains no certificate",
            path.display()
        ));
    }
    Ok(certs)
}
