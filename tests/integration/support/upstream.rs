//! `TestUpstream`: an in-process HTTPS server that plays the AWS front end of an
//! OpenSearch domain (`es`) or collection (`aoss`).
//!
//! For every request it:
//! 1. reads the whole body (bounded in time, hashed while streaming),
//! 2. mutates headers like the AWS load balancer does — drops `Connection` and
//!    appends `127.0.0.1` to `X-Forwarded-For` — so a proxy that signed either fails,
//! 3. checks the host belongs to this endpoint, then verifies SigV4 with the
//!    independent verifier in [`super::sigv4`],
//! 4. answers 403/400 with the AWS-style body on failure, or dispatches to a route
//!    / handler on success,
//! 5. records everything ([`Recorded`]) for the test to inspect.
//!
//! ```ignore
//! let up = TestUpstream::builder().service("es").region("us-east-1").creds(creds).start().await;
//! // ... point the proxy at up.addr() with --ca-bundle up.ca_bundle_path() ...
//! let seen = up.wait_for_requests(1, Duration::from_secs(2)).await;
//! assert!(seen[0].verification.is_ok());
//! ```
//!
//! Requests refused before verification (body over [`TestUpstreamBuilder::max_body`]
//! → 413, or a body that could not be read in time → connection dropped) are not
//! recorded.
//!
//! The server never panics on odd input: malformed requests are answered or the
//! connection is dropped; TLS handshakes, header reads and body reads are all
//! time-bounded. The server stops when the `TestUpstream` is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::sigv4::{self, Creds, ReceivedRequest, SigError, Verified, VerifyContext};
use super::tls::{Alpn, TestPki};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RECORD_BODY_LIMIT: usize = 1 << 20;
const DEFAULT_STREAM_CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/// The body of a [`Reply`].
#[derive(Clone, Debug)]
pub enum ReplyBody {
    Bytes(Bytes),
    /// `len` bytes of [`generated_byte`] pattern, produced `chunk` bytes at a time
    /// (never allocated as a whole).
    Generated {
        len: u64,
        chunk: usize,
    },
    /// `first`, then nothing until `gate` opens (or `wait` passes, which the gate records),
    /// then `rest`: a client can only see `first` before the gate opens if the body streams.
    Gated(Box<GatedParts>),
}

/// The parts of a [`ReplyBody::Gated`] body (boxed: `Reply` stays small).
#[derive(Clone, Debug)]
pub struct GatedParts {
    pub first: Bytes,
    pub rest: Bytes,
    pub gate: Arc<Gate>,
    pub wait: Duration,
}

/// The gate of a [`ReplyBody::Gated`] body.
#[derive(Debug, Default)]
pub struct Gate {
    opened: tokio::sync::Notify,
    timed_out: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// Lets the rest of the body go (also when called before the body waits).
    pub fn open(&self) {
        self.opened.notify_one();
    }

    /// True when the body gave up waiting and sent the rest without the gate opening.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::SeqCst)
    }
}

/// Byte `i` of a [`ReplyBody::Generated`] body, so tests can check integrity.
pub fn generated_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// What the upstream answers to a verified request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    /// Sleep this long before sending anything (timeout tests).
    pub stall: Option<Duration>,
    /// Drop the connection (HTTP/1.1) / reset the stream (h2) instead of answering.
    pub close: bool,
}

