//! The per-request pipeline, top to bottom: target → body → credentials → sign → forward →
//! stream back. Every failure is a [`ProxyError`] rendered once; every request ends in one access
//! log line written when its response body has been sent (or the client went away).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use aws_credential_types::Credentials;
use futures_util::StreamExt as _;

use crate::auth::Authenticator;
use crate::body::{BodyLimits, OutboundBody, Payload, RequestBody, SpooledBody};
use crate::credentials::{key_id_tail, same_key, CredentialCache};
use crate::endpoint::Endpoint;
use crate::error::{error_chain, find_source, ProxyError};
use crate::headers::{prepare_request_headers, prepare_response_headers, ClientView};
use crate::metrics::{Metrics, RequestMetrics, Retry, RouteMetrics};
use crate::policy::{BodySource, Decision, Policy, RequestFacts};
use crate::signing::{classify_rejection, wire_query, Clock, Rejection, SignInput, Signer};
use crate::upstream::{ConnectError, UpstreamClient};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Everything a request needs; shared by all connections.
pub struct Proxy {
    endpoint: Endpoint,
    authority: String,
    /// The host as it goes upstream and is signed: the HTTP/1.1 `Host` header (which the
    /// client adds from the URI) and the HTTP/2 `:authority`, the same either way. It leaves
    /// out a default port (`:443`), as the client's `Host` does.
    wire_host: String,
    base_url: String,
    signer: Signer,
    client: UpstreamClient,
    credentials: CredentialCache,
    limits: BodyLimits,
    payload: Payload,
    response_timeout: Duration,
    /// `http` or `https`: how clients reach this listener (for redirects and cookies).
    scheme: &'static str,
    listen: SocketAddr,
    policy: Option<Arc<Policy>>,
    auth: Option<Arc<Authenticator>>,
    /// `""` or `/prefix`: removed before forwarding, added back to redirects and cookie paths.
    path_prefix: String,
    request_timeout: Option<Duration>,
    metrics: Arc<Metrics>,
    /// This route's share of `metrics`, with its `route` label.
    route_metrics: Arc<RouteMetrics>,
}

/// What a route's proxy is made of, built from its configuration by [`crate::app`].
pub struct ProxyParts {
    pub endpoint: Endpoint,
    pub signer: Signer,
    pub client: UpstreamClient,
    pub credentials: CredentialCache,
    pub limits: BodyLimits,
    pub payload: Payload,
    pub response_timeout: Duration,
    /// Clients reach the listener over HTTPS (for redirects and cookies).
    pub inbound_tls: bool,
    pub listen: SocketAddr,
    pub policy: Option<Arc<Policy>>,
    pub auth: Option<Arc<Authenticator>>,
    /// `""` or `/prefix`.
    pub path_prefix: String,
    pub request_timeout: Option<Duration>,
    /// Shared with the admin listener and the credential provider.
    pub metrics: Arc<Metrics>,
}

/// What the pipeline learned about a request, for its access-log line.
#[derive(Default)]
struct Notes {
    principal: Option<String>,
    /// `allow on R`, `allow (Sid) on R`, `deny (Sid)`; `None` without a policy.
    policy: Option<String>,
    bytes_in: u64,
}

impl Proxy {
    /// The proxy made of `parts` (see [`crate::app::proxy_for`]).
    pub fn new(parts: ProxyParts) -> Proxy {
        let endpoint = parts.endpoint;
        let route = format!("{}{}", endpoint.host, parts.path_prefix);
        let wire_host = match endpoint.port {
            443 if endpoint.host.contains(':') => format!("[{}]", endpoint.host),
            443 => endpoint.host.clone(),
            _ => endpoint.authority(),
        };
        Proxy {
            authority: endpoint.authority(),
            base_url: format!("https://{wire_host}"),
            wire_host,
            endpoint,
            signer: parts.signer,
            client: parts.client,
            credentials: parts.credentials,
            limits: parts.limits,
            payload: parts.payload,
            response_timeout: parts.response_timeout,
            scheme: if parts.inbound_tls { "https" } else { "http" },
            listen: parts.listen,
            policy: parts.policy,
            auth: parts.auth,
            path_prefix: parts.path_prefix,
            request_timeout: parts.request_timeout,
            route_metrics: parts.metrics.route(&route),
            metrics: parts.metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Signs and sends a body-less request to the endpoint through the pooled client, exactly as
    /// a client's request would be: the readiness probe and `sigv4-proxy check` use it.
    pub async fn send_signed(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let uri: Uri = format!("{}{path_and_query}", self.base_url)
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("`{path_and_query}`: {e}")))?;
        // No `Host`: the client adds it on HTTP/1.1, `:authority` carries it on HTTP/2.
        let headers = HeaderMap::new();
        self.send_with_retry(
            &method,
            &uri,
            &headers,
            &RequestBody::Whole(SpooledBody::empty()),
        )
        .await
    }

