//! Operations: the config file and its routes, timeouts and limits, SIGHUP reload, DNS
//! refresh of pooled connections, and egress through an HTTP CONNECT proxy.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use sigv4_proxy::app::{self, App, Environment};
use sigv4_proxy::config::{Config, PolicySource, RouteConfig};
use sigv4_proxy::credentials::CredentialCache;
use sigv4_proxy::metrics::Metrics;
use sigv4_proxy::server;
use sigv4_proxy::upstream::Resolver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::connect_proxy::ConnectProxy;
use crate::support::http::{connection, get, raw, send};
use crate::support::proxy::{in_process_workers, provider, upstream_args};
use crate::support::{Creds, ProxyProcess, Reply, TestProxy, TestUpstream};

const SECRET: &str = "ops/secret+key";

fn creds() -> Creds {
    Creds::with_token("ASIAOPSTEST", SECRET, "ops-session-token")
}

fn env_creds() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "ASIAOPSTEST".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        ("AWS_SESSION_TOKEN".into(), "ops-session-token".into()),
    ]
}

async fn upstream() -> TestUpstream {
    TestUpstream::start_for("es", creds()).await
}

/// A `[[route]]` pointing at `up` on `listen`.
fn route(up: &TestUpstream, listen: &str, extra: &str) -> String {
    format!(
        "[[route]]\nendpoint = \"https://{}\"\nconnect-to = \"{}\"\nca-bundle = \"{}\"\nlisten = \"{listen}\"\n{extra}\n",
        up.host_name(),
        up.addr(),
        up.ca_bundle_path().display()
    )
}

fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigv4-proxy.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn config_argv(path: &std::path::Path) -> Vec<OsString> {
    vec!["sigv4-proxy".into(), "--config".into(), path.into()]
}

fn load(path: &std::path::Path) -> Config {
    Config::load(&config_argv(path)).expect("valid configuration")
}

/// The proxy `sigv4-proxy --config PATH` runs, signing with the test credentials instead of
/// the AWS default chain.
async fn start(path: &std::path::Path) -> App {
    in_process_workers();
    let env = Environment::with_provider(provider(&creds()));
    App::start(config_argv(path), load(path), env)
        .await
        .expect("proxy started")
}

#[test]
fn the_example_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sigv4-proxy.toml");
    let settings = load(&path);
    assert_eq!(settings.routes.len(), 3);
    let prefixes: Vec<&str> = settings
        .routes
        .iter()
        .map(|r| r.path_prefix.as_str())
        .collect();
    assert_eq!(prefixes, ["", "/metrics", "/traces"]);
    assert_eq!(settings.listen_addresses().len(), 2);
    assert_eq!(settings.routes[1].policy, PolicySource::ReadOnly);
    assert_eq!(settings.routes[1].response_timeout, Duration::from_secs(60));
    assert_eq!(settings.routes[0].max_connections, 4096);
}