impl Reply {
    /// Status with an empty body.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Bytes(Bytes::new()),
            stall: None,
            close: false,
        }
    }

    /// Status with a body and `content-type`.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Reply {
            body: ReplyBody::Bytes(body.into()),
            ..Reply::status(status)
        }
        .header("content-type", content_type)
    }

    /// Status with a JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply::bytes(status, "application/json; charset=UTF-8", value.to_string())
    }

    /// Status with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Reply::bytes(status, "text/plain; charset=UTF-8", body.into())
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Reply::status(status).header("location", location)
    }

    /// 200 with `len` generated bytes, streamed in 64 KiB chunks.
    pub fn streamed(len: u64) -> Self {
        Reply {
            body: ReplyBody::Generated {
                len,
                chunk: DEFAULT_STREAM_CHUNK,
            },
            ..Reply::status(200)
        }
        .header("content-type", "application/octet-stream")
    }

    /// 200 with `first`, then `rest` once `gate` opens (or after `wait`).
    pub fn gated(first: Bytes, rest: Bytes, gate: Arc<Gate>, wait: Duration) -> Self {
        Reply {
            body: ReplyBody::Gated(Box::new(GatedParts {
                first,
                rest,
                gate,
                wait,
            })),
            ..Reply::status(200)
        }
        .header("content-type", "application/octet-stream")
    }

    /// Drop the connection without answering.
    pub fn close_connection() -> Self {
        Reply {
            close: true,
            ..Reply::status(500)
        }
    }

    /// Add a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Add a `Set-Cookie` header.
    pub fn set_cookie(self, cookie: &str) -> Self {
        self.header("set-cookie", cookie)
    }

    /// Sleep before sending the response head.
    pub fn stall(mut self, delay: Duration) -> Self {
        self.stall = Some(delay);
        self
    }

    /// Gzip a byte body and mark it `content-encoding: gzip`.
    pub fn gzipped(mut self) -> Self {
        if let ReplyBody::Bytes(b) = &self.body {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            // Writing to a Vec cannot fail.
            let compressed = enc
                .write_all(b)
                .and_then(|_| enc.finish())
                .unwrap_or_default();
            self.body = ReplyBody::Bytes(compressed.into());
            self.headers
                .push(("content-encoding".into(), "gzip".into()));
        }
        self
    }
}

// ---------------------------------------------------------------------------
// Recorded requests
// ---------------------------------------------------------------------------

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// 0-based arrival order.
    pub seq: u64,
    /// Which accepted TCP connection carried it (0-based), to check pooling.
    pub connection_id: u64,
    pub method: String,
    /// Path exactly as on the wire (percent-encoding untouched).
    pub raw_path: String,
    /// Query exactly as on the wire, without `?`.
    pub raw_query: Option<String>,
    /// Headers as received, in order (h2 `:authority` appears as `host`).
    pub headers: Vec<(String, String)>,
    /// Headers after the front-end mutation; these were verified.
    pub frontend_headers: Vec<(String, String)>,
    /// The body, up to the recording limit (see `body_len` for the real size).
    pub body: Bytes,
    pub body_len: u64,
    pub body_sha256: String,
    pub version: http::Version,
    /// ALPN protocol negotiated on the connection.
    pub alpn: Option<String>,
    /// SNI server name the client sent.
    pub sni: Option<String>,
    /// Upstream clock when the request was verified.
    pub received_at: SystemTime,
    pub verification: Result<Verified, SigError>,
}

impl Recorded {
    /// First value of a received header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        sigv4::header(&self.headers, name)
    }

    /// All values of a received header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Path plus `?query` as on the wire.
    pub fn path_and_query(&self) -> String {
        match &self.raw_query {
            Some(q) => format!("{}?{q}", self.raw_path),
            None => self.raw_path.clone(),
        }
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn verified(&self) -> bool {
        self.verification.is_ok()
    }
}

// ---------------------------------------------------------------------------
// Builder and shared state
// ---------------------------------------------------------------------------

/// Handler for verified requests.
pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Route {
    method: String,
    path: String,
    reply: Reply,
}

/// Configure and start a [`TestUpstream`].
pub struct TestUpstreamBuilder {
    service: String,
    region: String,
    creds: Vec<Creds>,
    host_name: Option<String>,
    check_host: bool,
    alpn: Alpn,
    pki: Option<Arc<TestPki>>,
    handler: Option<Handler>,
    routes: Vec<Route>,
    max_body: u64,
    record_body_limit: usize,
    body_read_timeout: Duration,
    idle: Option<IdleClose>,
}

