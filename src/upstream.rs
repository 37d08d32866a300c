//! The pooled HTTPS client to the endpoint: rustls with the ring provider, HTTP/1.1 keep-alive
//! or HTTP/2 when the endpoint offers it through ALPN, and an optional `--connect-to` address
//! that changes only where the TCP connection goes: SNI, certificate check, `Host` and the
//! signature all stay the endpoint's (VPC endpoints, on-premises DNS, SSH tunnels).
//!
//! A connection is made in three steps, each bounded: TCP (`--connect-timeout`, per resolved
//! address), optionally an HTTP CONNECT tunnel through the corporate proxy named by
//! `HTTPS_PROXY` (unless `NO_PROXY` exempts the host), then the TLS handshake
//! (`--tls-handshake-timeout`), end to end with the endpoint even through a tunnel.
//!
//! DNS: every new connection resolves the host again (no caching here; the system resolver
//! honours the record's TTL), and a background task re-resolves the hosts of live connections
//! every [`UpstreamOptions::dns_refresh`] and retires the connections whose address is no longer
//! in the answer (see [`Live`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{
    capture_connection, CaptureConnection, Connected, Connection,
};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tower::ServiceExt as _;

use crate::body::OutboundBody;

/// Upstream connection settings.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Where to open TCP connections instead of resolving the endpoint's host.
    pub connect_to: Option<(String, u16)>,
    /// Extra trusted roots (`--ca-bundle`), on top of the web PKI roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Per address tried; a host resolving to several addresses may take a multiple of it.
    pub connect_timeout: Duration,
    /// From the TCP connection (or tunnel) being up to the TLS session being established.
    pub tls_handshake_timeout: Duration,
    /// Pooled connections idle longer than this are closed. Below the 60 s idle timeout of AWS
    /// load balancers, so the proxy closes first instead of racing a server-side close.
    pub idle_timeout: Duration,
    pub max_idle_per_host: usize,
    /// `HTTPS_PROXY`/`NO_PROXY` as read at startup (`app::Environment`); `None` connects
    /// directly. The tests' environment gives none, so the test process's own never leaks in.
    pub egress_proxy: Option<Arc<Matcher>>,
    /// How often the hosts of live connections are resolved again.
    pub dns_refresh: Duration,
    pub resolver: Resolver,
    /// Counts open connections to the endpoint (the `/metrics` gauge).
    pub open_connections: Option<Gauge>,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            connect_to: None,
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(50),
            max_idle_per_host: 256,
            egress_proxy: None,
            dns_refresh: Duration::from_secs(30),
            resolver: Resolver::system(),
            open_connections: None,
        }
    }
}