#[test]
fn an_unknown_key_stops_the_binary_with_its_name_and_line() {
    let (_dir, path) = write_config(
        "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\n# comment\nrespnse-timeout = \"5s\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("respnse-timeout") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[tokio::test]
async fn two_routes_on_two_listeners_reach_two_upstreams() {
    let (a, b) = (upstream().await, upstream().await);
    let text = format!(
        "{}{}",
        route(&a, "127.0.0.1:0", ""),
        route(&b, "127.0.0.2:0", "")
    );
    let (_dir, path) = write_config(&text);
    let app = start(&path).await;
    let bound = app.bound();
    let addr_a = bound[&"127.0.0.1:0".parse::<SocketAddr>().unwrap()];
    let addr_b = bound[&"127.0.0.2:0".parse::<SocketAddr>().unwrap()];
    assert_eq!(get(addr_a, "/_cat/indices").await.status, 200);
    assert_eq!(get(addr_b, "/_cluster/health").await.status, 200);
    assert_eq!(get(addr_b, "/_cluster/health").await.status, 200);
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
    assert!(a.last_request().unwrap().verified());
    assert!(b.last_request().unwrap().verified());
    app.shutdown().await;
}

#[tokio::test]
async fn path_prefix_routes_share_a_listener_and_get_their_prefix_back_in_redirects() {
    let (a, b) = (upstream().await, upstream().await);
    a.add_route(
        "GET",
        "/_dashboards",
        Reply::redirect(
            302,
            &format!("https://{}/_dashboards/app/home", a.host_name()),
        )
        .set_cookie("sid=1; Path=/_dashboards; HttpOnly"),
    );
    let text = format!(
        "{}{}",
        route(&a, "127.0.0.1:0", "path-prefix = \"/logs\""),
        route(&b, "127.0.0.1:0", "path-prefix = \"/metrics\"")
    );
    let (_dir, path) = write_config(&text);
    let app = start(&path).await;
    let addr = *app.bound().values().next().unwrap();

    let resp = get(addr, "/logs/_cat/indices?v").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let rec = a.last_request().unwrap();
    assert!(rec.verified(), "{:?}", rec.verification);
    assert_eq!(rec.path_and_query(), "/_cat/indices?v");

    assert_eq!(get(addr, "/metrics").await.status, 200);
    assert_eq!(b.last_request().unwrap().path_and_query(), "/");

    let resp = get(addr, "/logs/_dashboards").await;
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some(format!("http://{addr}/logs/_dashboards/app/home").as_str())
    );
    assert_eq!(
        resp.header("set-cookie"),
        Some("sid=1; Path=/logs/_dashboards; HttpOnly")
    );

    for unrouted in ["/", "/logsx/_search", "/other"] {
        let resp = get(addr, unrouted).await;
        assert_eq!(resp.status, 404, "{unrouted}");
        assert_eq!(resp.json()["error"]["type"], "no_route_exception");
    }
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
    app.shutdown().await;
}

#[tokio::test]
async fn a_reload_swaps_routes_without_dropping_connections_and_a_bad_one_changes_nothing() {
    let (a, b) = (upstream().await, upstream().await);
    let (_dir, path) = write_config(&route(&a, "127.0.0.1:0", ""));
    let mut app = start(&path).await;
    let addr = *app.bound().values().next().unwrap();
    // A keep-alive connection opened before the reload.
    let mut sender = connection(addr).await;
    let mut ask = async |path: &str| {
        let req = http::Request::get(path)
            .header("host", addr.to_string())
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let exchange = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            // Read the body to the end, so the connection is free for the next request.
            http_body_util::BodyExt::collect(resp.into_body()).await?;
            Ok::<_, hyper::Error>(status)
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(ask("/x").await, 200);
    std::fs::write(&path, route(&b, "127.0.0.1:0", "")).unwrap();
    app.reload().await.unwrap();
    assert_eq!(ask("/y").await, 200, "same connection, new route");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));

    // A new listener whose address is taken: the whole reload is refused, nothing changes.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let text = format!(
        "{}{}",
        route(&a, "127.0.0.1:0", ""),
        route(&a, &taken.local_addr().unwrap().to_string(), "")
    );
    std::fs::write(&path, text).unwrap();
    let err = app.reload().await.unwrap_err();
    assert!(format!("{err:#}").contains("cannot listen"), "{err:#}");
    assert_eq!(ask("/z").await, 200);
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
    app.shutdown().await;
}