/// What the upstream does with connections that have been idle (no request in flight) for a
/// while, like a load balancer's idle timeout.
#[derive(Clone, Copy, Debug)]
pub enum IdleClose {
    /// Close the connection once it has been idle this long (HTTP/1.1: FIN; h2: GOAWAY).
    After(Duration),
    /// Keep idle connections open, but drop unanswered the first request that arrives on a
    /// connection idle longer than this, and close it: the race where the server's idle timer
    /// fires just as the client reuses the connection. Counted in
    /// [`TestUpstream::lost_requests`], never recorded.
    LoseRequestAfter(Duration),
}

impl TestUpstreamBuilder {
    /// `es` (default) or `aoss`.
    pub fn service(mut self, service: &str) -> Self {
        self.service = service.to_owned();
        self
    }

    /// Default `us-east-1`.
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_owned();
        self
    }

    /// Accept these credentials (may be called several times).
    pub fn creds(mut self, creds: Creds) -> Self {
        self.creds.push(creds);
        self
    }

    /// Override the endpoint host name (default `search-test-<id>.<region>.es.amazonaws.com`).
    pub fn host_name(mut self, host: &str) -> Self {
        self.host_name = Some(host.to_owned());
        self
    }

    /// Accept any `Host` (default: the host must be [`TestUpstream::host_name`]).
    pub fn any_host(mut self) -> Self {
        self.check_host = false;
        self
    }

    /// Offer only `http/1.1` via ALPN.
    pub fn http1_only(mut self) -> Self {
        self.alpn = Alpn::Http11Only;
        self
    }

    /// Use an existing PKI (e.g. shared with a second upstream).
    pub fn pki(mut self, pki: Arc<TestPki>) -> Self {
        self.pki = Some(pki);
        self
    }

    /// Answer verified requests with `handler` (default: JSON echo).
    pub fn handler(mut self, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Answer verified `method` (or `*`) requests to exactly `path` with `reply`.
    pub fn route(mut self, method: &str, path: &str, reply: Reply) -> Self {
        self.routes.push(Route {
            method: method.to_owned(),
            path: path.to_owned(),
            reply,
        });
        self
    }

    /// Reject bodies larger than `bytes` with 413 (like a domain's payload limit).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Keep at most `bytes` of each request body in [`Recorded::body`] (default 1 MiB).
    pub fn record_body_limit(mut self, bytes: usize) -> Self {
        self.record_body_limit = bytes;
        self
    }

    /// Give up reading a request body after this long (default 60 s).
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Close (or race) kept-alive connections idle for a while; see [`IdleClose`].
    pub fn idle_close(mut self, idle: IdleClose) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Bind `127.0.0.1:0` and start serving.
    pub async fn start(self) -> TestUpstream {
        let host_name = self
            .host_name
            .unwrap_or_else(|| default_host_name(&self.service, &self.region));
        let pki = match self.pki {
            Some(p) => p,
            None if super::tls::DEFAULT_SANS
                .iter()
                .any(|san| san_covers(san, &host_name)) =>
            {
                Arc::new(TestPki::new())
            }
            None => Arc::new(TestPki::with_extra_sans(&[&host_name])),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener has an address");
        let shared = Arc::new(Shared {
            config: Config {
                service: self.service.clone(),
                region: self.region.clone(),
                host_name: host_name.clone(),
                check_host: self.check_host,
                max_body: self.max_body,
                record_body_limit: self.record_body_limit,
                body_read_timeout: self.body_read_timeout,
                idle: self.idle,
            },
            state: Mutex::new(State {
                creds: self.creds,
                expired_tokens: Vec::new(),
                clock_offset_secs: 0,
                handler: self.handler.unwrap_or_else(|| Arc::new(echo_reply)),
                routes: self.routes,
            }),
            requests: Mutex::new(Vec::new()),
            request_arrived: tokio::sync::Notify::new(),
            connections: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            open: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            restart: tokio::sync::watch::channel(0).0,
        });
        let tls = tokio_rustls::TlsAcceptor::from(pki.server_config(self.alpn));
        let accept_task = tokio::spawn(accept_loop(listener, tls, shared.clone()));
        TestUpstream {
            shared,
            addr,
            pki,
            host_name,
            accept_task,
        }
    }
}

struct Config {
    service: String,
    region: String,
    host_name: String,
    check_host: bool,
    max_body: u64,
    record_body_limit: usize,
    body_read_timeout: Duration,
    idle: Option<IdleClose>,
}

struct State {
    creds: Vec<Creds>,
    expired_tokens: Vec<String>,
    clock_offset_secs: i64,
    handler: Handler,
    routes: Vec<Route>,
}

struct Shared {
    config: Config,
    state: Mutex<State>,
    requests: Mutex<Vec<Recorded>>,
    request_arrived: tokio::sync::Notify,
    connections: AtomicU64,
    handshakes: AtomicU64,
    seq: AtomicU64,
    /// Requests dropped by [`IdleClose::LoseRequestAfter`].
    lost: AtomicU64,
    /// Connections being served now.
    open: AtomicU64,
    /// Request body bytes received so far, all requests together, counted as they arrive.
    body_bytes: AtomicU64,
    /// Bumped by [`TestUpstream::drop_connections`]; every connection task watches it.
    restart: tokio::sync::watch::Sender<u64>,
}

/// Lock ignoring poisoning: a panicking test thread must not wedge the server.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn now(&self) -> SystemTime {
        let offset = lock(&self.state).clock_offset_secs;
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_secs(offset as u64)
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        }
    }
}