    /// The `route` label: endpoint host and path prefix.
    pub fn route(&self) -> &str {
        self.route_metrics.route()
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn credentials(&self) -> &CredentialCache {
        &self.credentials
    }

    /// `""` or `/prefix`: the part of the path that selects this proxy on its listener.
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// Handles one request from `peer`; never fails: errors become JSON responses.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let mut notes = Notes::default();
        let mut request_metrics = self.route_metrics.request_started();
        let deadline = self
            .request_timeout
            .map(|limit| (tokio::time::Instant::now() + limit, limit));
        let forwarded = match deadline {
            None => self.forward(req, peer, &mut notes).await,
            Some((at, limit)) => tokio::time::timeout_at(at, self.forward(req, peer, &mut notes))
                .await
                .unwrap_or_else(|_| {
                    Err(ProxyError::GatewayTimeout(format!(
                        "the request did not complete within {} (--request-timeout)",
                        humantime::format_duration(limit)
                    )))
                }),
        };
        // Errors the proxy makes itself are short and complete: no deadline on their bodies.
        let forwarded_ok = forwarded.is_ok();
        let response = match forwarded {
            Ok(response) => response,
            Err(err) => {
                request_metrics.answered_by_proxy();
                if matches!(err, ProxyError::Forbidden(_)) {
                    self.metrics.policy_denied();
                }
                if err.status().is_server_error() {
                    tracing::warn!(%method, %path, error = %err, "request failed");
                }
                err.into_response::<Full<Bytes>>()
                    .map(|b| b.map_err(|never| match never {}).boxed())
            }
        };
        let status = response.status();
        response.map(|body| {
            AccessLog {
                inner: body,
                deadline: deadline
                    .filter(|_| forwarded_ok)
                    .map(|(at, _)| Box::pin(tokio::time::sleep_until(at))),
                record: Some(Record {
                    method,
                    path,
                    status,
                    peer,
                    bytes_in: notes.bytes_in,
                    bytes_out: 0,
                    started,
                    principal: notes.principal,
                    policy: notes.policy,
                    metrics: request_metrics,
                }),
            }
            .boxed()
        })
    }

