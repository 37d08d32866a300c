//! Counters the admin listener's `/metrics` serves, in the Prometheus (OpenMetrics) text format,
//! plus the one fact `/readyz` needs: when the endpoint last answered.
//!
//! [`Metrics`] is shared through an `Arc`; the proxy updates it at four places: when a request
//! starts and when its response body ends ([`RequestMetrics`]), when the endpoint answers
//! ([`RouteMetrics::upstream_answered`]), when a body spills or a request is retried. Credential
//! fetches are counted by wrapping the provider ([`Metrics::count_credentials`]); open upstream
//! connections by the connector (`upstream.rs`), which holds a clone of a gauge.
//!
//! Labels stay few and bounded: `route`, `method` (unknown methods become `other`),
//! `status_class` (`2xx`…) and `origin` (`endpoint` when the endpoint answered, `proxy` when the
//! proxy answered itself: a 403 with `origin="proxy"` is the local policy, one with
//! `origin="endpoint"` is AWS).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upstream latency buckets in seconds: 5 ms to Dashboards' 300 s queries.
const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Who produced a response.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Origin {
    /// The endpoint answered; the proxy passed it on.
    Endpoint,
    /// The proxy answered itself (policy denial, 502, 503, 504, 413, …).
    Proxy,
}

impl EncodeLabelValue for Origin {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = match self {
            Origin::Endpoint => "endpoint",
            Origin::Proxy => "proxy",
        };
        EncodeLabelValue::encode(&value, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status_class: String,
    origin: Origin,
}

/// Why a request was sent to the endpoint again.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Retry {
    /// The endpoint closed a pooled connection under the request.
    Connection,
    /// The endpoint said the credentials were expired or invalid; signed with new ones.
    Credentials,
    /// The endpoint said the signature time was off; signed with the endpoint's time.
    Clock,
}