// ---------------------------------------------------------------------------
// TestUpstream
// ---------------------------------------------------------------------------

/// A running fake AWS endpoint. Stops when dropped.
pub struct TestUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    pki: Arc<TestPki>,
    host_name: String,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.accept_task.abort();
    }
}

impl TestUpstream {
    /// An upstream for `service` in us-east-1 that accepts `creds`, with the default handler.
    pub async fn start_for(service: &str, creds: Creds) -> TestUpstream {
        TestUpstream::builder()
            .service(service)
            .region("us-east-1")
            .creds(creds)
            .start()
            .await
    }

    pub fn builder() -> TestUpstreamBuilder {
        TestUpstreamBuilder {
            service: "es".into(),
            region: "us-east-1".into(),
            creds: Vec::new(),
            host_name: None,
            check_host: true,
            alpn: Alpn::H2AndHttp11,
            pki: None,
            handler: None,
            routes: Vec::new(),
            max_body: u64::MAX,
            record_body_limit: DEFAULT_RECORD_BODY_LIMIT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle: None,
        }
    }

    /// The listening socket (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint's DNS name, e.g. `search-test-k3j9x0a1bc.us-east-1.es.amazonaws.com`.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// `https://<host_name>:<port>`.
    pub fn endpoint_url(&self) -> String {
        format!("https://{}:{}", self.host_name, self.addr.port())
    }

    pub fn service(&self) -> &str {
        &self.shared.config.service
    }

    pub fn region(&self) -> &str {
        &self.shared.config.region
    }

    pub fn pki(&self) -> &Arc<TestPki> {
        &self.pki
    }

    /// PEM file with the CA that signed the upstream's certificate.
    pub fn ca_bundle_path(&self) -> &std::path::Path {
        self.pki.ca_bundle_path()
    }

    /// The upstream's clock (real time plus the configured offset).
    pub fn now(&self) -> SystemTime {
        self.shared.now()
    }

