//! Listeners: accept connections (at most `--max-connections` at once), serve HTTP/1.1 and
//! HTTP/2 (prior knowledge) with hyper-util's auto builder, hand each request to the route whose
//! path prefix matches, and on shutdown stop accepting and let in-flight requests finish within a
//! deadline.
//!
//! What a listener serves ([`ListenerState`]: options and routes) sits behind a lock that a
//! reload swaps; connections read the options when they are accepted and the routes at every
//! request, so a reload changes both without closing a connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::error::ProxyError;
use crate::proxy::{Proxy, ProxyBody};

/// Server-side connection settings.
#[derive(Clone)]
pub struct ServerOptions {
    /// Serve HTTPS with this configuration (`--tls-cert`/`--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client may take to send its request headers (slowloris); hyper also applies it
    /// to an idle keep-alive connection waiting for its next request.
    pub header_read_timeout: Duration,
    /// Largest request head; hyper answers 431 beyond it (HTTP/1.1) or resets the stream (h2).
    pub max_header_size: usize,
    /// Connections served at once; beyond it the listener stops accepting until one closes, so
    /// new clients wait in the kernel's accept queue instead of getting an error.
    pub max_connections: usize,
    /// How long in-flight requests may continue after shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tls: None,
            header_read_timeout: Duration::from_secs(30),
            max_header_size: 64 * 1024,
            max_connections: 4096,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What one listener serves: its options and its routes, longest path prefix first.
pub struct ListenerState {
    pub options: ServerOptions,
    routes: Vec<Arc<Proxy>>,
}

impl ListenerState {
    pub fn new(options: ServerOptions, mut routes: Vec<Arc<Proxy>>) -> ListenerState {
        routes.sort_by_key(|p| std::cmp::Reverse(p.path_prefix().len()));
        ListenerState { options, routes }
    }

    pub fn routes(&self) -> &[Arc<Proxy>] {
        &self.routes
    }

    /// The route for `path`: prefix `/logs` takes `/logs` and `/logs/…`, never `/logsx`.
    pub fn route(&self, path: &str) -> Option<&Arc<Proxy>> {
        self.routes.iter().find(|p| {
            let prefix = p.path_prefix();
            match path.strip_prefix(prefix) {
                Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
                None => false,
            }
        })
    }

    fn not_found(&self, path: &str) -> hyper::Response<ProxyBody> {
        let prefixes: Vec<&str> = self.routes.iter().map(|p| p.path_prefix()).collect();
        ProxyError::NotFound(format!(
            "no route for `{path}` on this listener; the routes are under {}",
            prefixes.join(", ")
        ))
        .into_response::<Full<Bytes>>()
        .map(|b| b.map_err(|never| match never {}).boxed())
    }
}

/// A listener's state, shared with its connections and swapped by a reload.
pub type SharedState = Arc<RwLock<Arc<ListenerState>>>;

pub fn shared_state(state: ListenerState) -> SharedState {
    Arc::new(RwLock::new(Arc::new(state)))
}

fn current(shared: &SharedState) -> Arc<ListenerState> {
    match shared.read() {
        Ok(state) => state.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Serves `proxy` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    serve_shared(
        listener,
        shared_state(ListenerState::new(options, vec![proxy])),
        shutdown,
    )
    .await;
}

/// Frees a connection slot when the connection's task ends.
struct Slot {
    active: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

fn connection_builder(options: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_size.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_size).unwrap_or(u32::MAX));
    builder
}

/// Serves whatever `shared` says on `listener` until `shutdown` completes, then drains.
pub async fn serve_shared(
    listener: TcpListener,
    shared: SharedState,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let active = Arc::new(AtomicUsize::new(0));
    let freed = Arc::new(Notify::new());
    let mut at_limit = false;
    tokio::pin!(shutdown);
    loop {
        let state = current(&shared);
        if active.load(Ordering::Acquire) >= state.options.max_connections {
            if !at_limit {
                at_limit = true;
                tracing::warn!(
                    limit = state.options.max_connections,
                    "connection limit reached; new connections wait until one closes (--max-connections)"
                );
            }
            tokio::select! {
                () = freed.notified() => continue,
                () = &mut shutdown => break,
            }
        }
        at_limit = false;
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(cause = %err, "failed to accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                active.fetch_add(1, Ordering::AcqRel);
                let slot = Slot { active: active.clone(), freed: freed.clone() };
                let _ = stream.set_nodelay(true);
                // The socket moves to a worker's runtime: it leaves this one's reactor here and
                // joins the worker's there.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::warn!(client = %peer, cause = %err, "cannot hand the connection to a worker");
                        continue;
                    }
                };
                let routes = shared.clone();
                let options = state.options.clone();
                let watcher = graceful.watcher();
                crate::workers::get().spawn(move || async move {
                    let _slot = slot;
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => stream,
                        Err(err) => {
                            tracing::warn!(client = %peer, cause = %err, "cannot serve the connection");
                            return;
                        }
                    };
                    serve_connection(stream, peer, routes, &options, watcher).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let drain_timeout = current(&shared).options.drain_timeout;
    tracing::info!(deadline = %humantime::format_duration(drain_timeout), "shutting down: no new connections, draining in-flight requests");
    match tokio::time::timeout(drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("drain deadline passed; closing the remaining connections"),
    }
}

/// Serves one accepted connection (after the TLS handshake, with `--tls-cert`) until it
/// closes or the drain ends it.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    routes: SharedState,
    options: &ServerOptions,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = current(&routes);
        async move {
            let response = match state.route(req.uri().path()) {
                Some(proxy) => proxy.handle(req, peer).await,
                None => state.not_found(req.uri().path()),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let builder = connection_builder(options);
    // The same for plain TCP and TLS streams, which are different types.
    macro_rules! serve {
        ($io:expr) => {
            watcher
                .watch(
                    builder
                        .serve_connection(TokioIo::new($io), service)
                        .into_owned(),
                )
                .await
        };
    }
    let served = match &options.tls {
        None => serve!(stream),
        Some(tls) => {
            // The handshake is bounded like a header read, so a client that never finishes it
            // holds nothing up.
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            match tokio::time::timeout(options.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve!(stream),
                Ok(Err(err)) => {
                    tracing::debug!(client = %peer, cause = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(err) = served {
        tracing::debug!(client = %peer, cause = %err, "connection ended with an error");
    }
}

/// Loads the listener's certificate chain and private key (PEM) into a rustls server
/// configuration offering HTTP/2 and HTTP/1.1.
pub fn load_server_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read --tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {} is not valid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {} contains no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read a private key from --tls-key {}: {e}",
            key.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("--tls-cert and --tls-key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds a listener, with a clear error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