type ResolveFn =
    dyn Fn(String, u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> + Send + Sync;

/// Host name → addresses. The system resolver (getaddrinfo, so `/etc/hosts` and the TTLs of the
/// local resolver apply) unless a test swaps in its own.
#[derive(Clone)]
pub struct Resolver(Arc<ResolveFn>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    pub fn system() -> Resolver {
        Resolver(Arc::new(|host: String, port: u16| {
            Box::pin(async move {
                Ok(tokio::net::lookup_host((host.as_str(), port))
                    .await?
                    .collect())
            })
        }))
    }

    /// A resolver answering with `f(host, port)`; IP literals never reach it.
    pub fn from_fn(
        f: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Resolver {
        Resolver(Arc::new(move |host: String, port: u16| {
            let answer = f(&host, port);
            Box::pin(async move { answer })
        }))
    }

    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        (self.0)(host.to_string(), port).await
    }
}

/// The pooled clients (one per worker, so a worker's requests use connections that live on its
/// own runtime, see [`crate::workers`]; one more for callers on no worker, such as the readiness
/// probe) plus the registry of their live connections (for DNS-driven retirement).
pub struct UpstreamClient {
    clients: Vec<WorkerClient>,
    live: Arc<Live>,
}

struct WorkerClient {
    pooled: Client<Connector, OutboundBody>,
    /// The same connector without a pool: every request on a new connection. For the retry
    /// after a lost connection, which on the pooled client could land on another connection
    /// that died the same way (an endpoint restart drops all of them at once).
    fresh: Client<Connector, OutboundBody>,
}

impl UpstreamClient {
    /// Sends a request on a pooled (or new) connection, like `Client::request`.
    pub async fn request(
        &self,
        request: http::Request<OutboundBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.send(&self.here().pooled, request).await
    }

    /// Sends a request on a connection opened for it.
    pub async fn request_on_new_connection(
        &self,
        request: http::Request<OutboundBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.send(&self.here().fresh, request).await
    }

    /// This worker's client, or the last one off the workers.
    fn here(&self) -> &WorkerClient {
        let last = self.clients.len() - 1;
        let index = crate::workers::current().map_or(last, |i| i.min(last));
        &self.clients[index]
    }

    async fn send(
        &self,
        client: &Client<Connector, OutboundBody>,
        mut request: http::Request<OutboundBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        // Capturing costs allocations and a lock shared by the workers, so it is done only
        // while some connection still has no pool handle: once every live connection has
        // one, requests go out as they are. A connection opened by a request that did not
        // capture is adopted by the next request that lands on it (there is an unadopted
        // connection, so that request captures); retired by a DNS change before that, it
        // carries that one request before the pool drops it.
        if self.live.unadopted.load(Ordering::Acquire) == 0 {
            return client.request(request).await;
        }
        let capture = capture_connection(&mut request);
        let response = client.request(request).await?;
        self.live.adopt(capture);
        Ok(response)
    }
}

/// Builds the pooled clients (and, inside a runtime, their DNS refresh task).
pub fn build_client(options: &UpstreamOptions) -> Result<UpstreamClient, rustls::Error> {
    let mut tls = tls_client_config(options)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let live = Arc::new(Live::default());
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(refresh_dns(
            Arc::downgrade(&live),
            options.resolver.clone(),
            options.dns_refresh,
        ));
    }
    let connector = Connector {
        tcp: TcpConnector {
            connect_to: options.connect_to.clone().map(Arc::new),
            timeout: options.connect_timeout,
            resolver: options.resolver.clone(),
        },
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        handshake_timeout: options.tls_handshake_timeout,
        egress_proxy: options.egress_proxy.clone(),
        live: live.clone(),
        open_connections: options.open_connections.clone(),
    };
    let builder = |max_idle: usize| {
        Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.idle_timeout)
            .pool_max_idle_per_host(max_idle)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .build(connector.clone())
    };
    let clients = (0..=crate::workers::count())
        .map(|_| WorkerClient {
            pooled: builder(options.max_idle_per_host),
            fresh: builder(0),
        })
        .collect();
    Ok(UpstreamClient { clients, live })
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

/// Checks `HTTPS_PROXY`-style settings against the host the proxy dials: only `http://`
/// proxies can carry the tunnel (the TLS inside it is the endpoint's). Returns the proxy URL
/// used for `host`, if any, for the startup log.
pub fn egress_proxy_for(matcher: &Matcher, host: &str, port: u16) -> Result<Option<Uri>, String> {
    let Ok(dst) = format!("https://{}:{port}", bracket(host)).parse::<Uri>() else {
        return Ok(None);
    };
    match matcher.intercept(&dst) {
        None => Ok(None),
        Some(i) if i.uri().scheme_str() == Some("http") => Ok(Some(i.uri().clone())),
        Some(i) => Err(format!(
            "HTTPS_PROXY `{}`: only http:// proxies (HTTP CONNECT) are supported",
            i.uri()
        )),
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// TCP (direct or tunnelled through the egress proxy), then TLS to the endpoint.
#[derive(Clone)]
pub struct Connector {
    tcp: TcpConnector,
    tls: tokio_rustls::TlsConnector,
    handshake_timeout: Duration,
    egress_proxy: Option<Arc<Matcher>>,
    live: Arc<Live>,
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
    #[error("tunnel through the proxy {0}: {1}")]
    Tunnel(String, String),
    #[error("TLS handshake with {0} timed out after {1:?}")]
    TlsTimeout(String, Duration),
    #[error("TLS handshake with {0}: {1}")]
    Tls(String, std::io::Error),
}

impl ConnectError {
    /// A timeout (the proxy answers 504) rather than a refusal or failure (502).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ConnectError::Timeout(..) | ConnectError::TlsTimeout(..)
        )
    }
}