/// Sends SIGHUP to the process and waits (bounded) for `marker` to appear in its log.
async fn hup_and_wait(proxy: &ProxyProcess, marker: &str, seen_before: usize) {
    let pid = proxy.child.id().expect("running");
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.stderr().matches(marker).count() <= seen_before {
        assert!(
            Instant::now() < deadline,
            "no `{marker}` after SIGHUP:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_file_and_keeps_the_old_configuration_when_the_new_one_is_broken() {
    let up = upstream().await;
    let (_dir, path) = write_config(&route(&up, "127.0.0.1:0", ""));
    let args: Vec<String> = vec!["--config".into(), path.display().to_string()];
    let mut proxy = ProxyProcess::start(&args, &env_creds()).await;
    let put = |addr| async move { send(addr, "PUT", "/idx", &[], "{}").await.status };
    assert_eq!(put(proxy.addr).await, 200);

    // Same listener, now read-only: the listener keeps its port, PUT is refused.
    std::fs::write(&path, route(&up, "127.0.0.1:0", "read-only = true")).unwrap();
    hup_and_wait(&proxy, "configuration reloaded", 0).await;
    assert_eq!(put(proxy.addr).await, 403);
    assert_eq!(get(proxy.addr, "/idx/_search").await.status, 200);

    // A broken file: rejected with the key and line, and the read-only config stays.
    std::fs::write(
        &path,
        format!("{}bogus-key = 1\n", route(&up, "127.0.0.1:0", "")),
    )
    .unwrap();
    hup_and_wait(&proxy, "reload rejected", 0).await;
    let log = proxy.stderr();
    assert!(
        log.contains("`bogus-key`") && log.contains("line 7"),
        "{log}"
    );
    assert_eq!(put(proxy.addr).await, 403);
    assert_eq!(get(proxy.addr, "/").await.status, 200);
    assert!(proxy.terminate().await.success());
}

#[tokio::test]
async fn sighup_reloads_an_edited_policy_file_and_keeps_the_old_policy_when_it_is_broken() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    let allow_all =
        r#"{"Statement":[{"Sid":"All","Effect":"Allow","Action":"es:*","Resource":"*"}]}"#;
    std::fs::write(&policy, allow_all).unwrap();
    let mut args = upstream_args(&up);
    args.extend(["--policy".to_string(), policy.display().to_string()]);
    let mut proxy = ProxyProcess::start(&args, &env_creds()).await;
    let restricted = |addr| async move { get(addr, "/restricted-index/_search").await.status };
    assert_eq!(restricted(proxy.addr).await, 200);

    std::fs::write(
        &policy,
        r#"{"Statement":[{"Sid":"All","Effect":"Allow","Action":"es:*","Resource":"*"},
            {"Sid":"NoRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted-index/*"}]}"#,
    )
    .unwrap();
    hup_and_wait(&proxy, "configuration reloaded", 0).await;
    assert_eq!(
        restricted(proxy.addr).await,
        403,
        "the edited policy applies"
    );
    assert_eq!(get(proxy.addr, "/test-index/_search").await.status, 200);

    std::fs::write(&policy, "{\"Statement\": [ {\"Effect\": \"Allow\",").unwrap();
    hup_and_wait(&proxy, "reload rejected", 0).await;
    let log = proxy.stderr();
    let rejection = log.lines().find(|l| l.contains("reload rejected")).unwrap();
    assert!(
        rejection.contains("--policy") && rejection.contains(&policy.display().to_string()),
        "{rejection}"
    );
    assert_eq!(
        restricted(proxy.addr).await,
        403,
        "the previous policy still holds"
    );
    assert_eq!(get(proxy.addr, "/test-index/_search").await.status, 200);
    assert_eq!(
        up.request_count(),
        3,
        "only the allowed requests reached the endpoint"
    );
    assert!(proxy.terminate().await.success());
}

#[tokio::test]
async fn pooled_connections_idle_past_pool_idle_timeout_are_closed() {
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--pool-idle-timeout", "300ms"]).await;
    // One client connection: one worker, one upstream pool.
    let mut client = crate::support::http::KeepAlive::connect(proxy.addr()).await;
    assert_eq!(client.get("/one").await.status, 200);
    assert_eq!(up.connections_accepted(), 1);
    // The upstream closes nothing itself; only the proxy's pool can close it. Bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "the idle pooled connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.get("/two").await.status, 200);
    assert_eq!(
        up.connections_accepted(),
        2,
        "a new connection after the idle one was closed"
    );

    // Without the short timeout the connection stays pooled and is reused.
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    let mut client = crate::support::http::KeepAlive::connect(proxy.addr()).await;
    assert_eq!(client.get("/one").await.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.get("/two").await.status, 200);
    assert_eq!(up.connections_accepted(), 1, "reused");
}

