//! The admin listener (`--admin-listen`): `/healthz`, `/readyz` and `/metrics` on their own
//! port, never on the proxy's, so no OpenSearch path is ever shadowed.
//!
//! - `/healthz`: 200 while the process serves requests.
//! - `/readyz`: 200 when credentials are valid now AND the endpoint answered recently: any
//!   response, any status, within [`READY_WINDOW`]; when it has been idle longer, a signed
//!   `HEAD /` probe is sent (its status does not matter, only that an answer came). Otherwise
//!   503 with a JSON body saying why.
//! - `/metrics`: [`crate::metrics::Metrics`] in the OpenMetrics text format.
//!
//! It has no authentication: keep it on loopback or a private interface.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// The routes the admin listener reports on, read at each request (they change on reload).
pub type Routes = Arc<dyn Fn() -> Vec<Arc<Proxy>> + Send + Sync>;

/// An endpoint answer this recent makes `/readyz` skip its probe.
pub const READY_WINDOW: Duration = Duration::from_secs(60);
/// Longest a readiness check waits for credentials or for the probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin listener, warning loudly when it is reachable from other machines.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            admin_listen = %addr,
            "the admin listener is not on loopback: anyone who can reach it reads /metrics and /readyz \
             (no secrets, but the endpoint, routes and traffic). Prefer 127.0.0.1, or restrict the port"
        );
    }
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (--admin-listen): {e}"),
        )
    })
}

/// Serves the admin endpoints for `routes` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, routes: Routes, metrics: Arc<Metrics>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(cause = %err, "admin listener: failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let routes = routes.clone();
        let metrics = metrics.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let proxies = routes();
            let metrics = metrics.clone();
            async move {
                Ok::<_, Infallible>(
                    respond(&proxies, &metrics, req.method(), req.uri().path()).await,
                )
            }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = conn.await {
                tracing::debug!(client = %peer, cause = %err, "admin connection ended with an error");
            }
        });
    }
}

/// The admin endpoints, without a socket.
pub async fn respond(
    proxies: &[Arc<Proxy>],
    metrics: &Metrics,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let (ready, body) = readiness_of_all(proxies).await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(metrics.encode())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the admin listener serves /healthz, /readyz and /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Ready when every route is ready. One route reports its checks directly; several report
/// them per route (by endpoint and path prefix).
pub async fn readiness_of_all(proxies: &[Arc<Proxy>]) -> (bool, serde_json::Value) {
    match proxies {
        [] => (false, json!({"status": "not ready", "reason": "no routes"})),
        [one] => readiness(one).await,
        many => {
            let mut all_ready = true;
            let mut routes = serde_json::Map::new();
            for proxy in many {
                let (ready, body) = readiness(proxy).await;
                all_ready &= ready;
                routes.insert(proxy.route().to_string(), body);
            }
            let status = if all_ready { "ready" } else { "not ready" };
            (all_ready, json!({"status": status, "routes": routes}))
        }
    }
}

/// Whether the proxy can serve requests now, and a JSON account of why (not).
pub async fn readiness(proxy: &Proxy) -> (bool, serde_json::Value) {
    let now = SystemTime::now();
    let credentials = match tokio::time::timeout(CHECK_TIMEOUT, proxy.credentials().get()).await {
        Err(_) => Err(format!(
            "loading credentials took longer than {}",
            humantime::format_duration(CHECK_TIMEOUT)
        )),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(c)) => match c.expiry() {
            Some(e) if e <= now => Err(format!(
                "the credentials expired at {} and could not be refreshed",
                humantime::format_rfc3339_seconds(e)
            )),
            Some(e) => Ok(json!({
                "ok": true,
                "expires": humantime::format_rfc3339_seconds(e).to_string(),
            })),
            None => Ok(json!({"ok": true, "expires": null})),
        },
    };
    let credentials_ok = credentials.is_ok();
    let credentials = credentials.unwrap_or_else(|reason| json!({"ok": false, "reason": reason}));

    let endpoint = match proxy.metrics().since_upstream_answered() {
        Some(age) if age < READY_WINDOW => Ok(json!({
            "ok": true,
            "last_response_seconds_ago": age.as_secs(),
        })),
        _ if !credentials_ok => Err("not probed: no valid credentials to sign a probe".to_string()),
        _ => probe(proxy).await,
    };
    let endpoint_ok = endpoint.is_ok();
    let endpoint = endpoint.unwrap_or_else(|reason| json!({"ok": false, "reason": reason}));

    let ready = credentials_ok && endpoint_ok;
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {"credentials": credentials, "endpoint": endpoint},
    });
    if !ready {
        let reasons: Vec<String> = [
            ("credentials", &body["checks"]["credentials"]),
            ("endpoint", &body["checks"]["endpoint"]),
        ]
        .iter()
        .filter(|(_, c)| c["ok"] == false)
        .map(|(name, c)| format!("{name}: {}", c["reason"].as_str().unwrap_or("")))
        .collect();
        body["reason"] = json!(reasons.join("; "));
    }
    (ready, body)
}

/// A signed `HEAD /`: any answer, whatever its status, shows the endpoint is reachable.
async fn probe(proxy: &Proxy) -> Result<serde_json::Value, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, proxy.send_signed(Method::HEAD, "/")).await {
        Err(_) => Err(format!(
            "the endpoint did not answer a probe within {}",
            humantime::format_duration(CHECK_TIMEOUT)
        )),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(resp)) => Ok(json!({
            "ok": true,
            "probe": format!("HEAD / answered {}", resp.status().as_u16()),
        })),
    }
}