impl tower::Service<Uri> for Connector {
    type Response = UpstreamConn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamConn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let sni = uri
                .host()
                .ok_or(ConnectError::NoHost)?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let (host, port) = this.tcp.target(&uri)?;
            let label = format!("{}:{port}", bracket(&host));
            let tunnel = match &this.egress_proxy {
                Some(m) => egress_proxy_for(m, &host, port)
                    .ok()
                    .flatten()
                    .map(|proxy| (proxy, m.intercept(&uri_for(&host, port)))),
                None => None,
            };
            let (tcp, direct) = match tunnel {
                None => (this.tcp.connect(&host, port).await?, true),
                Some((proxy, intercept)) => {
                    let direct_tcp = TcpConnector {
                        connect_to: None,
                        ..this.tcp.clone()
                    };
                    let mut tunnel = Tunnel::new(proxy.clone(), direct_tcp);
                    if let Some(auth) = intercept.as_ref().and_then(|i| i.basic_auth()) {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    let io = tunnel.oneshot(uri_for(&host, port)).await.map_err(|e| {
                        ConnectError::Tunnel(
                            format!("{proxy} to {label}"),
                            crate::error::error_chain(&e),
                        )
                    })?;
                    tracing::debug!(proxy = %proxy, target = %label, "tunnel through the egress proxy established");
                    (io.into_inner(), false)
                }
            };
            let peer = tcp.peer_addr().ok();
            let server_name = ServerName::try_from(sni.clone())
                .map_err(|e| ConnectError::Tls(sni.clone(), io::Error::other(e)))?;
            let tls = match tokio::time::timeout(
                this.handshake_timeout,
                this.tls.connect(server_name, tcp),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return Err(ConnectError::Tls(sni, e)),
                Err(_) => return Err(ConnectError::TlsTimeout(sni, this.handshake_timeout)),
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            // Through a tunnel the peer is the egress proxy, whose DNS is its own business.
            let live = match (direct, peer) {
                (true, Some(peer)) => Some(this.live.register(host, port, peer)),
                _ => None,
            };
            Ok(UpstreamConn {
                io: TokioIo::new(tls),
                h2,
                live,
                _counted: Counted::new(this.open_connections.clone()),
            })
        })
    }
}

fn uri_for(host: &str, port: u16) -> Uri {
    format!("https://{}:{port}", bracket(host))
        .parse()
        .unwrap_or_else(|_| Uri::from_static("https://invalid"))
}

/// Opens TCP connections to the endpoint (or the `--connect-to` address), with a timeout and
/// `TCP_NODELAY`, trying each resolved address in turn.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    connect_to: Option<Arc<(String, u16)>>,
    timeout: Duration,
    resolver: Resolver,
}

impl TcpConnector {
    /// The host and port to dial for `uri`.
    fn target(&self, uri: &Uri) -> Result<(String, u16), ConnectError> {
        Ok(match &self.connect_to {
            Some(target) => (target.0.clone(), target.1),
            None => {
                let host = uri.host().ok_or(ConnectError::NoHost)?;
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let default_port = if uri.scheme_str() == Some("http") {
                    80
                } else {
                    443
                };
                (host, uri.port_u16().unwrap_or(default_port))
            }
        })
    }

    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let label = format!("{}:{port}", bracket(host));
        let addrs = self
            .resolver
            .resolve(host, port)
            .await
            .map_err(|e| ConnectError::Resolve(label.clone(), e))?;
        let mut last = ConnectError::NoAddress(label.clone());
        for addr in addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = ConnectError::Io(addr, e),
                Err(_) => last = ConnectError::Timeout(label.clone(), self.timeout),
            }
        }
        Err(last)
    }
}

/// Plain TCP for the CONNECT tunnel's first leg (to the egress proxy).
impl tower::Service<Uri> for TcpConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = this.target(&uri)?;
            Ok(TokioIo::new(this.connect(&host, port).await?))
        })
    }
}

/// An established TLS connection to the endpoint, as the pool holds it.
pub struct UpstreamConn {
    io: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
    live: Option<LiveGuard>,
    _counted: Counted,
}

/// Counts a connection in the open-connections gauge for as long as it lives.
struct Counted(Option<Gauge>);

impl Counted {
    fn new(gauge: Option<Gauge>) -> Counted {
        if let Some(g) = &gauge {
            g.inc();
        }
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// Travels with the pool's metadata of a connection, so a response can say which one it used.
#[derive(Clone, Copy, Debug)]
struct ConnId(u64);

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        let mut connected = Connected::new();
        if let Some(live) = &self.live {
            connected = connected.extra(ConnId(live.id));
        }
        if self.h2 {
            connected = connected.negotiated_h2();
        }
        connected
    }
}