#[tokio::test]
async fn sighup_with_a_malformed_bcrypt_hash_is_rejected_and_the_old_users_stay() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("wonderland", 4).unwrap()),
    )
    .unwrap();
    let extra = format!("htpasswd = \"{}\"", users.display());
    let (_dir, path) = write_config(&route(&up, "127.0.0.1:0", &extra));
    let args: Vec<String> = vec!["--config".into(), path.display().to_string()];
    let mut proxy = ProxyProcess::start(&args, &env_creds()).await;
    use base64::Engine as _;
    let alice = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:wonderland")
    );
    let as_alice = |addr| {
        let alice = alice.clone();
        async move {
            send(addr, "GET", "/", &[("authorization", &alice)], Bytes::new())
                .await
                .status
        }
    };
    assert_eq!(as_alice(proxy.addr).await, 200);
    assert_eq!(get(proxy.addr, "/").await.status, 401);

    // Truncated, cut inside the cost field, and non-ASCII where the cost stands: each used to
    // panic the reload (and with it the process) while slicing the hash.
    for (n, bad) in ["bob:$2y$", "bob:$2a$1", "bob:$2b$1é$x"].iter().enumerate() {
        std::fs::write(
            &users,
            format!("# users\nalice:{}\n{bad}\n", bcrypt::hash("x", 4).unwrap()),
        )
        .unwrap();
        hup_and_wait(&proxy, "reload rejected", n).await;
        let log = proxy.stderr();
        let rejection = log
            .lines()
            .filter(|l| l.contains("reload rejected"))
            .nth(n)
            .unwrap();
        assert!(
            rejection.contains(&users.display().to_string())
                && rejection.contains("line 3")
                && rejection.contains("malformed bcrypt"),
            "{rejection}"
        );
        assert!(proxy.child.try_wait().unwrap().is_none(), "still running");
        assert_eq!(as_alice(proxy.addr).await, 200, "the old users stay");
    }
    assert!(proxy.terminate().await.success());
}

#[test]
fn a_malformed_bcrypt_hash_stops_the_binary_with_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, "bob:$2y$\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .args(["https://search-a.us-east-1.es.amazonaws.com", "--htpasswd"])
        .arg(&users)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: line 1", users.display()))
            && stderr.contains("malformed bcrypt")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--header-read-timeout", "1s"]).await;
    let mut slow = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        for i in 0..100 {
            if slow
                .write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        started.elapsed()
    });
    assert_eq!(get(proxy.addr(), "/_cluster/health").await.status, 200);
    let cut_after = tokio::time::timeout(Duration::from_secs(10), dripping)
        .await
        .expect("the slow client was cut off")
        .unwrap();
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(5),
        "cut off after {cut_after:?}"
    );
    assert_eq!(get(proxy.addr(), "/").await.status, 200);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--max-header-size", "16KiB"]).await;
    let big = "a".repeat(20 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let reply = raw(proxy.addr(), request.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let fits = "a".repeat(8 * 1024);
    let resp = send(proxy.addr(), "GET", "/", &[("x-big", &fits)], Bytes::new()).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--max-connections", "2"]).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(proxy.addr()).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "the third connection waits"
    );
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(up.request_count(), 3);
}