impl EncodeLabelValue for Retry {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = match self {
            Retry::Connection => "connection",
            Retry::Credentials => "credentials",
            Retry::Clock => "clock",
        };
        EncodeLabelValue::encode(&value, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    reason: Retry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every metric the proxy keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    upstream_latency: HistogramFamily,
    in_flight: Gauge,
    upstream_connections: Gauge,
    credential_fetches: Counter,
    credential_failures: Counter,
    credential_expiry: Gauge,
    policy_denials: Counter,
    spilled_bodies: Counter,
    retries: Family<RetryLabels, Counter>,
    last_upstream_answer: Gauge,
    /// Same instant as `last_upstream_answer`, in milliseconds, for `/readyz`.
    last_answer_ms: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sigv4_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, method, status class and origin (endpoint or proxy)",
            requests.clone(),
        );
        let request_bytes = Family::<RouteLabels, Counter>::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes received from clients",
            Unit::Bytes,
            request_bytes.clone(),
        );
        let response_bytes = Family::<RouteLabels, Counter>::default();
        registry.register_with_unit(
            "response_body",
            "Response body bytes sent to clients",
            Unit::Bytes,
            response_bytes.clone(),
        );
        let upstream_latency: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register_with_unit(
            "upstream_response",
            "Time from sending a request to the endpoint until its response headers arrived",
            Unit::Seconds,
            upstream_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled, until their response body has been sent",
            in_flight.clone(),
        );
        let upstream_connections = Gauge::default();
        registry.register(
            "upstream_connections_open",
            "TCP connections to the endpoint currently open (pooled idle ones included)",
            upstream_connections.clone(),
        );
        let credential_fetches = Counter::default();
        registry.register(
            "credential_fetches",
            "Times credentials were fetched from the AWS provider chain (first load and refreshes)",
            credential_fetches.clone(),
        );
        let credential_failures = Counter::default();
        registry.register(
            "credential_fetch_failures",
            "Credential fetches that failed",
            credential_failures.clone(),
        );
        let credential_expiry = Gauge::default();
        registry.register(
            "credentials_expiry_timestamp_seconds",
            "When the last fetched credentials expire (Unix time; 0: they do not expire)",
            credential_expiry.clone(),
        );
        let policy_denials = Counter::default();
        registry.register(
            "policy_denials",
            "Requests the local access policy denied",
            policy_denials.clone(),
        );
        let spilled_bodies = Counter::default();
        registry.register(
            "spilled_bodies",
            "Request bodies larger than --spill-threshold, spooled to a temporary file",
            spilled_bodies.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "upstream_retries",
            "Requests sent to the endpoint again: on a fresh connection after it closed a pooled one, \
             with new credentials after it rejected them, or with its time after it rejected the signature time",
            retries.clone(),
        );
        // Every reason shows from the start, at 0, so rates and alerts need no special case.
        for reason in [Retry::Connection, Retry::Credentials, Retry::Clock] {
            drop(retries.get_or_create(&RetryLabels { reason }));
        }
        let last_upstream_answer = Gauge::default();
        registry.register(
            "last_upstream_response_timestamp_seconds",
            "When the endpoint last answered anything (Unix time; 0: never)",
            last_upstream_answer.clone(),
        );
        Metrics {
            registry,
            requests,
            request_bytes,
            response_bytes,
            upstream_latency,
            in_flight,
            upstream_connections,
            credential_fetches,
            credential_failures,
            credential_expiry,
            policy_denials,
            spilled_bodies,
            retries,
            last_upstream_answer,
            last_answer_ms: AtomicU64::new(0),
        }
    }

    /// The text `/metrics` serves (OpenMetrics 1.0, which Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One route's handle, through which its requests are counted.
    pub fn route(self: &Arc<Self>, route: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics {
            metrics: self.clone(),
            route: route.to_string(),
            request_bytes: OnceLock::new(),
            response_bytes: OnceLock::new(),
            upstream_latency: OnceLock::new(),
            requests: std::array::from_fn(|_| OnceLock::new()),
        })
    }

    /// When the endpoint last answered (milliseconds since 1970; 0: never), to tell whether
    /// it has answered since an earlier look.
    pub fn last_answer_mark(&self) -> u64 {
        self.last_answer_ms.load(Ordering::Relaxed)
    }

    /// Requests being handled now, over every route.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// How long ago the endpoint last answered; `None` if it never did.
    pub fn since_upstream_answered(&self) -> Option<Duration> {
        let ms = self.last_answer_ms.load(Ordering::Relaxed);
        (ms != 0).then(|| {
            let then = UNIX_EPOCH + Duration::from_millis(ms);
            SystemTime::now().duration_since(then).unwrap_or_default()
        })
    }

    /// The local access policy denied a request.
    pub fn policy_denied(&self) {
        self.policy_denials.inc();
    }

    /// A request body went to a temporary file.
    pub fn body_spilled(&self) {
        self.spilled_bodies.inc();
    }

    /// A request was sent to the endpoint again.
    pub fn retried(&self, reason: Retry) {
        self.retries.get_or_create(&RetryLabels { reason }).inc();
    }

    /// How many times requests were sent again for `reason`.
    pub fn retry_count(&self, reason: Retry) -> u64 {
        self.retries.get_or_create(&RetryLabels { reason }).get()
    }

    /// The gauge of open upstream connections, for the connector to hold.
    pub fn upstream_connections(&self) -> Gauge {
        self.upstream_connections.clone()
    }

    /// Wraps a credentials provider so every fetch, failure and expiry is counted.
    pub fn count_credentials(
        self: &Arc<Self>,
        provider: SharedCredentialsProvider,
    ) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(CountedProvider {
            inner: provider,
            metrics: self.clone(),
        })
    }
}

/// One route's metrics. Each series is looked up in its family once, on first use, and kept:
/// counting a request touches no label strings, maps or locks.
pub struct RouteMetrics {
    metrics: Arc<Metrics>,
    route: String,
    request_bytes: OnceLock<Counter>,
    response_bytes: OnceLock<Counter>,
    upstream_latency: OnceLock<Histogram>,
    /// By method label, status class (the hundreds digit) and origin.
    requests: [OnceLock<Counter>; METHOD_LABELS.len() * 10 * 2],
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// The `route` label: endpoint host and path prefix.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Counts a request as in flight until the returned value is dropped, and records its
    /// outcome through [`RequestMetrics::finish`].
    pub fn request_started(self: &Arc<Self>) -> RequestMetrics {
        self.metrics.in_flight.inc();
        RequestMetrics {
            route: self.clone(),
            origin: Origin::Endpoint,
        }
    }

    /// The endpoint answered (any status) after `latency`.
    pub fn upstream_answered(&self, latency: Duration) {
        let m = &self.metrics;
        self.upstream_latency
            .get_or_init(|| m.upstream_latency.get_or_create(&self.labels()).clone())
            .observe(latency.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        m.last_answer_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
        m.last_upstream_answer.set(now.as_secs() as i64);
    }

    fn labels(&self) -> RouteLabels {
        RouteLabels {
            route: self.route.clone(),
        }
    }
}

/// One request's share of the metrics: in flight until dropped.
pub struct RequestMetrics {
    route: Arc<RouteMetrics>,
    origin: Origin,
}

impl RequestMetrics {
    /// Marks the response as the proxy's own (an error it synthesised).
    pub fn answered_by_proxy(&mut self) {
        self.origin = Origin::Proxy;
    }