impl hyper::rt::Read for UpstreamConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// The live direct connections of one client: host, port, peer address and the pool's handle
/// (the pool's connection metadata, captured from the first response on the connection; its
/// `poison()` is what keeps the pool from handing a connection out again).
///
/// Why poison connections rather than rebuild the pool when DNS changes: AWS load balancers
/// answer with a rotating subset of their addresses, so "the answer changed" happens all the
/// time while most connections stay perfectly good; rebuilding would reconnect (TLS and all)
/// every few refreshes. Poisoning retires exactly the connections whose address has left the
/// answer: an idle one is never handed out again and is closed at the pool's next idle sweep,
/// a busy one finishes its request and is then dropped instead of going back to the pool.
/// A failed look-up retires nothing: a DNS outage must not take working connections with it.
#[derive(Default)]
pub struct Live {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, LiveConn>>,
    /// Live connections whose pool handle has not been captured yet.
    unadopted: AtomicUsize,
}

struct LiveConn {
    host: String,
    port: u16,
    peer: SocketAddr,
    /// The pool's handle, from the first response on the connection (`None`: unadopted).
    capture: Option<CaptureConnection>,
    /// Retired before any response captured its pool handle: poisoned on adoption.
    retired: bool,
}

struct LiveGuard {
    id: u64,
    live: Arc<Live>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.live.conns.lock() {
            if conns.remove(&self.id).is_some_and(|c| c.capture.is_none()) {
                self.live.unadopted.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Live {
    fn register(self: &Arc<Self>, host: String, port: u16, peer: SocketAddr) -> LiveGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(
                id,
                LiveConn {
                    host,
                    port,
                    peer,
                    capture: None,
                    retired: false,
                },
            );
            self.unadopted.fetch_add(1, Ordering::AcqRel);
        }
        LiveGuard {
            id,
            live: self.clone(),
        }
    }

    /// Keeps the pool handle of the connection a response came on (the first time it is seen).
    fn adopt(&self, capture: CaptureConnection) {
        let id = {
            let meta = capture.connection_metadata();
            let Some(connected) = meta.as_ref() else {
                return;
            };
            let mut extensions = http::Extensions::new();
            connected.get_extras(&mut extensions);
            match extensions.get::<ConnId>() {
                Some(id) => id.0,
                None => return,
            }
        };
        let Ok(mut conns) = self.conns.lock() else {
            return;
        };
        if let Some(conn) = conns.get_mut(&id) {
            if conn.capture.is_some() {
                return;
            }
            if conn.retired {
                if let Some(c) = capture.connection_metadata().as_ref() {
                    c.poison();
                }
            }
            conn.capture = Some(capture);
            self.unadopted.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn targets(&self) -> HashSet<(String, u16)> {
        self.conns
            .lock()
            .map(|c| c.values().map(|l| (l.host.clone(), l.port)).collect())
            .unwrap_or_default()
    }

    /// Poisons the connections to `host:port` whose peer is not in `answer`; returns how many.
    fn retire(&self, host: &str, port: u16, answer: &[SocketAddr]) -> usize {
        let current: HashSet<(IpAddr, u16)> = answer.iter().map(|a| (a.ip(), a.port())).collect();
        let Ok(mut conns) = self.conns.lock() else {
            return 0;
        };
        let mut retired = 0;
        for conn in conns.values_mut() {
            if conn.retired || conn.host != host || conn.port != port {
                continue;
            }
            if !current.contains(&(conn.peer.ip(), conn.peer.port())) {
                conn.retired = true;
                retired += 1;
                if let Some(c) = conn.capture.as_ref() {
                    if let Some(connected) = c.connection_metadata().as_ref() {
                        connected.poison();
                    }
                }
            }
        }
        retired
    }
}

/// Every `interval`, resolves the hosts of the live connections again and retires those whose
/// address left the answer. Ends when the client (and its last connection) is gone.
async fn refresh_dns(live: Weak<Live>, resolver: Resolver, interval: Duration) {
    let interval = interval.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(interval).await;
        let Some(targets) = live.upgrade().map(|l| l.targets()) else {
            return;
        };
        for (host, port) in targets {
            if host.parse::<IpAddr>().is_ok() {
                continue;
            }
            match resolver.resolve(&host, port).await {
                Ok(answer) if !answer.is_empty() => {
                    let Some(l) = live.upgrade() else { return };
                    let retired = l.retire(&host, port, &answer);
                    if retired > 0 {
                        tracing::info!(
                            host = %host,
                            retired,
                            "DNS no longer returns the address of some pooled connections; retiring them"
                        );
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(host = %host, cause = %err, "DNS refresh failed; keeping the connections")
                }
            }
        }
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