#[tokio::test]
async fn request_body_and_tls_handshake_timeouts() {
    let up = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(creds())
        .route(
            "GET",
            "/slow",
            Reply::text(200, "late").stall(Duration::from_secs(5)),
        )
        .start()
        .await;
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &["--request-timeout", "1s", "--body-idle-timeout", "500ms"],
    )
    .await;
    let started = Instant::now();
    let resp = get(proxy.addr(), "/slow").await;
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(resp.text().contains("--request-timeout"));
    assert!(started.elapsed() < Duration::from_secs(4));

    let reply = raw(
        proxy.addr(),
        b"PUT /idx HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");

    // An endpoint that accepts TCP and never answers the TLS ClientHello.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap().to_string();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            open.push(s);
        }
    });
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &[
            "--connect-to",
            &mute_addr,
            "--tls-handshake-timeout",
            "500ms",
        ],
    )
    .await;
    let started = Instant::now();
    let resp = get(proxy.addr(), "/").await;
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(resp.text().contains("TLS handshake"), "{}", resp.text());
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn dns_changes_retire_pooled_connections_to_vanished_addresses() {
    let a = upstream().await;
    let b = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(creds())
        .pki(a.pki().clone())
        .host_name(a.host_name())
        .start()
        .await;
    let answer = Arc::new(Mutex::new(a.addr()));
    let argv = [
        "sigv4-proxy".to_string(),
        format!("https://{}", a.host_name()),
        "--ca-bundle".into(),
        a.ca_bundle_path().display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    let cli = sigv4_proxy::cli::Cli::try_parse_from(&argv).unwrap();
    let config = RouteConfig::from_args(&cli.proxy).unwrap();
    let env = Environment::with_provider(provider(&creds()));
    let mut route = app::build_route(&config, &env).unwrap();
    let current = answer.clone();
    route.upstream.resolver = Resolver::from_fn(move |_, _| Ok(vec![*current.lock().unwrap()]));
    route.upstream.dns_refresh = Duration::from_millis(200);
    in_process_workers();
    let credentials = CredentialCache::new(provider(&creds()));
    let metrics = Arc::new(Metrics::new());
    let proxy = app::proxy_for(&route, credentials, "us-east-1".into(), metrics).unwrap();
    let listener = server::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        Arc::new(proxy),
        route.server_options(),
        async {
            let _ = stopped.await;
        },
    ));

    // One client connection: one worker, one upstream pool.
    let mut client = crate::support::http::KeepAlive::connect(addr).await;
    assert_eq!(client.get("/1").await.status, 200);
    *answer.lock().unwrap() = b.addr();
    // Until the refresh, the pooled connection to the old address is still used.
    assert_eq!(client.get("/2").await.status, 200);
    assert_eq!((a.request_count(), b.request_count()), (2, 0));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(client.get("/3").await.status, 200);
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
    assert!(b.last_request().unwrap().verified());
    assert_eq!(a.connections_accepted(), 1);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test]
async fn https_proxy_tunnels_the_tls_and_no_proxy_bypasses_it() {
    let up = upstream().await;
    let egress = ConnectProxy::start().await;
    let mut env = env_creds();
    env.push(("HTTPS_PROXY".into(), egress.url()));
    let mut proxy = ProxyProcess::start(&upstream_args(&up), &env).await;
    let mut client = crate::support::http::KeepAlive::connect(proxy.addr).await;
    assert_eq!(client.get("/_cat/indices").await.status, 200);
    assert_eq!(client.get("/_cat/health").await.status, 200);
    assert_eq!(egress.tunnels(), 1, "one pooled connection, one tunnel");
    assert_eq!(egress.targets(), [up.addr().to_string()]);
    let rec = up.last_request().unwrap();
    assert!(rec.verified(), "{:?}", rec.verification);
    assert_eq!(rec.sni.as_deref(), Some(up.host_name()), "TLS end to end");
    assert!(proxy.terminate().await.success());

    env.push(("NO_PROXY".into(), "localhost,127.0.0.1".into()));
    let mut proxy = ProxyProcess::start(&upstream_args(&up), &env).await;
    assert_eq!(get(proxy.addr, "/").await.status, 200);
    assert_eq!(egress.tunnels(), 1, "NO_PROXY: direct");
    assert_eq!(up.request_count(), 3);
    assert!(proxy.terminate().await.success());
}
