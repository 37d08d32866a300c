//! The admin listener: `/healthz`, `/readyz` (credentials valid and the endpoint answering) and
//! `/metrics` on their own port; the proxy's port keeps forwarding every path, `/metrics`
//! included.

use std::time::Duration;

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;

use crate::support::http::{get, send};
use crate::support::proxy::upstream_args;
use crate::support::proxy::TestAdmin as Admin;
use crate::support::{Creds, ProxyProcess, Reply, TestProxy, TestUpstream};

fn creds() -> Creds {
    Creds::with_token("ASIAADMINTEST", "admin/secret", "admin-session-token")
}

async fn upstream(service: &str) -> TestUpstream {
    TestUpstream::start_for(service, creds()).await
}

/// The value of the sample `name{labels}` (or bare `name`) in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(sample(text, series), Some(expected), "{series} in:\n{text}");
}

#[tokio::test]
async fn healthz_readyz_and_metrics_count_what_the_proxy_did() {
    let up = upstream("es").await;
    up.add_route("GET", "/missing", Reply::status(404));
    let proxy = TestProxy::start(&up, &creds(), &["--spill-threshold", "1KiB"]).await;
    let admin = Admin::start(proxy.proxy()).await;

    let health = admin.get("/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(admin.get("/nothing-here").await.status, 404);

    // Idle: readiness probes the endpoint (a signed HEAD /) and is satisfied by any answer.
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let json = ready.json();
    println!("{}", ready.text());
    assert_eq!(json["status"], "ready");
    assert_eq!(json["checks"]["endpoint"]["probe"], "HEAD / answered 200");
    assert_eq!(json["checks"]["credentials"]["ok"], true);
    assert_eq!(up.last_request().unwrap().method, "HEAD");
    let probes = up.request_count();
    // A recent answer makes the next readiness check skip the probe.
    assert_eq!(admin.get("/readyz").await.status, 200);
    assert_eq!(up.request_count(), probes);

    for _ in 0..2 {
        assert_eq!(get(proxy.addr(), "/_cat/indices?v").await.status, 200);
    }
    assert_eq!(get(proxy.addr(), "/missing").await.status, 404);
    let big = Bytes::from(vec![b'x'; 4096]);
    let put = send(
        proxy.addr(),
        "PUT",
        "/logs/_doc/1",
        &[("content-type", "application/json")],
        big,
    )
    .await;
    assert_eq!(put.status, 200);

    let text = admin.metrics().await;
    println!("{text}");
    let route = up.host_name();
    assert_sample(
        &text,
        &format!(
            r#"sigv4_proxy_requests_total{{route="{route}",method="GET",status_class="2xx",origin="endpoint"}}"#
        ),
        2.0,
    );
    assert_sample(
        &text,
        &format!(
            r#"sigv4_proxy_requests_total{{route="{route}",method="GET",status_class="4xx",origin="endpoint"}}"#
        ),
        1.0,
    );
    assert_sample(
        &text,
        &format!(
            r#"sigv4_proxy_requests_total{{route="{route}",method="PUT",status_class="2xx",origin="endpoint"}}"#
        ),
        1.0,
    );
    assert_sample(
        &text,
        &format!(r#"sigv4_proxy_request_body_bytes_total{{route="{route}"}}"#),
        4096.0,
    );
    assert!(
        sample(
            &text,
            &format!(r#"sigv4_proxy_response_body_bytes_total{{route="{route}"}}"#)
        )
        .unwrap()
            > 0.0
    );
    // Four requests and the probe reached the endpoint.
    assert_sample(
        &text,
        &format!(r#"sigv4_proxy_upstream_response_seconds_count{{route="{route}"}}"#),
        5.0,
    );
    assert_sample(&text, "sigv4_proxy_spilled_bodies_total", 1.0);
    assert_sample(&text, "sigv4_proxy_requests_in_flight", 0.0);
    assert!(
        sample(&text, "sigv4_proxy_upstream_connections_open").unwrap() >= 1.0,
        "{text}"
    );
    assert_sample(&text, "sigv4_proxy_policy_denials_total", 0.0);
    assert!(
        sample(
            &text,
            "sigv4_proxy_last_upstream_response_timestamp_seconds"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(text.ends_with("# EOF\n"));
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_on_the_proxy_port_is_forwarded_to_the_endpoint() {
    let up = upstream("es").await;
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let resp = get(proxy.addr(), path).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["path"], path, "the endpoint answered");
        assert_eq!(up.last_request().unwrap().raw_path, path);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn policy_denials_retries_and_proxy_errors_are_counted() {
    let up = upstream("es").await;
    up.add_route("GET", "/flaky", Reply::close_connection());
    let proxy = TestProxy::start(&up, &creds(), &["--read-only"]).await;
    let admin = Admin::start(proxy.proxy()).await;

    let denied = send(proxy.addr(), "DELETE", "/logs", &[], Bytes::new()).await;
    assert_eq!(denied.status, 403);
    let flaky = get(proxy.addr(), "/flaky").await;
    assert_eq!(flaky.status, 502, "{}", flaky.text());

    let text = admin.metrics().await;
    let route = up.host_name();
    assert_sample(&text, "sigv4_proxy_policy_denials_total", 1.0);
    assert_sample(
        &text,
        &format!(
            r#"sigv4_proxy_requests_total{{route="{route}",method="DELETE",status_class="4xx",origin="proxy"}}"#
        ),
        1.0,
    );
    assert_sample(
        &text,
        r#"sigv4_proxy_upstream_retries_total{reason="connection"}"#,
        1.0,
    );
    assert_sample(
        &text,
        &format!(
            r#"sigv4_proxy_requests_total{{route="{route}",method="GET",status_class="5xx",origin="proxy"}}"#
        ),
        1.0,
    );
    proxy.stop().await;
}

#[tokio::test]
async fn readyz_is_503_when_the_endpoint_cannot_be_reached() {
    let up = upstream("es").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let proxy = TestProxy::start(&up, &creds(), &["--connect-to", &closed]).await;
    let admin = Admin::start(proxy.proxy()).await;
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let json = ready.json();
    println!("{}", ready.text());
    assert_eq!(json["status"], "not ready");
    assert_eq!(json["checks"]["credentials"]["ok"], true);
    assert_eq!(json["checks"]["endpoint"]["ok"], false);
    let reason = json["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("endpoint: cannot connect to"),
        "{reason}"
    );
    // Health is about the process, not the endpoint.
    assert_eq!(admin.get("/healthz").await.status, 200);
    proxy.stop().await;
}

#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no credentials in this test",
            ),
        ))
    }
}

#[tokio::test]
async fn readyz_is_503_without_credentials() {
    let up = upstream("es").await;
    let proxy =
        TestProxy::start_with_provider(&up, SharedCredentialsProvider::new(NoCredentials), &[])
            .await;
    let admin = Admin::start(proxy.proxy()).await;
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let json = ready.json();
    println!("{}", ready.text());
    assert_eq!(json["checks"]["credentials"]["ok"], false);
    assert!(json["reason"]
        .as_str()
        .unwrap()
        .starts_with("credentials: no usable AWS credentials"));
    assert_eq!(up.request_count(), 0, "no probe without credentials");
    proxy.stop().await;
}

/// The `admin=ADDR` field of the binary's "admin listener ready" line.
fn admin_address(stderr: &str) -> Option<std::net::SocketAddr> {
    let line = stderr
        .lines()
        .find(|l| l.contains("admin listener ready"))?;
    let at = line.find("admin=")? + "admin=".len();
    let rest = &line[at..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[tokio::test]
async fn the_binary_serves_the_admin_endpoints_with_admin_listen() {
    let up = upstream("es").await;
    let c = creds();
    let mut args = upstream_args(&up);
    args.extend(["--admin-listen".to_string(), "127.0.0.1:0".to_string()]);
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), c.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), c.secret.clone()),
        ("AWS_SESSION_TOKEN".to_string(), c.token.clone().unwrap()),
    ];
    let mut process = ProxyProcess::start(&args, &env).await;
    let admin = admin_address(&process.stderr())
        .unwrap_or_else(|| panic!("no admin address in:\n{}", process.stderr()));
    assert_ne!(admin, process.addr);
    assert_eq!(get(admin, "/healthz").await.status, 200);
    assert_eq!(get(process.addr, "/_cat/health").await.status, 200);
    let ready = get(admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let text = get(admin, "/metrics").await.text();
    assert_sample(&text, "sigv4_proxy_credential_fetches_total", 1.0);
    assert_sample(&text, "sigv4_proxy_credential_fetch_failures_total", 0.0);
    assert_sample(
        &text,
        "sigv4_proxy_credentials_expiry_timestamp_seconds",
        0.0,
    );
    let status = tokio::time::timeout(Duration::from_secs(20), process.terminate())
        .await
        .expect("bounded");
    assert!(status.success());
}