    /// All requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// All requests so far, clearing the record.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut *lock(&self.shared.requests))
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Wait until at least `n` requests were recorded; panics after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.request_arrived.notified();
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen = self.requests();
                if seen.len() >= n {
                    return seen;
                }
                panic!(
                    "upstream saw {} request(s) within {timeout:?}, expected {n}: {:?}",
                    seen.len(),
                    seen.iter()
                        .map(|r| format!("{} {}", r.method, r.path_and_query()))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Successful TLS handshakes so far.
    pub fn tls_handshakes(&self) -> u64 {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Requests dropped unanswered by [`IdleClose::LoseRequestAfter`].
    pub fn lost_requests(&self) -> u64 {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// Connections open now (TLS established, not yet closed).
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Request body bytes received so far, all requests together, as they arrive (before a
    /// request is complete).
    pub fn body_bytes_received(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::Relaxed)
    }

    /// Waits (at most `wait`) until [`Self::body_bytes_received`] reaches `bytes`; returns it.
    pub async fn wait_for_body_bytes(&self, bytes: u64, wait: Duration) -> u64 {
        let until = tokio::time::Instant::now() + wait;
        while self.body_bytes_received() < bytes && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.body_bytes_received()
    }

    /// What a restart looks like from the network: every open connection is dropped at once,
    /// in the middle of whatever it was doing (no `close_notify`, no GOAWAY), while the listener
    /// keeps accepting new ones.
    pub fn drop_connections(&self) {
        self.shared
            .restart
            .send_modify(|generation| *generation += 1);
    }

    /// Replace the handler for verified requests.
    pub fn set_handler(&self, handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        lock(&self.shared.state).handler = Arc::new(handler);
    }

    /// Add a route (checked before the handler; earlier routes win).
    pub fn add_route(&self, method: &str, path: &str, reply: Reply) {
        lock(&self.shared.state).routes.push(Route {
            method: method.to_owned(),
            path: path.to_owned(),
            reply,
        });
    }

    pub fn clear_routes(&self) {
        lock(&self.shared.state).routes.clear();
    }

    /// Accept only `creds` from now on (old keys get "security token ... invalid").
    pub fn rotate_creds(&self, creds: Creds) {
        lock(&self.shared.state).creds = vec![creds];
    }

    /// Additionally accept `creds`.
    pub fn add_creds(&self, creds: Creds) {
        lock(&self.shared.state).creds.push(creds);
    }

    /// Stop accepting `access_key`.
    pub fn revoke_key(&self, access_key: &str) {
        lock(&self.shared.state)
            .creds
            .retain(|c| c.access_key != access_key);
    }

    /// Treat session `token` as expired ("The security token included in the request is expired").
    pub fn expire_token(&self, token: &str) {
        lock(&self.shared.state)
            .expired_tokens
            .push(token.to_owned());
    }

    /// Shift the upstream clock (signature window and `Date` header) by `secs`
    /// (positive: the upstream is ahead of real time).
    pub fn set_clock_offset_secs(&self, secs: i64) {
        lock(&self.shared.state).clock_offset_secs = secs;
    }

    /// The upstream clock runs `offset` ahead of real time.
    pub fn set_clock_offset(&self, offset: Duration) {
        self.set_clock_offset_secs(offset.as_secs() as i64);
    }

    /// The upstream clock runs `offset` behind real time.
    pub fn set_clock_behind(&self, offset: Duration) {
        self.set_clock_offset_secs(-(offset.as_secs() as i64));
    }
}

/// `search-test-<id>.<region>.es.amazonaws.com` or `<id>.<region>.aoss.amazonaws.com`.
fn default_host_name(service: &str, region: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?}{}{}",
        SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let id: String = Sha256::digest(seed.as_bytes())
        .iter()
        .take(10)
        .map(|b| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(*b % 36) as usize]))
        .collect();
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    if service == "aoss" {
        format!("{id}.{region}.aoss.{suffix}")
    } else {
        format!("search-test-{id}.{region}.{service}.{suffix}")
    }
}

/// Does certificate name `san` (possibly `*.` wildcard) cover `host`?
fn san_covers(san: &str, host: &str) -> bool {
    match san.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(base)),
        None => san.eq_ignore_ascii_case(host),
    }
}

// ---------------------------------------------------------------------------
// Server tasks
// ---------------------------------------------------------------------------