    async fn forward<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        notes: &mut Notes,
    ) -> Result<Response<ProxyBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let principal = match &self.auth {
            Some(auth) => Some(authenticate(auth, parts.headers.get(header::AUTHORIZATION)).await?),
            None => None,
        };
        notes.principal = principal.clone();
        // The server only hands over requests under the prefix: `/prefix` or `/prefix/…`.
        let path = match parts.uri.path().strip_prefix(self.path_prefix.as_str()) {
            Some("") => "/",
            Some(rest) if !self.path_prefix.is_empty() => rest,
            _ => parts.uri.path(),
        };
        // Only an origin-form target (`/path?query`) says what to forward. Over HTTP/1.x an
        // absolute-form (`GET https://host/…`) or authority-form (`CONNECT host:443`, `GET foo`)
        // target has an authority and would otherwise pass as `/` (HTTP/2 always has one).
        let not_origin_form = parts.method == Method::CONNECT
            || (parts.version < http::Version::HTTP_2 && parts.uri.authority().is_some());
        if not_origin_form || !path.starts_with('/') {
            return Err(ProxyError::BadRequest(format!(
                "request target `{}` is not a path",
                parts.uri
            )));
        }
        let query = parts.uri.query().map(wire_query).transpose()?;
        let target = match &query {
            Some(q) if !q.is_empty() => format!("{}{path}?{q}", self.base_url),
            _ => format!("{}{path}", self.base_url),
        };
        let uri = Uri::try_from(target).map_err(|e| {
            ProxyError::BadRequest(format!("request target cannot be forwarded: {e}"))
        })?;
        // HTTP/2 clients name the host in :authority, HTTP/1.1 clients in Host.
        let client_view = ClientView {
            scheme: self.scheme,
            path_prefix: self.path_prefix.clone(),
            authority: parts
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    parts
                        .headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| self.listen.to_string()),
        };
        let declared_len = match parts.headers.get(header::CONTENT_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ProxyError::BadRequest("Content-Length is not a number".into())
                    })?,
            ),
            None => None,
        };
        let client_sent_body =
            declared_len.is_some() || parts.headers.contains_key(header::TRANSFER_ENCODING);
        // The signature covers one Content-Type; AWS would join several with commas and the
        // request could never verify.
        if parts
            .headers
            .get_all(header::CONTENT_TYPE)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(ProxyError::BadRequest(
                "more than one Content-Type header; send one".into(),
            ));
        }

        // The policy decides from the path alone where it can, before a byte of the body is read.
        let content_type = header_text(&parts.headers, header::CONTENT_TYPE);
        let content_encoding = header_text(&parts.headers, header::CONTENT_ENCODING);
        let facts = RequestFacts {
            method: &parts.method,
            raw_path: path,
            raw_query: query.as_deref(),
            content_type: content_type.as_deref(),
            content_encoding: content_encoding.as_deref(),
            client_ip: peer.ip(),
            principal: principal.as_deref(),
        };
        let plan = match &self.policy {
            Some(policy) => {
                let plan = policy.plan(&facts);
                if !plan.needs_body() {
                    enforce(policy.decide(&plan, &facts, None), notes)?;
                    None
                } else {
                    Some((policy, plan))
                }
            }
            None => None,
        };

        let body = RequestBody::read(
            body,
            declared_len,
            self.limits,
            self.payload,
            plan.is_some(),
        )
        .await?;
        if let RequestBody::Whole(whole) = &body {
            if whole.is_spilled() {
                self.metrics.body_spilled();
            }
        }
        // A streamed body counts as declared: the server cuts off a client that sends less.
        notes.bytes_in = body.len();

        if let (Some((policy, plan)), RequestBody::Whole(whole)) = (plan, &body) {
            let decision = if whole.is_spilled() || whole.len() > INLINE_POLICY_BODY {
                // Read from its file, or long: off the async workers.
                let owned = OwnedFacts::from(&facts);
                let (policy, whole) = (policy.clone(), whole.clone());
                tokio::task::spawn_blocking(move || {
                    let body = PolicyBody {
                        body: &whole,
                        mapped: whole.mapped(),
                    };
                    policy.decide(&plan, &owned.facts(), Some(&body))
                })
                .await
                .map_err(|e| ProxyError::Internal(format!("policy task failed: {e}")))?
            } else {
                let body = PolicyBody {
                    body: whole,
                    mapped: None,
                };
                policy.decide(&plan, &facts, Some(&body))
            };
            enforce(decision, notes)?;
        }

        let mut headers = parts.headers;
        prepare_request_headers(&mut headers);
        // No `Host` here: the client sets it from the URI on HTTP/1.1 connections and sends
        // `:authority` on HTTP/2 ones, where a `Host` header as well is a duplicate that strict
        // servers refuse (nginx: 400 "client sent duplicate host header").
        if !body.is_empty()
            || client_sent_body
            || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }

        let response = self
            .send_with_retry(&parts.method, &uri, &headers, &body)
            .await?;
        let (mut resp_parts, body_out) = response.into_parts();
        prepare_response_headers(&mut resp_parts.headers, &self.authority, &client_view);
        resp_parts.version = Version::HTTP_11;
        Ok(Response::from_parts(resp_parts, body_out))
    }

    /// Signs and sends. Each of these is retried once, with the same body (bodies are fully
    /// received before sending, so a replay is always the same bytes; a streamed body is sent
    /// once and never retried: its rejections are passed on, after the clock offset or new
    /// credentials are taken for the requests after it):
    /// - a request that failed on a connection the endpoint closed (a pooled keep-alive
    ///   connection it timed out, a restart): sent again on a fresh connection;
    /// - the endpoint said the credentials are expired or invalid (a rotation race): signed again
    ///   with new credentials;
    /// - the endpoint said the signature time is too far from its clock: signed again with the
    ///   endpoint's time, which is kept for later requests.
    async fn send_with_retry(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &RequestBody,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // A streamed body is sent once, over a pooled connection like any other: its retries
        // below are not made.
        let once = !body.is_replayable();
        let mut connection_retried = false;
        let mut credentials_retried = false;
        let mut clock_retried = false;
        let mut credentials = self.credentials.get().await?;
        loop {
            let request = self.signed_request(method, uri, headers, body, &credentials)?;
            let response = match self.send(request, connection_retried).await {
                Ok(response) => response,
                Err(Sent::Retryable(err)) if !connection_retried && !once => {
                    connection_retried = true;
                    tracing::debug!(cause = %error_chain(&err), "upstream connection failed mid-request; retrying once on a new connection");
                    self.metrics.retried(Retry::Connection);
                    continue;
                }
                Err(Sent::Retryable(err)) => {
                    return Err(match body.take_failure() {
                        // The client's streamed body stopped: that is the error, not the endpoint.
                        Some(failure) => failure,
                        None if once => ProxyError::BadGateway(format!(
                            "the connection to {} failed while the body was streamed to it (it cannot be sent again): {}",
                            self.authority,
                            error_chain(&err)
                        )),
                        None => lost_connection(&self.authority, &err),
                    });
                }
                Err(Sent::Failed(err)) => return Err(err),
            };
            let status = response.status().as_u16();
            if (credentials_retried && clock_retried) || !matches!(status, 400 | 401 | 403) {
                return Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()));
            }
            let (parts, incoming) = response.into_parts();
            let (prefix, rest) = tokio::time::timeout(
                self.response_timeout,
                read_prefix(incoming, REJECTION_BODY_LIMIT),
            )
            .await
            .map_err(|_| {
                ProxyError::GatewayTimeout(format!(
                    "{} did not send its {status} response body within {} (--response-timeout)",
                    self.authority,
                    humantime::format_duration(self.response_timeout)
                ))
            })?;
            let rejection = match &rest {
                Some(_) => None,
                None => classify_rejection(status, &parts.headers, &prefix, self.clock().now()),
            };
            match rejection {
                Some(Rejection::Credentials) if !credentials_retried => {
                    credentials_retried = true;
                    let rejected = credentials;
                    credentials = self.credentials.replace_rejected(&rejected).await.map_err(|e| {
                        ProxyError::NoCredentials(format!(
                            "{} rejected the credentials (access key {}) as expired or invalid, and new ones could not be loaded: {e}",
                            self.authority,
                            key_id_tail(rejected.access_key_id())
                        ))
                    })?;
                    if same_key(&credentials, &rejected) {
                        tracing::warn!(
                            status,
                            access_key_id = %key_id_tail(rejected.access_key_id()),
                            "the endpoint rejected the credentials as expired or invalid and the credential source still returns them; passing the rejection on"
                        );
                        return Ok(reassemble(parts, prefix, rest));
                    }
                    if once {
                        return Ok(reassemble(parts, prefix, rest));
                    }
                    tracing::info!(
                        status,
                        rejected = %key_id_tail(rejected.access_key_id()),
                        retry_with = %key_id_tail(credentials.access_key_id()),
                        "the endpoint rejected the credentials as expired or invalid; retrying once"
                    );
                    self.metrics.retried(Retry::Credentials);
                }
                Some(Rejection::ClockSkew { server_now }) if !clock_retried => {
                    clock_retried = true;
                    self.metrics.retried(Retry::Clock);
                    let local = SystemTime::now();
                    let Some(server_now) = server_now else {
                        tracing::warn!("the endpoint says the request time is too far from its clock but did not say its time; check this machine's clock (NTP)");
                        return Ok(reassemble(parts, prefix, rest));
                    };
                    let offset_ms = self.clock().learn(server_now, local);
                    if once {
                        tracing::warn!(offset = %format_offset(offset_ms), "the endpoint rejected the signature time of a streamed body, which cannot be sent again; signing with the endpoint's time from now on");
                        return Ok(reassemble(parts, prefix, rest));
                    }
                    tracing::warn!(
                        offset = %format_offset(offset_ms),
                        endpoint_time = %humantime::format_rfc3339_seconds(server_now),
                        local_time = %humantime::format_rfc3339_seconds(local),
                        "this machine's clock is off: the endpoint rejected the signature time. Signing with the endpoint's time from now on; \
                         fix the clock (enable NTP: `timedatectl set-ntp true`, chrony or w32time)"
                    );
                }
                _ => return Ok(reassemble(parts, prefix, rest)),
            }
        }
    }

    fn clock(&self) -> &Clock {
        self.credentials.clock()
    }

    fn signed_request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &RequestBody,
        credentials: &Credentials,
    ) -> Result<Request<OutboundBody>, ProxyError> {
        let outbound = body
            .to_outbound()
            .ok_or_else(|| ProxyError::Internal("a streamed body was to be sent twice".into()))?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(outbound)
            .map_err(|e| ProxyError::Internal(format!("upstream request: {e}")))?;
        let mut signed = headers.clone();
        self.signer.sign(
            &SignInput {
                method: method.as_str(),
                path: uri.path(),
                query: uri.query(),
                host: &self.wire_host,
                content_type,
                payload_sha256: body.payload_hash(),
            },
            credentials,
            self.clock().now(),
            &mut signed,
        )?;
        *request.headers_mut() = signed;
        Ok(request)
    }

    /// Sends one request, on a pooled connection or a new one, and waits for the response
    /// headers. `--response-timeout` bounds the endpoint's silence: the wait for the headers
    /// after the body has gone, and each wait for it to take the next piece of the body, so a
    /// long upload (a streamed body comes as fast as the client sends it) is not cut off.
    async fn send(
        &self,
        mut request: Request<OutboundBody>,
        new_connection: bool,
    ) -> Result<Response<hyper::body::Incoming>, Sent> {
        let started = Instant::now();
        let progress = request.body_mut().track_progress();
        let sent = async {
            if new_connection {
                self.client.request_on_new_connection(request).await
            } else {
                self.client.request(request).await
            }
        };
        match until_silent_for(self.response_timeout, progress.as_deref(), sent).await {
            Err(Silent) => Err(Sent::Failed(ProxyError::GatewayTimeout(format!(
                "{} did not answer within {} (--response-timeout)",
                self.authority,
                humantime::format_duration(self.response_timeout)
            )))),
            Ok(Ok(response)) => {
                self.route_metrics.upstream_answered(started.elapsed());
                Ok(response)
            }
            Ok(Err(err)) => {
                let connect_timeout =
                    find_source::<ConnectError>(&err).is_some_and(ConnectError::is_timeout);
                if connect_timeout {
                    return Err(Sent::Failed(ProxyError::GatewayTimeout(format!(
                        "cannot connect to {}: {}",
                        self.authority,
                        error_chain(&err)
                    ))));
                }
                if err.is_connect() {
                    return Err(Sent::Failed(ProxyError::BadGateway(format!(
                        "cannot connect to {}: {}",
                        self.authority,
                        error_chain(&err)
                    ))));
                }
                Err(Sent::Retryable(err))
            }
        }
    }
}