    /// Records the request once its response has been sent (or the client went away).
    pub fn finish(&self, method: &Method, status: StatusCode, bytes_in: u64, bytes_out: u64) {
        let r = &self.route;
        let m = &r.metrics;
        let method = method_index(method);
        let class = usize::from(status.as_u16() / 100).min(9);
        let origin = matches!(self.origin, Origin::Proxy) as usize;
        r.requests[(method * 10 + class) * 2 + origin]
            .get_or_init(|| {
                m.requests
                    .get_or_create(&RequestLabels {
                        route: r.route.clone(),
                        method: METHOD_LABELS[method].to_string(),
                        status_class: format!("{class}xx"),
                        origin: self.origin,
                    })
                    .clone()
            })
            .inc();
        r.request_bytes
            .get_or_init(|| m.request_bytes.get_or_create(&r.labels()).clone())
            .inc_by(bytes_in);
        r.response_bytes
            .get_or_init(|| m.response_bytes.get_or_create(&r.labels()).clone())
            .inc_by(bytes_out);
    }
}

impl Drop for RequestMetrics {
    fn drop(&mut self) {
        self.route.metrics.in_flight.dec();
    }
}

/// Standard methods by name; anything else is `other`, so a client cannot grow the label set.
const METHOD_LABELS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

#[derive(Debug)]
struct CountedProvider {
    inner: SharedCredentialsProvider,
    metrics: Arc<Metrics>,
}

impl ProvideCredentials for CountedProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.metrics.credential_fetches.inc();
            let result = self.inner.provide_credentials().await;
            match &result {
                Ok(c) => {
                    let expiry = c
                        .expiry()
                        .and_then(|e| e.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs() as i64);
                    self.metrics.credential_expiry.set(expiry);
                }
                Err(_) => {
                    self.metrics.credential_failures.inc();
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[test]
    fn requests_are_counted_by_class_and_origin_and_in_flight_returns_to_zero() {
        let m = Arc::new(Metrics::new());
        let logs = m.route("logs");
        {
            let r = logs.request_started();
            assert!(m.encode().contains("sigv4_proxy_requests_in_flight 1\n"));
            r.finish(&Method::GET, StatusCode::OK, 0, 120);
        }
        let mut r = logs.request_started();
        r.answered_by_proxy();
        r.finish(
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::FORBIDDEN,
            7,
            60,
        );
        drop(r);
        let text = m.encode();
        assert!(text.contains(r#"sigv4_proxy_requests_total{route="logs",method="GET",status_class="2xx",origin="endpoint"} 1"#), "{text}");
        assert!(text.contains(r#"sigv4_proxy_requests_total{route="logs",method="other",status_class="4xx",origin="proxy"} 1"#), "{text}");
        assert!(
            text.contains(r#"sigv4_proxy_request_body_bytes_total{route="logs"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sigv4_proxy_response_body_bytes_total{route="logs"} 180"#),
            "{text}"
        );
        assert!(
            text.contains("sigv4_proxy_requests_in_flight 0\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"sigv4_proxy_upstream_retries_total{reason="clock"} 0"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn upstream_answers_feed_the_histogram_and_readiness() {
        let m = Arc::new(Metrics::new());
        assert_eq!(m.since_upstream_answered(), None);
        m.route("logs").upstream_answered(Duration::from_millis(30));
        assert!(m.since_upstream_answered().unwrap() < Duration::from_secs(5));
        let text = m.encode();
        assert!(
            text.contains(
                r#"sigv4_proxy_upstream_response_seconds_bucket{le="0.05",route="logs"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"sigv4_proxy_upstream_response_seconds_count{route="logs"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn credential_fetches_and_failures_are_counted() {
        let m = Arc::new(Metrics::new());
        let good = m.count_credentials(SharedCredentialsProvider::new(Credentials::new(
            "AKIA", "secret", None, None, "test",
        )));
        good.provide_credentials().await.unwrap();
        let bad = m.count_credentials(SharedCredentialsProvider::new(Failing));
        assert!(bad.provide_credentials().await.is_err());
        let text = m.encode();
        assert!(
            text.contains("sigv4_proxy_credential_fetches_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sigv4_proxy_credential_fetch_failures_total 1\n"),
            "{text}"
        );
    }

    #[derive(Debug)]
    struct Failing;

    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(
                aws_credential_types::provider::error::CredentialsError::not_loaded("none"),
            ))
        }
    }
}