async fn accept_loop(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    // e.g. EMFILE: back off briefly rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let id = shared.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(serve_connection(tcp, tls.clone(), shared.clone(), id));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Per-connection facts handed to every request on it.
#[derive(Clone)]
struct ConnInfo {
    id: u64,
    alpn: Option<String>,
    sni: Option<String>,
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    tls: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    id: u64,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        _ => return, // handshake failed or timed out
    };
    shared.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut restart = shared.restart.subscribe();
    restart.mark_unchanged();
    let (_, session) = stream.get_ref();
    let info = ConnInfo {
        id,
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        sni: session.server_name().map(str::to_owned),
    };

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .auto_date_header(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .auto_date_header(false);
    let builder = match info.alpn.as_deref() {
        Some("h2") => builder.http2_only(),
        Some(_) => builder.http1_only(),
        None => builder,
    };
    let activity = Arc::new(Activity::new());
    let idle = shared.config.idle;
    let served = shared.clone();
    let conn_activity = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = served.clone();
        let info = info.clone();
        let activity = conn_activity.clone();
        async move {
            if let Some(IdleClose::LoseRequestAfter(limit)) = idle {
                if activity.idle_for().is_some_and(|d| d > limit) {
                    activity.touch();
                    shared.lost.fetch_add(1, Ordering::SeqCst);
                    activity.close.notify_one();
                    return Err(CloseConnection);
                }
            }
            let busy = activity.begin();
            handle(req, shared, info).await.map(|resp| {
                resp.map(|body| {
                    body.map_frame(move |f| {
                        let _ = &busy;
                        f
                    })
                    .boxed()
                })
            })
        }
    });
    shared.open.fetch_add(1, Ordering::SeqCst);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    // Errors (client went away, protocol errors, deliberate closes) just end the connection.
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = restart.changed() => break,
            () = activity.close.notified() => break,
            () = tokio::time::sleep(Duration::from_millis(20)), if !closing => {
                if let Some(IdleClose::After(limit)) = idle {
                    if activity.idle_for().is_some_and(|d| d >= limit) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
}

/// When a connection last finished a response, and how many are in progress on it.
struct Activity {
    state: Mutex<(std::time::Instant, usize)>,
    close: tokio::sync::Notify,
}

/// Marks a request in progress until dropped (with its response body).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.0 = std::time::Instant::now();
        s.1 -= 1;
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new((std::time::Instant::now(), 0)),
            close: tokio::sync::Notify::new(),
        }
    }

    /// How long nothing has been in progress; `None` while a request is.
    fn idle_for(&self) -> Option<Duration> {
        let s = lock(&self.state);
        (s.1 == 0).then(|| s.0.elapsed())
    }

    fn touch(&self) {
        lock(&self.state).0 = std::time::Instant::now();
    }

    fn begin(self: &Arc<Self>) -> Busy {
        lock(&self.state).1 += 1;
        Busy(self.clone())
    }
}

/// Error returned by the service to make hyper drop the connection.
#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("test upstream closes the connection")
    }
}

impl std::error::Error for CloseConnection {}

type RespBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Read the body: hash all of it, keep the first `keep` bytes, give up past `max`.
enum BodyRead {
    Complete {
        kept: Bytes,
        len: u64,
        sha256: String,
    },
    TooLarge,
    Failed(String),
}

async fn read_body(
    mut body: Incoming,
    keep: usize,
    max: u64,
    timeout: Duration,
    counted: &AtomicU64,
) -> BodyRead {
    let work = async {
        let mut hasher = Sha256::new();
        let mut kept = BytesMut::new();
        let mut len: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return BodyRead::Failed(e.to_string()),
            };
            if let Ok(data) = frame.into_data() {
                counted.fetch_add(data.len() as u64, Ordering::Relaxed);
                len += data.len() as u64;
                if len > max {
                    return BodyRead::TooLarge;
                }
                hasher.update(&data);
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..room.min(data.len())]);
            }
        }
        BodyRead::Complete {
            kept: kept.freeze(),
            len,
            sha256: hex::encode(hasher.finalize()),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => BodyRead::Failed(format!("body not complete within {timeout:?}")),
    }
}