/// Error bodies up to this size are read to see whether signing again would help.
const REJECTION_BODY_LIMIT: usize = 64 * 1024;

/// [`until_silent_for`] gave up: nothing moved for the whole timeout.
struct Silent;

/// Runs `work` until it completes or nothing has happened for `timeout`: counted from the
/// start, or from when the body being sent last moved (`progress`).
async fn until_silent_for<T>(
    timeout: Duration,
    progress: Option<&crate::body::Progress>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Silent> {
    tokio::pin!(work);
    let mut deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, &mut work).await {
            Ok(done) => return Ok(done),
            Err(_) => {
                let moved = progress.map(|p| p.last_moved() + timeout);
                match moved {
                    Some(later) if later > deadline => deadline = later,
                    _ => return Err(Silent),
                }
            }
        }
    }
}

enum Sent {
    /// The connection failed after the request was handed to it; sending again may work.
    Retryable(hyper_util::client::legacy::Error),
    Failed(ProxyError),
}

fn lost_connection(authority: &str, err: &hyper_util::client::legacy::Error) -> ProxyError {
    ProxyError::BadGateway(format!(
        "lost the connection to {authority}: {}",
        error_chain(err)
    ))
}

/// Reads a body up to `limit` bytes. Returns the bytes read and, when the body is longer (or
/// failed mid-way), the unread rest to pass on after them.
async fn read_prefix(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> (Bytes, Option<hyper::body::Incoming>) {
    let mut buf = bytes::BytesMut::new();
    if body.size_hint().lower() > limit as u64 {
        return (buf.freeze(), Some(body));
    }
    while buf.len() <= limit {
        match body.frame().await {
            None => return (buf.freeze(), None),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
            // Let the client see the error where it happened: after the bytes read so far.
            Some(Err(_)) => return (buf.freeze(), Some(body)),
        }
    }
    (buf.freeze(), Some(body))
}

/// The response as the endpoint sent it: the bytes read, then whatever was not read.
fn reassemble(
    parts: http::response::Parts,
    prefix: Bytes,
    rest: Option<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let body = match rest {
        None => Full::new(prefix).map_err(|never| match never {}).boxed(),
        Some(rest) => {
            let head = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(prefix))]);
            let tail = http_body_util::BodyStream::new(rest.map_err(|e| Box::new(e) as BoxError));
            BodyExt::boxed(http_body_util::StreamBody::new(head.chain(tail)))
        }
    };
    Response::from_parts(parts, body)
}