/// The AWS front end's header mutation: drop `Connection`, append to `X-Forwarded-For`.
pub fn frontend_mutate(headers: &[(String, String)]) -> Vec<(String, String)> {
    let xff: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, v)| v.as_str())
        .collect();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("connection") && !n.eq_ignore_ascii_case("x-forwarded-for")
        })
        .cloned()
        .collect();
    let mut chain = xff.join(", ");
    if !chain.is_empty() {
        chain.push_str(", ");
    }
    chain.push_str("127.0.0.1");
    out.push(("x-forwarded-for".into(), chain));
    out
}

fn request_id(seq: u64) -> String {
    let h = Sha256::digest(format!("{seq}{:?}", SystemTime::now()).as_bytes());
    let x = hex::encode(&h[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    conn: ConnInfo,
) -> Result<Response<RespBody>, CloseConnection> {
    let (parts, body) = req.into_parts();
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst);
    let rid = request_id(seq);
    let cfg = &shared.config;

    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if sigv4::header(&headers, "host").is_none() {
        if let Some(authority) = parts.uri.authority() {
            headers.insert(0, ("host".into(), authority.as_str().to_owned()));
        }
    }
    let raw_path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().map(str::to_owned);

    let body = read_body(
        body,
        cfg.record_body_limit,
        cfg.max_body,
        cfg.body_read_timeout,
        &shared.body_bytes,
    )
    .await;
    let (kept, body_len, body_sha256) = match body {
        BodyRead::Complete { kept, len, sha256 } => (kept, len, sha256),
        BodyRead::TooLarge => {
            let msg = format!("Request size exceeded {} bytes", cfg.max_body);
            return Ok(respond(
                &shared,
                Reply::json(413, &serde_json::json!({ "Message": msg })),
                &rid,
            ));
        }
        BodyRead::Failed(_) => return Err(CloseConnection),
    };

    let frontend_headers = frontend_mutate(&headers);
    let now = shared.now();
    let (creds, expired, handler, routes) = {
        let st = lock(&shared.state);
        (
            st.creds.clone(),
            st.expired_tokens.clone(),
            st.handler.clone(),
            st.routes.clone(),
        )
    };

    let host_ok = !cfg.check_host
        || sigv4::header(&frontend_headers, "host")
            .is_some_and(|h| host_matches(h, &cfg.host_name));
    let verification = if host_ok {
        let method = parts.method.as_str().to_owned();
        let received = ReceivedRequest {
            method: &method,
            raw_path: &raw_path,
            raw_query: raw_query.as_deref(),
            headers: &frontend_headers,
            body: &[],
        };
        let mut ctx = VerifyContext::new(&creds, &cfg.service, &cfg.region, now);
        ctx.expired_tokens = &expired;
        sigv4::verify_prehashed(&received, &body_sha256, &ctx)
    } else {
        Err(SigError::WrongHost {
            expected: cfg.host_name.clone(),
            got: sigv4::header(&frontend_headers, "host")
                .unwrap_or("")
                .to_owned(),
        })
    };

    let recorded = Recorded {
        seq,
        connection_id: conn.id,
        method: parts.method.as_str().to_owned(),
        raw_path,
        raw_query,
        headers,
        frontend_headers,
        body: kept,
        body_len,
        body_sha256,
        version: parts.version,
        alpn: conn.alpn.clone(),
        sni: conn.sni.clone(),
        received_at: now,
        verification,
    };
    lock(&shared.requests).push(recorded.clone());
    shared.request_arrived.notify_waiters();

    let reply = match &recorded.verification {
        Err(e) => Reply::bytes(
            e.status(),
            "application/json",
            e.aws_body(&cfg.service, &rid),
        )
        .header("x-amzn-ErrorType", e.error_type()),
        Ok(_) => routes
            .iter()
            .find(|r| {
                (r.method == "*" || r.method.eq_ignore_ascii_case(&recorded.method))
                    && r.path == recorded.raw_path
            })
            .map(|r| r.reply.clone())
            .unwrap_or_else(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| handler(&recorded)))
                    .unwrap_or_else(|_| Reply::text(500, "test upstream: handler panicked"))
            }),
    };

    if let Some(delay) = reply.stall {
        tokio::time::sleep(delay).await;
    }
    if reply.close {
        return Err(CloseConnection);
    }
    Ok(respond(&shared, reply, &rid))
}