/// `+12m 3s` / `-45s`.
fn format_offset(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    let secs = Duration::from_secs(offset_ms.unsigned_abs().saturating_add(500) / 1000);
    format!("{sign}{}", humantime::format_duration(secs))
}

/// Checks the client's `Authorization` header; bcrypt may run, so off the async workers.
async fn authenticate(
    auth: &Arc<Authenticator>,
    authorization: Option<&HeaderValue>,
) -> Result<String, ProxyError> {
    let auth = auth.clone();
    let authorization = authorization.cloned();
    let checked = tokio::task::spawn_blocking(move || {
        (auth.check(authorization.as_ref()), auth.challenges())
    })
    .await
    .map_err(|e| ProxyError::Internal(format!("authentication task failed: {e}")))?;
    match checked {
        (Ok(principal), _) => Ok(principal.name().to_string()),
        (Err(err), challenges) => Err(ProxyError::Unauthorized {
            reason: err.to_string(),
            challenges,
        }),
    }
}

/// Bodies up to this size are read by the policy on the connection's worker; larger ones (a
/// `_bulk` takes about a millisecond per megabyte) on a blocking thread, so other connections
/// are not held up.
const INLINE_POLICY_BODY: u64 = 64 * 1024;

/// A request body as the policy reads it (from memory or its spill file, as often as needed).
struct PolicyBody<'a> {
    body: &'a SpooledBody,
    /// The spill file mapped, when it is one.
    mapped: Option<memmap2::Mmap>,
}