/// `host[:port]` matches the endpoint name (port ignored, case-insensitive).
fn host_matches(host_header: &str, expected: &str) -> bool {
    let host = match host_header.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_header,
    };
    host.eq_ignore_ascii_case(expected)
}

fn respond(shared: &Shared, reply: Reply, rid: &str) -> Response<RespBody> {
    let body: RespBody = match reply.body {
        ReplyBody::Bytes(b) => http_body_util::Full::new(b).boxed(),
        ReplyBody::Generated { len, chunk } => GeneratedBody::new(len, chunk).boxed(),
        ReplyBody::Gated(parts) => {
            let GatedParts {
                first,
                rest,
                gate,
                wait,
            } = *parts;
            let parts = futures_util::stream::unfold(Some(false), move |state| {
                let (first, rest, gate) = (first.clone(), rest.clone(), gate.clone());
                async move {
                    let frame = match state? {
                        false => (Frame::data(first), Some(true)),
                        true => {
                            if tokio::time::timeout(wait, gate.opened.notified())
                                .await
                                .is_err()
                            {
                                gate.timed_out.store(true, Ordering::SeqCst);
                            }
                            (Frame::data(rest), None)
                        }
                    };
                    Some((Ok::<_, Infallible>(frame.0), frame.1))
                }
            });
            http_body_util::StreamBody::new(parts).boxed()
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    for (n, v) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.append(n, v);
        }
    }
    if !headers.contains_key(http::header::DATE) {
        if let Ok(v) = http::HeaderValue::from_str(&sigv4::format_http_date(shared.now())) {
            headers.insert(http::header::DATE, v);
        }
    }
    if let Ok(v) = http::HeaderValue::from_str(rid) {
        headers.insert("x-amzn-requestid", v);
    }
    resp
}

/// Streams `len` bytes of [`generated_byte`] without allocating them.
struct GeneratedBody {
    pattern: Bytes,
    sent: u64,
    len: u64,
    chunk: usize,
}

impl GeneratedBody {
    fn new(len: u64, chunk: usize) -> Self {
        let chunk = chunk.max(1);
        let pattern: Vec<u8> = (0..(chunk + 251) as u64).map(generated_byte).collect();
        GeneratedBody {
            pattern: pattern.into(),
            sent: 0,
            len,
            chunk,
        }
    }
}

impl hyper::body::Body for GeneratedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let remaining = self.len - self.sent;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let n = remaining.min(self.chunk as u64) as usize;
        let start = (self.sent % 251) as usize;
        let data = self.pattern.slice(start..start + n);
        self.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.len
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.len - self.sent)
    }
}

/// The default handler: 200 with JSON describing what arrived.
pub fn echo_reply(req: &Recorded) -> Reply {
    let mut headers = serde_json::Map::new();
    for (n, v) in &req.headers {
        let key = n.to_ascii_lowercase();
        let value = match headers.get(&key).and_then(|x| x.as_str()) {
            Some(prev) => format!("{prev},{v}"),
            None => v.clone(),
        };
        headers.insert(key, serde_json::Value::String(value));
    }
    Reply::json(
        200,
        &serde_json::json!({
            "method": req.method,
            "path": req.raw_path,
            "query": req.raw_query,
            "body_len": req.body_len,
            "body_sha256": req.body_sha256,
            "http_version": format!("{:?}", req.version),
            "alpn": req.alpn,
            "headers": headers,
        }),
    )
}