impl BodySource for PolicyBody<'_> {
    fn len(&self) -> u64 {
        self.body.len()
    }
    fn open(&self) -> std::io::Result<Box<dyn std::io::BufRead + Send + '_>> {
        Ok(match &self.mapped {
            Some(m) => Box::new(&m[..]),
            None => self.body.reader(),
        })
    }
    fn as_slice(&self) -> Option<&[u8]> {
        self.mapped.as_deref().or_else(|| self.body.as_contiguous())
    }
}

/// [`RequestFacts`] that own their strings, to be decided on a blocking thread.
struct OwnedFacts {
    method: Method,
    raw_path: String,
    raw_query: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    client_ip: std::net::IpAddr,
    principal: Option<String>,
}

impl OwnedFacts {
    fn from(f: &RequestFacts<'_>) -> OwnedFacts {
        OwnedFacts {
            method: f.method.clone(),
            raw_path: f.raw_path.to_string(),
            raw_query: f.raw_query.map(str::to_string),
            content_type: f.content_type.map(str::to_string),
            content_encoding: f.content_encoding.map(str::to_string),
            client_ip: f.client_ip,
            principal: f.principal.map(str::to_string),
        }
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            method: &self.method,
            raw_path: &self.raw_path,
            raw_query: self.raw_query.as_deref(),
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            client_ip: self.client_ip,
            principal: self.principal.as_deref(),
        }
    }
}

/// A header's values as text, several joined with `, ` (`None`: absent or not text).
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let parts: Option<Vec<&str>> = values.map(|v| v.to_str().ok()).collect();
    parts.map(|p| p.join(", "))
}

/// Turns a policy decision into the request's fate, logging denials with their reason.
fn enforce(decision: Decision, notes: &mut Notes) -> Result<(), ProxyError> {
    match decision {
        Decision::Allow {
            statement,
            resource,
        } => {
            notes.policy = Some(match statement {
                Some(s) => format!("allow ({s}) on {resource}"),
                None => format!("allow on {resource}"),
            });
            Ok(())
        }
        Decision::Deny {
            reason,
            statement,
            action,
            resource,
            api,
        } => {
            tracing::info!(
                target: "sigv4_proxy::policy",
                %action,
                %resource,
                %api,
                statement = statement.as_deref().unwrap_or("-"),
                principal = notes.principal.as_deref().unwrap_or("-"),
                "denied: {reason}"
            );
            notes.policy = Some(format!(
                "deny ({})",
                statement.as_deref().unwrap_or("unreadable request")
            ));
            Err(ProxyError::Forbidden(format!(
                "sigv4-proxy policy: {reason}"
            )))
        }
    }
}

struct Record {
    method: Method,
    path: String,
    status: StatusCode,
    peer: SocketAddr,
    bytes_in: u64,
    bytes_out: u64,
    started: Instant,
    principal: Option<String>,
    policy: Option<String>,
    /// Keeps the request counted as in flight until the record is dropped.
    metrics: RequestMetrics,
}

pin_project_lite::pin_project! {
    /// Passes the response body through, counting bytes, and writes the access log line when the
    /// body ends or is dropped (client gone).
    struct AccessLog {
        #[pin]
        inner: ProxyBody,
        // `--request-timeout`: the body is cut off with an error when it passes.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        record: Option<Record>,
    }

    impl PinnedDrop for AccessLog {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(r) = this.record.take() {
                log_request(&r, this.inner.is_end_stream());
            }
        }
    }
}

fn log_request(r: &Record, complete: bool) {
    r.metrics
        .finish(&r.method, r.status, r.bytes_in, r.bytes_out);
    let latency_ms = r.started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: crate::logging::ACCESS_TARGET,
        method = %r.method,
        path = %r.path,
        status = r.status.as_u16(),
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        latency_ms = format_args!("{latency_ms:.1}"),
        client = %r.peer,
        user = r.principal.as_deref().unwrap_or("-"),
        policy = r.policy.as_deref().unwrap_or("-"),
        complete,
        "request"
    );
}

impl Body for AccessLog {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(deadline) = this.deadline.as_mut() {
            if std::future::Future::poll(deadline.as_mut(), cx).is_ready() {
                *this.deadline = None;
                tracing::warn!("the response body was still streaming when --request-timeout passed; cutting it off");
                if let Some(r) = this.record.take() {
                    log_request(&r, false);
                }
                return Poll::Ready(Some(Err("--request-timeout passed".into())));
            }
        }
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(r)) = (frame.data_ref(), this.record.as_mut()) {
                    r.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = this.record.take() {
                    log_request(&r, true);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
